"""Fixtures of the end-to-end tests: a data dir brought `up --detach` (server, projector, router),
and brought `down` afterwards whatever happened.

``cli`` is a system of the test's own. ``module_cli`` is one system for the tests of a module
that only add work to it and read their own workflows back (each system costs its server, its
projector and three roles: seconds of CPU to start and to run); a test that stops, kills or
counts what is not its own takes ``cli``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from clikit import Cli, running


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    with running(tmp_path / "data") as cli:
        yield cli


@pytest.fixture(scope="module")
def module_cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    with running(tmp_path_factory.mktemp("module") / "data") as cli:
        yield cli
