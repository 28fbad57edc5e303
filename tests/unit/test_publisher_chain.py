"""A sender's chain stays one chain when two processes hold the same key: single publishes and
batches both notice the other writer, re-read the head and re-seal (no replay, no fork)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import swarmlog.agents.publisher as publisher_module
from swarmlog.agents.publisher import ChainHint, Publisher
from swarmlog.bus.memory import MemoryLog
from swarmlog.bus.ports import Append, StoredMessage
from swarmlog.bus.subjects import subject_for
from swarmlog.errors import BusError
from swarmlog.projections.projector import Projector
from swarmlog.projections.store import ProjectionStore
from swarmlog.schemas.codec import decode_envelope, decode_signed
from swarmlog.schemas.credentials import Credential
from swarmlog.schemas.payloads import AgentHeartbeat, AgentKilled, TaskAssignment, TaskStarted
from swarmlog.schemas.signing import ChainHead, Identity, issue_credential

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


# -- a fresh publisher recovers its chain as a reader sees it -------------------------------------


def worker_system() -> tuple[MemoryLog, Identity, Identity]:
    return MemoryLog("SWARMLOG_PC"), identity("operator"), identity("w-1")


async def issue(log: MemoryLog, operator: Identity, worker: Identity) -> None:
    credential = Credential(
        agent_id=worker.agent_id,
        role="w",
        public_key=worker.public_key,
        issuer=operator.public_key,
        issued_at=1,
    )
    await Publisher(log, operator, NS).publish(issue_credential(operator, credential))


def no_consumer(log: MemoryLog) -> None:
    """An agent login may not read the log with a consumer: make sure nothing tries."""

    async def no_scan(*_args: object, **_kwargs: object) -> AsyncIterator[list[StoredMessage]]:
        raise AssertionError("recovering a chain head must not need a consumer")
        yield []

    log.read = no_scan  # type: ignore[method-assign]


async def project(log: MemoryLog, operator: Identity, tmp_path: Path) -> ProjectionStore:
    store = ProjectionStore(tmp_path / "p.duckdb")
    projector = Projector(log, store, namespace=NS, operator_key=operator.public_key)
    await projector.run(follow=False)
    projector.close()
    return store


def quarantined(store: ProjectionStore) -> dict[int, str]:
    return dict(store.rows("SELECT seq, reason FROM quarantine ORDER BY seq"))


async def plant(log: MemoryLog, subject: str, data: bytes) -> int:
    """Store ``data`` under ``subject`` as whoever reaches the agent's prefix (a fresh msg id)."""
    return (await log.append(Append(subject, data, msg_id=os.urandom(8).hex()))).seq


async def test_a_fresh_publisher_skips_junk_replays_and_forks_under_its_prefix(
    tmp_path: Path,
) -> None:
    log, operator, worker = worker_system()
    await issue(log, operator, worker)
    first = await Publisher(log, worker, NS).publish(AgentHeartbeat(agent_id="w-1"))
    earlier = Publisher(log, worker, NS)
    await earlier.publish_many([AgentHeartbeat(agent_id="w-1")] * 2)
    original = await log.next_message(f"swarmlog.{NS}.w-1.>", first.seq)
    assert original is not None
    # A fork: signed by the agent's own key but not on its chain (sealed on an older head).
    stale = Publisher(log, worker, NS)
    stale._head = ChainHead(3, "0" * 64)  # its next position, on a hash it never had
    fork = stale.seal(AgentHeartbeat(agent_id="w-1"))
    planted = {
        await plant(log, original.subject, original.data): "replayed",
        await plant(log, f"swarmlog.{NS}.w-1.task.t9.result", b"\x00junk"): "malformed",
        await plant(log, subject_for(NS, fork.envelope), fork.data): "chain_fork",
        await plant(log, original.subject, original.data): "replayed",  # the last one
    }
    no_consumer(log)
    fresh = Publisher(log, worker, NS)
    assert await fresh.recover() == earlier._head
    await fresh.publish(AgentHeartbeat(agent_id="w-1"))

    log.read = MemoryLog.read.__get__(log)  # type: ignore[method-assign]
    store = await project(log, operator, tmp_path)
    assert quarantined(store) == planted
    assert store.rows("SELECT count(*) FROM chain_breaks") == [(0,)]
    assert store.rows("SELECT sender_seq FROM chain_heads WHERE sender = 'w-1'") == [(4,)]
    store.close()


async def test_an_event_the_reader_refuses_is_not_the_operators_head(tmp_path: Path) -> None:
    log, operator, worker = worker_system()
    await issue(log, operator, worker)
    naming_the_operator = Credential(
        agent_id="operator",
        role="w",
        public_key=worker.public_key,
        issuer=operator.public_key,
        issued_at=1,
    )
    bad = await Publisher(log, operator, NS).publish(
        issue_credential(operator, naming_the_operator)
    )
    await Publisher(log, operator, NS).publish(AgentKilled(agent_id="w-1", reason="drill"))

    store = await project(log, operator, tmp_path)
    assert quarantined(store) == {bad.seq: "bad_credential"}
    assert store.rows("SELECT count(*) FROM chain_breaks") == [(0,)]
    store.close()


class Counting(MemoryLog):
    """A log that counts single-message reads."""

    reads = 0

    async def next_message(self, filter_subject: str, start_seq: int) -> StoredMessage | None:
        self.reads += 1
        return await super().next_message(filter_subject, start_seq)


async def test_a_hint_spares_the_walk_and_a_wrong_one_is_not_believed() -> None:
    log, worker = Counting("SWARMLOG_PC"), identity("w-1")
    published = await Publisher(log, worker, NS).publish_many([AgentHeartbeat(agent_id="w-1")] * 20)
    for i in range(5):
        await plant(log, f"swarmlog.{NS}.w-1.junk.{i}", b"junk %d" % i)
    honest = Publisher(log, worker, NS)
    await honest.recover()
    truth = honest._head
    assert truth is not None
    assert truth.seq == 20
    assert log.reads == 25  # no hint: the whole prefix, one message at a time

    async def projection(sender: str) -> ChainHint:
        assert sender == "w-1"
        return ChainHint(truth, published[-1].seq, published[-1].seq + 2)

    log.reads = 0
    hinted = Publisher(log, worker, NS, hint=projection)
    assert await hinted.recover() == truth
    assert log.reads == 1 + 3  # the hinted event checked, then what the reader has not folded

    async def lying(sender: str) -> ChainHint:
        # Believed, it would skip the whole prefix and re-use sender_seq 6 (a replay).
        return ChainHint(ChainHead(5, truth.hash), published[4].seq, 10**6)

    assert await Publisher(log, worker, NS, hint=lying).recover() == truth


async def test_a_walk_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    log, _operator, worker = worker_system()
    for i in range(5):
        await plant(log, f"swarmlog.{NS}.w-1.junk.{i}", b"junk %d" % i)
    monkeypatch.setattr(publisher_module, "MAX_WALK", 3)
    with pytest.raises(BusError, match=r"more than 3 messages under swarmlog\.pc\.w-1\.>"):
        await Publisher(log, worker, NS).recover()
    monkeypatch.setattr(publisher_module, "MAX_WALK", 5)
    assert await Publisher(log, worker, NS).recover() == ChainHead()


async def test_held_events_go_first_with_the_next_publish_dated_when_held() -> None:
    log = MemoryLog("SWARMLOG_PC")
    clock = iter(range(1_000, 10_000, 100))
    worker = Publisher(log, identity("w-1"), NS, clock=lambda: next(clock))
    token = worker.hold([(TaskStarted(task_id="t1"), {})])  # dated 1000
    assert await log.last_seq() == 0  # held, not published
    (result,) = await worker.publish_batch([(AgentHeartbeat(agent_id="w-1"), {})])
    stored = [m async for batch in log.read() for m in batch]
    envelopes = [decode_envelope(decode_signed(m.data).body) for m in stored]
    assert [e.type for e in envelopes] == ["task_started", "agent_heartbeat"]
    assert [e.sender_seq for e in envelopes] == [1, 2]  # one chain, the held event first
    assert envelopes[0].occurred_at == 1_000 < envelopes[1].occurred_at
    assert result.seq == stored[1].seq  # what is returned is the batch's own
    assert await worker.release(token) == []  # it went out already: nothing twice


async def test_a_dropped_hold_is_never_published_and_a_released_one_is() -> None:
    log = MemoryLog("SWARMLOG_PC")
    worker = Publisher(log, identity("w-1"), NS)
    dropped = worker.hold([(TaskStarted(task_id="t1"), {})])
    kept = worker.hold([(TaskStarted(task_id="t2"), {})])
    worker.drop(dropped)
    (published,) = await worker.release(kept)
    await worker.publish(AgentHeartbeat(agent_id="w-1"))
    stored = [decode_envelope(decode_signed(m.data).body) async for b in log.read() for m in b]
    assert [(e.type, getattr(e.payload, "task_id", None)) for e in stored] == [
        ("task_started", "t2"),
        ("agent_heartbeat", None),
    ]
    assert published.seq == 1


async def test_what_is_taken_from_a_hold_is_never_published_and_the_rest_still_is() -> None:
    log = MemoryLog("SWARMLOG_PC")
    clock = iter(range(1_000, 10_000, 100))
    worker = Publisher(log, identity("w-1"), NS, clock=lambda: next(clock))
    token = worker.hold([(TaskStarted(task_id="t1"), {}), (TaskStarted(task_id="t2"), {})])
    taken = worker.take(token, lambda p: getattr(p, "task_id", None) == "t1")
    assert taken == [(TaskStarted(task_id="t1"), 1_000)]  # with when it was held
    assert worker.take(token, lambda p: getattr(p, "task_id", None) == "t1") == []
    await worker.publish(AgentHeartbeat(agent_id="w-1"))
    stored = [decode_envelope(decode_signed(m.data).body) async for b in log.read() for m in b]
    assert [(e.type, getattr(e.payload, "task_id", None)) for e in stored] == [
        ("task_started", "t2"),
        ("agent_heartbeat", None),
    ]
    assert await worker.release(token) == []


async def test_event_ids_draw_on_the_oss_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    # The stream deduplicates on event ids: ids a reader could predict from earlier ones (a
    # seeded PRNG gives its state away) would let another agent store a message under an
    # agent's next id first, and have the agent's own event dropped as a duplicate.
    drawn: list[int] = []
    real = os.urandom

    def urandom(n: int) -> bytes:
        drawn.append(n)
        return real(n)

    monkeypatch.setattr(os, "urandom", urandom)
    log = MemoryLog("SWARMLOG_PC")
    worker = Publisher(log, identity("w-1"), NS)
    await worker.publish_many([AgentHeartbeat(agent_id="w-1") for _ in range(3)])
    assert drawn.count(10) == 3  # ten bytes of each id, from the OS, one draw per event
