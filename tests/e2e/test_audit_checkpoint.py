"""`swarmlog audit checkpoint` and `audit verify --against FILE` from the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clikit import Cli

from swarmlog.schemas.payloads import TaskAssignment

pytestmark = pytest.mark.e2e


def test_a_checkpoint_is_exported_and_the_stream_checked_against_it(
    cli: Cli, tmp_path: Path
) -> None:
    cli.submit_payloads([TaskAssignment(task_id=f"t{i}", role="w") for i in range(5)])
    path = tmp_path / "kept-elsewhere.json"
    made = cli("audit", "checkpoint", "--out", str(path), "--json")
    assert made.returncode == 0, made.stderr
    checkpoint = json.loads(made.stdout)
    assert json.loads(path.read_text())["head"] == checkpoint["head"]
    cli.submit_payloads([TaskAssignment(task_id=f"u{i}", role="w") for i in range(5)])
    checked = cli("audit", "verify", "--against", str(path), "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    report = json.loads(checked.stdout)
    assert report["checkpoint"] == {
        "seq": checkpoint["seq"],
        "head": checkpoint["head"],
        "matches": True,  # the stream grew, but what the checkpoint covers is unchanged
    }
    assert report["stream_chain"]["position"] > checkpoint["seq"]
    assert report["stream_chain"]["gaps"] == []
    altered = json.loads(path.read_text()) | {"head": "0" * 64}
    path.write_text(json.dumps(altered))
    refused = cli("audit", "verify", "--against", str(path))
    assert refused.returncode == 1
    assert "signature does not verify" in refused.stderr
