"""Fixtures of the end-to-end tests: a data dir brought `up --detach` (server, projector, router),
and brought `down` afterwards whatever happened."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from clikit import Cli


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    run = Cli(tmp_path / "data")
    started = run("up", "--detach")
    assert started.returncode == 0, started.stderr
    try:
        yield run
    finally:
        run("agent", "stop", "--all")
        assert run("down").returncode == 0
