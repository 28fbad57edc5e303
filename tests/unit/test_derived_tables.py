"""Derived tables (``chain_heads``): never written, read whole from the view once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.unit.test_chain_rules import Clock, make, publisher

from swarmlog.projections.projector import Projector
from swarmlog.schemas.payloads import TaskOffered
from swarmlog.schemas.signing import Identity


class Counting:
    """A DuckDB connection that counts the statements naming ``chain_heads``."""

    def __init__(self, con: Any) -> None:
        self._con = con
        self.heads = 0

    def execute(self, sql: str, *args: Any) -> Any:
        self.heads += "chain_heads" in sql
        return self._con.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


async def test_a_restarted_projector_reads_every_chain_head_in_one_query(tmp_path: Path) -> None:
    clock = Clock()
    log, operator, _, projector = make(tmp_path, clock)
    ops = publisher(log, operator, clock)
    await ops.publish(TaskOffered(task_id="t0", capability="c"))
    await projector.run(follow=False)
    projector.close()
    heads = projector.store.rows("SELECT sender, sender_seq FROM chain_heads")
    assert heads == [("operator", 1)]
    assert projector.store.rows("SELECT count(*) FROM events WHERE hash IS NOT NULL") == [(1,)]

    counting = Counting(projector.store._con)
    projector.store._con = counting  # type: ignore[assignment]
    again = Projector(log, projector.store, namespace="unit", operator_key=operator.public_key)
    try:
        # A batch of the operator's (its head stored), then of senders with none.
        await ops.publish(TaskOffered(task_id="t1", capability="c"))
        await again.run(follow=False)
        for seed in (b"a", b"b"):
            stranger = Identity.from_seed(f"stranger-{seed.decode()}", seed * 32)
            await publisher(log, stranger, clock).publish(TaskOffered(task_id="x", capability="c"))
            await again.run(follow=False)
    finally:
        again.close()
    assert counting.heads == 1
    # The strangers hold no credential: quarantined out of chain, they have no head.
    assert again.store.rows("SELECT sender, sender_seq FROM chain_heads") == [("operator", 2)]
