"""Projection snapshots: the projection at stream sequence N with its state hash, in the
namespace's JetStream object store (``SWARMLOG_<NS>_SNAPSHOTS``).

A snapshot is a DuckDB file copied from the live projection at one consistent point, stored as
object ``projection-<seq>`` with ``{"seq", "state_hash", "layout", "namespace", "created_at"}``
beside it. Restoring one recomputes its state hash first and refuses a file whose hash or
position is not the recorded one (a corrupt or tampered snapshot), then catches up from N+1 with
the projector, verifying every event as usual: the result has the same state hash as a full
replay. The projector takes one every ``SWARMLOG_SNAPSHOT_EVERY`` events (100,000 by default; 0
turns it off), and ``swarmlog snapshot create`` asks it for one now.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
from asyncio.subprocess import PIPE
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from swarmlog.bus.ports import EventLog
from swarmlog.config import Settings
from swarmlog.control.keystore import KeyStore
from swarmlog.errors import ConfigError, StoreError, VerificationError
from swarmlog.projections.projector import Projector
from swarmlog.projections.store import ProjectionStore
from swarmlog.projections.tables import LAYOUT

__all__ = ["restore_snapshot", "snapshot_every", "snapshot_name", "take_snapshot"]


def snapshot_name(seq: int) -> str:
    return f"projection-{seq:012d}"


def snapshot_every(env: dict[str, str] | None = None) -> int:
    """Events between the projector's own snapshots (``SWARMLOG_SNAPSHOT_EVERY``; 0: none)."""
    raw = (os.environ if env is None else env).get("SWARMLOG_SNAPSHOT_EVERY", "100000")
    try:
        every = int(raw)
    except ValueError:
        every = -1
    if every < 0:
        raise ConfigError(f"SWARMLOG_SNAPSHOT_EVERY={raw!r}: a number of events, 0 for none")
    return every


async def take_snapshot(log: EventLog, store: ProjectionStore, namespace: str) -> dict[str, Any]:
    """Copy ``store`` at one consistent point into the object store; what was stored."""
    with tempfile.TemporaryDirectory(prefix="swarmlog-snapshot-") as tmp:
        path = Path(tmp) / "snapshot.duckdb"
        seq = await asyncio.to_thread(store.copy_to, path)
        # The copy's state hash reads every table: in a process of its own, whose memory goes
        # when it ends (DuckDB keeps what a scan of the whole projection brought in).
        copied, state_hash = await _state_elsewhere(path)
        if copied != seq:
            raise StoreError(f"the snapshot copy is at seq {copied}, not {seq}: not stored")
        meta = {
            "seq": seq,
            "state_hash": state_hash,
            "layout": LAYOUT,
            "namespace": namespace,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        name = snapshot_name(seq)
        size = await (await log.snapshot_store()).put(name, path, meta)
    return {"name": name, "size": size} | meta


async def _state_elsewhere(path: Path) -> tuple[int, str]:
    """:func:`~swarmlog.projections.store.state_of_file` of ``path``, in a child process."""
    code = (
        "import json, sys; from swarmlog.projections.store import state_of_file;"
        " print(json.dumps(state_of_file(sys.argv[1])))"
    )
    # -P and the copy's folder as the working directory: nothing but the installed swarmlog is
    # imported (no stray module in whatever directory the projector runs from).
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-P", "-c", code, str(path), stdout=PIPE, stderr=PIPE, cwd=path.parent
    )
    try:
        out, err = await child.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            child.kill()  # cancelled (the projector stopping): the child goes with it
        raise
    if child.returncode != 0:
        last = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise StoreError(f"could not read the snapshot copy's state: {last[0]}")
    seq, state_hash = json.loads(out)
    return int(seq), str(state_hash)


def _check(path: Path, name: str, meta: dict[str, Any], namespace: str) -> None:
    """Refuse a snapshot that is not what its record says."""
    if meta.get("layout") != LAYOUT or meta.get("namespace") != namespace:
        raise VerificationError(
            "snapshot_layout",
            f"snapshot {name} is of layout {meta.get('layout')} in namespace"
            f" {meta.get('namespace')!r}, not {LAYOUT} in {namespace!r}: refused; replay instead",
        )
    store = ProjectionStore(path, read_only=True)
    try:
        seq, state_hash = store.snapshot_state()
    finally:
        store.close()
    if (seq, state_hash) != (meta.get("seq"), meta.get("state_hash")):
        raise VerificationError(
            "snapshot_hash",
            f"snapshot {name} does not match its record (recorded seq {meta.get('seq')} hash"
            f" {str(meta.get('state_hash'))[:16]}…, found seq {seq} hash {state_hash[:16]}…):"
            " refused, nothing restored",
        )


async def restore_snapshot(
    log: EventLog, settings: Settings, name: str, to: Path
) -> dict[str, Any]:
    """Load snapshot ``name`` (checked against its recorded hash), catch it up from the stream,
    and write the projection to ``to`` (which must not exist)."""
    if await asyncio.to_thread(to.exists):
        raise ConfigError(f"{to} exists; restore into a new file (--to PATH)")
    operator_key = KeyStore(settings.keys_dir).operator_public_key()
    with tempfile.TemporaryDirectory(prefix="swarmlog-restore-") as tmp:
        path = Path(tmp) / "restored.duckdb"
        meta = await (await log.snapshot_store()).get(name, path)
        await asyncio.to_thread(_check, path, name, meta, settings.namespace)
        store = ProjectionStore(path)
        try:
            store.bind(namespace=settings.namespace, operator_key=operator_key)
            projector = Projector(
                log, store, namespace=settings.namespace, operator_key=operator_key
            )
            try:
                position = await projector.run(follow=False)
            finally:
                projector.close()
            state_hash = store.state_hash()
        finally:
            store.close()
        to.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, to)
    return {
        "name": name,
        "snapshot_seq": meta["seq"],
        "caught_up": position - int(meta["seq"]),
        "position": position,
        "state_hash": state_hash,
        "path": str(to),
    }
