"""Fixtures of the adversarial tests: a running system (`up --detach`, brought `down` after),
and hostile agents: separate processes holding one agent's secret and nothing else, attacking
the real embedded server as a compromised agent would (see :mod:`hostile`)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))  # clikit

from clikit import Cli, running

pytestmark = pytest.mark.e2e


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    with running(tmp_path / "data") as cli:
        yield cli
