"""Writing files that another process may read at the same moment: the one way swarmlog does it.

Every file under the data dir that a concurrent process reads (credentials, seeds, the broker's
authorization, pidfiles, server state, checkpoints) is written to a temporary file in the same
folder, with its final mode from the first byte, flushed, and moved into place with
``os.replace``: a reader sees the old file or the new one, never half of one, and a secret is
never readable by anyone else, not even for an instant.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["write_atomic", "write_private", "write_private_json"]


def write_atomic(
    path: Path, data: bytes | str, *, mode: int = 0o600, exclusive: bool = False
) -> None:
    """Replace ``path`` with ``data`` atomically, the file having ``mode`` from the start.

    With ``exclusive``, refuse (:class:`FileExistsError`) when ``path`` already exists: for a
    secret that must never be overwritten (two writers racing for one name: one wins, the other
    gets the error).
    """
    raw = data.encode() if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            if mode != 0o600:
                os.fchmod(fh.fileno(), mode)
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        if exclusive:
            # link() fails if the name exists: no window in which a second writer replaces it.
            os.link(partial, path)
            os.unlink(partial)
        else:
            os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise


def write_private(path: Path, data: bytes | str, *, exclusive: bool = False) -> None:
    """Write a file only its owner may read (mode 0600), atomically."""
    write_atomic(path, data, mode=0o600, exclusive=exclusive)


def write_private_json(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` as JSON to ``path`` atomically, with mode 0600."""
    write_private(path, json.dumps(state) + "\n")
