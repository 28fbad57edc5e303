"""One writer, readers that never keep it out: a projector starting while a reader has the file
open read-only waits for that reader (bounded) instead of failing on DuckDB's file lock, and no
new reader gets in meanwhile; a writer killed with -9 leaves nothing that blocks the next."""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from swarmlog.errors import StoreBusy, StoreError
from swarmlog.projections.store import ProjectionStore
from waiting import wait_until


@pytest.fixture
def path(tmp_path: Path) -> Path:
    path = tmp_path / "projections" / "default.duckdb"
    ProjectionStore(path).close()  # a projection a projector left behind
    return path


def reader_is_refused(path: Path) -> bool:
    try:
        ProjectionStore(path, read_only=True).close()
    except StoreBusy:
        return True
    return False


@contextlib.contextmanager
def holding(path: Path, *, read_only: bool) -> Iterator[subprocess.Popen[str]]:
    """Another process with ``path`` open (DuckDB allows one process per file, or readers),
    until the block ends (it then exits) or the test kills it."""
    code = (
        "import sys; from swarmlog.projections.store import ProjectionStore\n"
        f"s = ProjectionStore({str(path)!r}, read_only={read_only})\n"
        "print('open', flush=True); sys.stdin.read()"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdin is not None
    assert child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "open"
        yield child
    finally:
        child.stdin.close()
        child.stdout.close()
        child.wait(10)


def test_a_starting_writer_waits_for_a_reader_and_keeps_new_ones_out(path: Path) -> None:
    opened: list[ProjectionStore] = []
    writer = threading.Thread(target=lambda: opened.append(ProjectionStore(path, wait=20)))
    # A reader that fell back to the file (no projector ran) has it open...
    with holding(path, read_only=True):
        writer.start()  # ... when the projector starts
        wait_until(lambda: reader_is_refused(path), 10)  # it is at the gate: no new reader in
        assert not opened  # and it waits for the reader already in
    writer.join(20)
    assert len(opened) == 1
    assert opened[0].position() == 0
    opened[0].close()
    ProjectionStore(path, read_only=True).close()  # the writer gone, readers open it again


def test_a_reader_is_told_in_one_line_while_a_writer_owns_the_file(path: Path) -> None:
    with ProjectionStore(path), pytest.raises(StoreBusy) as refused:
        ProjectionStore(path, read_only=True)
    assert "the projector owns" in str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_second_writer_gives_up_within_its_wait(path: Path) -> None:
    with ProjectionStore(path), pytest.raises(StoreError, match="another process is writing"):
        ProjectionStore(path, wait=0.2)


def test_a_writer_killed_with_minus_9_does_not_block_the_next(path: Path) -> None:
    with holding(path, read_only=False) as projector:
        assert reader_is_refused(path)
        projector.send_signal(signal.SIGKILL)
        projector.wait(10)
    ProjectionStore(path, wait=5).close()


def test_a_writer_waits_for_a_reader_in_its_own_process(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """DuckDB refuses a second connection to a file open in the same process with another
    configuration: for the writer, the same wait as for another process's file lock."""
    reader = duckdb.connect(str(path), read_only=True)  # a fallback reader's, in this process
    opened: list[ProjectionStore] = []
    writer = threading.Thread(target=lambda: opened.append(ProjectionStore(path, wait=20)))
    with caplog.at_level(logging.INFO, logger="swarmlog.projections.store"):
        writer.start()
        wait_until(lambda: "waiting for readers" in caplog.text, 10)
        assert not opened
        reader.close()
        writer.join(20)
    assert len(opened) == 1
    opened[0].close()
