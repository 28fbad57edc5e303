"""Trust rules across events, on the in-memory log: kill and revive, revocation, expiry, a repeated
task id."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import pytest

from swarmlog.agents.publisher import Publisher
from swarmlog.bus.memory import MemoryLog
from swarmlog.projections.projector import Projector
from swarmlog.projections.store import ProjectionStore
from swarmlog.schemas.credentials import Credential
from swarmlog.schemas.payloads import (
    AgentKilled,
    AgentRegistered,
    AgentRevived,
    CredentialRevoked,
    Result,
    TaskAssignment,
    TaskClaimed,
    TaskOffered,
)
from swarmlog.schemas.signing import Identity, issue_credential

NS = "unit"


class Clock:
    """A settable clock in ns, shared by the publishers and the log's storage time."""

    def __init__(self, now: int = 1_700_000_000_000_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        self.now += 1_000_000
        return self.now


def make(tmp_path: Path, clock: Clock) -> tuple[MemoryLog, Identity, Identity, Projector]:
    log = MemoryLog("SWARMLOG_UNIT", wall_clock=clock)
    operator = Identity.from_seed("operator", b"o" * 32)
    agent = Identity.from_seed("worker-1", b"w" * 32)
    store = ProjectionStore(tmp_path / "p.duckdb")
    projector = Projector(log, store, namespace=NS, operator_key=operator.public_key)
    return log, operator, agent, projector


def credential(operator: Identity, agent: Identity, **extra: object) -> Credential:
    fields: dict[str, object] = {
        "agent_id": agent.agent_id,
        "role": "worker",
        "public_key": agent.public_key,
        "issuer": operator.public_key,
        "issued_at": 1,
        **extra,
    }
    return Credential(**fields)  # type: ignore[arg-type]


entropy = (i.to_bytes(10, "big") for i in itertools.count())


def publisher(log: MemoryLog, who: Identity, clock: Clock) -> Publisher:
    return Publisher(log, who, NS, clock=clock, entropy=lambda n: next(entropy))


async def assign(ops: Publisher, *task_ids: str) -> None:
    """The operator assigns tasks to the worker role (only its holder may answer a task)."""
    await ops.publish_many([TaskAssignment(task_id=t, role="worker") for t in task_ids])


async def fold(projector: Projector) -> dict[int, str]:
    await projector.run(follow=False)
    return dict(projector.store.rows("SELECT seq, reason FROM quarantine"))


async def test_killed_events_are_quarantined_and_revive_resumes_without_a_chain_break(
    tmp_path: Path,
) -> None:
    clock = Clock()
    log, operator, agent, projector = make(tmp_path, clock)
    ops, worker = publisher(log, operator, clock), publisher(log, agent, clock)
    await ops.publish(issue_credential(operator, credential(operator, agent)))
    await assign(ops, "t1", "t2", "t3")
    await worker.publish(Result(task_id="t1", output=1))
    await ops.publish(AgentKilled(agent_id="worker-1", reason="runaway"))
    killed = await worker.publish(Result(task_id="t2", output=2))
    await ops.publish(AgentRevived(agent_id="worker-1"))
    after = await worker.publish(Result(task_id="t3", output=3))
    assert await fold(projector) == {killed.seq: "killed"}
    rows = projector.store.rows("SELECT task_id, status FROM tasks ORDER BY 1")
    assert rows == [("t1", "succeeded"), ("t2", "assigned"), ("t3", "succeeded")]
    assert projector.store.rows("SELECT count(*) FROM chain_breaks") == [(0,)]
    assert projector.store.rows("SELECT seq FROM events WHERE seq = ?", [after.seq]) == [
        (after.seq,)
    ]
    projector.close()


async def test_a_revoked_key_stays_revoked_when_reissued(tmp_path: Path) -> None:
    clock = Clock()
    log, operator, agent, projector = make(tmp_path, clock)
    ops, worker = publisher(log, operator, clock), publisher(log, agent, clock)
    await ops.publish(issue_credential(operator, credential(operator, agent)))
    await ops.publish(CredentialRevoked(public_key=agent.public_key, reason="stolen"))
    await ops.publish(issue_credential(operator, credential(operator, agent)))
    late = await worker.publish(Result(task_id="t1", output=1))
    assert await fold(projector) == {late.seq: "revoked"}
    projector.close()


async def test_expiry_is_judged_by_storage_time_not_the_claimed_time(tmp_path: Path) -> None:
    clock = Clock()
    log, operator, agent, projector = make(tmp_path, clock)
    ops = publisher(log, operator, clock)
    expires = clock.now + 10_000_000
    await ops.publish(issue_credential(operator, credential(operator, agent, expires_at=expires)))
    await assign(ops, "t1", "t2")
    ok = await publisher(log, agent, clock).publish(Result(task_id="t1", output=1))
    clock.now = expires + 1_000_000  # the server's clock has passed expiry...
    backdated = Clock(expires - 5_000_000)  # ...but the thief claims an earlier time
    thief = publisher(log, agent, backdated)
    stale = await thief.publish(Result(task_id="t2", output=2))
    assert await fold(projector) == {stale.seq: "expired"}
    assert ok.seq < stale.seq
    projector.close()


async def test_an_agent_cannot_speak_for_another_agent(tmp_path: Path) -> None:
    clock = Clock()
    log, operator, agent, projector = make(tmp_path, clock)
    ops, worker = publisher(log, operator, clock), publisher(log, agent, clock)
    await ops.publish(issue_credential(operator, credential(operator, agent)))
    other = await worker.publish(AgentRegistered(agent_id="other", role="worker"))
    promoted = await worker.publish(AgentRegistered(agent_id="worker-1", role="router"))
    claim = await worker.publish(TaskClaimed(task_id="t1", agent_id="other"))
    fine = await worker.publish(AgentRegistered(agent_id="worker-1", role="worker"))
    assert await fold(projector) == {
        other.seq: "not_permitted",
        promoted.seq: "not_permitted",
        claim.seq: "not_permitted",
    }
    assert projector.store.rows("SELECT agent_id, role, status FROM agents") == [
        ("worker-1", "worker", "registered")
    ]
    assert projector.store.rows("SELECT count(*) FROM chain_breaks") == [(0,)]
    assert fine.seq > claim.seq
    projector.close()


async def credentialed(tmp_path: Path) -> tuple[MemoryLog, Identity, Projector, Publisher]:
    """The log, the operator, a projector, and the publisher of an agent it issued a key to."""
    clock = Clock()
    log, operator, agent, projector = make(tmp_path, clock)
    ops = publisher(log, operator, clock)
    await ops.publish(issue_credential(operator, credential(operator, agent)))
    return log, operator, projector, publisher(log, agent, clock)


async def test_an_offer_repeating_a_task_id_not_in_memory_is_refused_and_the_row_kept(
    tmp_path: Path,
) -> None:
    log, operator, projector, planner = await credentialed(tmp_path)
    await planner.publish(TaskOffered(task_id="t1", capability="summarise"))
    assert await fold(projector) == {}
    before = projector.store.rows("SELECT * FROM tasks")
    projector.close()
    # A projector started afresh holds no row in memory: the repeat's row is presumed absent.
    again = Projector(log, projector.store, namespace="unit", operator_key=operator.public_key)
    try:
        repeat = await planner.publish(TaskOffered(task_id="t1", capability="translate"))
        await planner.publish(TaskOffered(task_id="t2", capability="summarise"))
        assert await fold(again) == {repeat.seq: "not_permitted"}
        detail = again.store.rows("SELECT detail FROM quarantine")
        assert detail == [("offers task t1, which exists already",)]
        rows = dict(again.store.rows("SELECT task_id, capability FROM tasks"))
        assert rows == {"t1": "summarise", "t2": "summarise"}
        assert [r for r in again.store.rows("SELECT * FROM tasks") if r[0] == "t1"] == before
        assert again.store.position() == repeat.seq + 1
    finally:
        again.close()


async def test_after_a_wrong_guess_offers_are_looked_up_for_a_while(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, _, projector, planner = await credentialed(tmp_path)
    # An input too large for the row to be kept in memory after its batch.
    await planner.publish(TaskOffered(task_id="t1", capability="summarise", input="x" * 5000))
    assert await fold(projector) == {}
    try:
        with caplog.at_level(logging.INFO, logger="swarmlog.projections.projector"):
            refused = []
            for _ in range(3):  # a batch each: a sender making the projector fold batches twice
                refused.append(await planner.publish(TaskOffered(task_id="t1", capability="x")))
                await fold(projector)
        assert set(await fold(projector)) == {r.seq for r in refused}
        assert sum("folded again" in r.getMessage() for r in caplog.records) == 1
    finally:
        projector.close()
