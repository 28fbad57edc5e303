"""`swarmlog snapshot create|list|restore` against the live projector daemon, and the snapshots
the projector takes by itself every SWARMLOG_SNAPSHOT_EVERY events."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from clikit import Cli

from swarmlog.schemas.payloads import TaskAssignment
from waiting import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def every_40(tmp_path: Path) -> Iterator[Cli]:
    run = Cli(tmp_path / "data")
    run.env["SWARMLOG_SNAPSHOT_EVERY"] = "40"
    assert run("up", "--detach").returncode == 0
    try:
        assert run("agent", "stop", "--all").returncode == 0  # a still log
        yield run
    finally:
        assert run("down").returncode == 0


def test_snapshots_by_hand_and_by_the_projector_restore_to_the_replayed_state(
    every_40: Cli, tmp_path: Path
) -> None:
    cli = every_40
    cli.submit_payloads([TaskAssignment(task_id=f"t{i}", role="w") for i in range(30)])
    made = cli("snapshot", "create", "--json")
    assert made.returncode == 0, made.stderr
    taken = json.loads(made.stdout)
    recorded = cli.rows("SELECT payload FROM events WHERE type = 'snapshot_taken'")
    assert [json.loads(r["payload"])["name"] for r in recorded] == [taken["name"]]
    cli.submit_payloads([TaskAssignment(task_id=f"u{i}", role="w") for i in range(60)])

    def periodic() -> bool:  # the projector's own, past 40 events after its start
        listed = json.loads(cli("snapshot", "list", "--json").stdout)["snapshots"]
        return len(listed) >= 2

    wait_until(periodic, 30)
    out = cli("snapshot", "restore", taken["name"], "--to", str(tmp_path / "r.duckdb"), "--json")
    assert out.returncode == 0, out.stderr
    restored = json.loads(out.stdout)
    check = json.loads(cli("replay", "--check", "--json").stdout)
    assert restored["position"] == check["position"]
    assert restored["state_hash"] == check["state_hash"]
    assert restored["caught_up"] == check["position"] - taken["seq"]
    again = cli("snapshot", "restore", taken["name"], "--to", str(tmp_path / "r.duckdb"))
    assert again.returncode == 2
    assert "exists" in again.stderr
    missing = cli("snapshot", "restore", "projection-999")
    assert missing.returncode == 2
    assert "no snapshot 'projection-999'" in missing.stderr
