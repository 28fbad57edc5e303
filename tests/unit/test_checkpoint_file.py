"""`audit verify --against FILE` reads a checkpoint and nothing else: a device, a FIFO or a
huge file is refused with one line (exit 2) before anything is read from it unbounded."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from swarmlog.cli import main
from swarmlog.projections.streamchain import MAX_CHECKPOINT_BYTES

Against = Callable[[Path], tuple[object, str]]


@pytest.fixture
def verify_against(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Against:
    """Run `swarmlog audit verify --against PATH` (the console script's entry point) on an
    empty data dir; its exit code and stderr."""
    data = tmp_path / "data"
    data.mkdir()

    def run(path: Path) -> tuple[object, str]:
        with pytest.raises(SystemExit) as exited:
            main(["--data-dir", str(data), "audit", "verify", "--against", str(path)])
        return exited.value.code, capsys.readouterr().err

    return run


def assert_refused(code: object, output: str, says: str) -> None:
    assert code == 2, output
    assert says in output
    assert len(output.strip().splitlines()) == 1, output


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_an_endless_device_is_refused_not_read(verify_against: Against) -> None:
    assert_refused(*verify_against(Path("/dev/zero")), "not a regular file")


def test_a_fifo_is_refused_without_waiting_for_a_writer(
    tmp_path: Path, verify_against: Against
) -> None:
    fifo = tmp_path / "checkpoint.fifo"
    os.mkfifo(fifo)
    assert_refused(*verify_against(fifo), "not a regular file")


def test_a_file_larger_than_any_checkpoint_is_refused(
    tmp_path: Path, verify_against: Against
) -> None:
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (MAX_CHECKPOINT_BYTES + 1))
    assert_refused(*verify_against(big), "larger than any checkpoint")


def test_a_small_file_that_is_no_checkpoint_is_refused(
    tmp_path: Path, verify_against: Against
) -> None:
    other = tmp_path / "other.json"
    other.write_text('{"not": "a checkpoint"}')
    assert_refused(*verify_against(other), "is not a swarmlog checkpoint")
