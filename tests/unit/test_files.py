"""The one atomic writer: readers never see half a file, secrets are never readable by others."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from swarmlog.files import write_atomic, write_private


def test_a_reader_sees_the_old_file_or_the_new_one_never_half(tmp_path: Path) -> None:
    path = tmp_path / "agent.cred"
    old, new = b"a" * 200_000, b"b" * 300_000
    write_atomic(path, old, mode=0o644)
    seen: set[bytes] = set()
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            seen.add(path.read_bytes())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(200):
            write_atomic(path, new if i % 2 else old, mode=0o644)
    finally:
        done.set()
        reader.join()
    assert seen <= {old, new}
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["agent.cred"]  # no temporary left behind


def test_a_secret_is_0600_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "operator.seed"
    old_umask = os.umask(0)  # even a permissive umask gives no one else a look
    try:
        write_private(path, "secret\n", exclusive=True)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    with pytest.raises(FileExistsError):
        write_private(path, "other\n", exclusive=True)
    assert path.read_text() == "secret\n"
    assert [p.name for p in path.parent.iterdir()] == ["operator.seed"]
