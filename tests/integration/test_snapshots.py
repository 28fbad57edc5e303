"""Projection snapshots on a real server: a snapshot at seq N plus a catch-up from N+1 equals a
full replay; a snapshot whose contents do not match its recorded hash is refused."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from swarmkit import Swarm

from swarmlog.control.snapshots import restore_snapshot, take_snapshot
from swarmlog.errors import ConfigError, VerificationError
from swarmlog.projections.projector import Projector
from swarmlog.projections.store import ProjectionStore
from swarmlog.schemas.payloads import Result, TaskAssignment

pytestmark = pytest.mark.integration


async def fold(swarm: Swarm, path: Path) -> ProjectionStore:
    store = ProjectionStore(path)
    projector = Projector(
        swarm.log, store, namespace=swarm.namespace, operator_key=swarm.operator.public_key
    )
    await projector.run(follow=False)
    projector.close()
    return store


async def work(swarm: Swarm, first: int, n: int) -> None:
    await swarm.publisher(swarm.operator).publish_many(
        [TaskAssignment(task_id=f"t{i}", role="worker") for i in range(first, first + n)]
    )
    await swarm.publisher(swarm.alice).publish_many(
        [Result(task_id=f"t{i}", output=i) for i in range(first, first + n)]
    )


async def test_a_snapshot_caught_up_equals_a_full_replay(swarm: Swarm, tmp_path: Path) -> None:
    await work(swarm, 0, 200)
    live = await fold(swarm, tmp_path / "live.duckdb")
    taken = await take_snapshot(swarm.log, live, swarm.namespace)
    assert taken["seq"] == live.position() == await swarm.log.last_seq()
    assert taken["state_hash"] == live.state_hash()
    live.close()
    await work(swarm, 200, 150)  # the log moves on after the snapshot
    listed = await (await swarm.log.snapshot_store()).catalog()
    assert [s["name"] for s in listed] == [taken["name"]]
    restored = await restore_snapshot(
        swarm.log, swarm.settings, taken["name"], tmp_path / "restored.duckdb"
    )
    full = await fold(swarm, tmp_path / "replay.duckdb")
    assert restored["snapshot_seq"] == taken["seq"]
    assert restored["caught_up"] == 300  # only what came after N was folded
    assert restored["position"] == full.position() == await swarm.log.last_seq()
    assert restored["state_hash"] == full.state_hash()
    full.close()
    with pytest.raises(ConfigError, match="exists"):  # never over an existing file
        await restore_snapshot(
            swarm.log, swarm.settings, taken["name"], tmp_path / "restored.duckdb"
        )


async def test_a_tampered_snapshot_is_refused(swarm: Swarm, tmp_path: Path) -> None:
    await work(swarm, 0, 50)
    live = await fold(swarm, tmp_path / "live.duckdb")
    taken = await take_snapshot(swarm.log, live, swarm.namespace)
    live.close()
    copy = tmp_path / "copy.duckdb"
    snapshots = await swarm.log.snapshot_store()
    meta = await snapshots.get(taken["name"], copy)
    con = duckdb.connect(str(copy))
    con.execute("UPDATE tasks SET output = '\"forged\"' WHERE task_id = 't7'")
    con.close()
    await snapshots.put(taken["name"], copy, meta)  # same name, same record
    target = tmp_path / "restored.duckdb"
    with pytest.raises(VerificationError, match="does not match its record"):
        await restore_snapshot(swarm.log, swarm.settings, taken["name"], target)
    assert not target.exists()  # nothing restored
