"""A sender's chain stays one chain when two processes hold the same key: single publishes and
batches both notice the other writer, re-read the head and re-seal (no replay, no fork)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

from swarmlog.bus.memory import MemoryLog
from swarmlog.bus.ports import Append, StoredMessage
from swarmlog.projections.projector import Projector
from swarmlog.projections.store import ProjectionStore
from swarmlog.publisher import Publisher
from swarmlog.schemas.credentials import Credential
from swarmlog.schemas.payloads import AgentHeartbeat, TaskAssignment, TaskStarted
from swarmlog.schemas.signing import Identity, issue_credential

NS = "pc"


def identity(name: str) -> Identity:
    return Identity.from_seed(name, hashlib.sha256(name.encode()).digest())


async def test_batches_and_single_publishes_rechain_after_another_writer(tmp_path: Path) -> None:
    log = MemoryLog("SWARMLOG_PC")
    operator, worker = identity("operator"), identity("w-1")
    credential = Credential(
        agent_id="w-1",
        role="w",
        public_key=worker.public_key,
        issuer=operator.public_key,
        issued_at=1,
    )
    ops = Publisher(log, operator, NS)
    await ops.publish(issue_credential(operator, credential))
    # The tasks are w's: only its holder may say one started.
    await ops.publish_many([TaskAssignment(task_id=t, role="w") for t in ("t0", "t1", "t2", "t9")])
    daemon, cli = Publisher(log, worker, NS), Publisher(log, worker, NS)
    await daemon.publish(AgentHeartbeat(agent_id="w-1"))
    await cli.publish(AgentHeartbeat(agent_id="w-1"))  # the daemon's head is now stale
    await daemon.publish_batch([(TaskStarted(task_id=f"t{i}"), {}) for i in range(3)])
    await cli.publish(AgentHeartbeat(agent_id="w-1"))
    await daemon.publish(AgentHeartbeat(agent_id="w-1"))
    await cli.publish_many([TaskStarted(task_id="t9")])

    store = ProjectionStore(tmp_path / "p.duckdb")
    projector = Projector(log, store, namespace=NS, operator_key=operator.public_key)
    await projector.run(follow=False)
    projector.close()
    assert store.rows("SELECT count(*) FROM quarantine") == [(0,)]
    assert store.rows("SELECT count(*) FROM chain_breaks") == [(0,)]
    assert store.rows("SELECT sender_seq FROM chain_heads WHERE sender = 'w-1'") == [(8,)]
    store.close()


async def test_junk_under_its_own_prefix_does_not_stop_a_running_publisher() -> None:
    log = MemoryLog("SWARMLOG_PC")
    worker = identity("w-1")
    daemon = Publisher(log, worker, NS)
    first = await daemon.publish(AgentHeartbeat(agent_id="w-1"))
    # Someone with the agent's login writes junk under its prefix (the broker allows nothing
    # else). The running publisher keeps its chain, without reading the whole log to find it.
    await log.append(Append(f"swarmlog.{NS}.w-1.agent.w-1.junk", b"junk", msg_id="junk-1"))

    async def no_scan(*_args: object, **_kwargs: object) -> AsyncIterator[list[StoredMessage]]:
        raise AssertionError("a running publisher must not scan the log")
        yield []

    log.read = no_scan  # type: ignore[method-assign]
    second = await daemon.publish(AgentHeartbeat(agent_id="w-1"))
    assert second.seq > first.seq
    assert daemon._head is not None
    assert daemon._head.seq == 2  # the next position of its own chain, junk or not
