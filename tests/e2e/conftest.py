"""Fixtures of the end-to-end tests: a data dir brought `up --detach` (server, projector, router),
and brought `down` afterwards whatever happened."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from clikit import Cli, running


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    with running(tmp_path / "data") as cli:
        yield cli
