"""The EventLog contract, run against both adapters: in-memory and JetStream on a real server.

JetStream is the reference: the in-memory log must behave the same wherever a test can tell.
Every JetStream test gets its own namespace (so its own stream) on the shared server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar
from uuid import uuid4

import pytest

from swarmlog.bus.jetstream import JetStreamLog
from swarmlog.bus.memory import MemoryLog
from swarmlog.bus.ports import (
    Append,
    Delivery,
    EventLog,
    QueueSpec,
    QueueState,
    StoredMessage,
    WorkQueue,
)
from swarmlog.bus.subjects import (
    aggregate_filter,
    sender_filter,
    stream_name,
    subject_matches,
    work_filter,
)
from swarmlog.errors import ConcurrencyConflict

T = TypeVar("T")

DEADLINE = 10.0  # seconds any single awaited step may take before the test fails
ACK_WAIT = 0.5  # nats-server 2.15 takes it (no minimum hit); redelivery timing is asserted below


@pytest.fixture
def ns() -> str:
    return f"t{uuid4().hex[:10]}"


@pytest.fixture(
    params=["memory", pytest.param("jetstream", marks=pytest.mark.integration)],
)
async def log(request: pytest.FixtureRequest, ns: str) -> AsyncIterator[EventLog]:
    if request.param == "memory":
        memory = MemoryLog(stream_name(ns))
        yield memory
        await memory.close()
        return
    url: str = request.getfixturevalue("nats_server")
    js = await JetStreamLog.open(url, ns, provision=True)
    try:
        yield js
    finally:
        if not js.client.is_closed:  # a test may have closed it already
            await js.client.jetstream().delete_stream(js.stream)  # keep the shared server light
        await js.close()


# -- helpers -------------------------------------------------------------------------------------


def task_subject(ns: str, task: str, type_: str = "result", sender: str = "alice") -> str:
    return f"swarmlog.{ns}.{sender}.task.{task}.{type_}"


def work_subject(ns: str, task: str, role: str = "coder", priority: str = "normal") -> str:
    return f"swarmlog.{ns}.operator.work.{role}.{priority}.{task}"


def item(subject: str, data: bytes = b"x", msg_id: str | None = None, **kw: object) -> Append:
    return Append(subject, data, msg_id or uuid4().hex, **kw)  # type: ignore[arg-type]


async def within(awaitable: Awaitable[T], timeout: float = DEADLINE) -> T:
    return await asyncio.wait_for(awaitable, timeout)


async def collect(reader: AsyncIterator[list[StoredMessage]]) -> list[StoredMessage]:
    async def run() -> list[StoredMessage]:
        out: list[StoredMessage] = []
        async for batch in reader:
            assert batch, "a reader never yields an empty batch"
            out.extend(batch)
        return out

    return await within(run())


async def fill(log: EventLog, subjects: list[str]) -> list[int]:
    return [(await log.append(item(s, s.encode()))).seq for s in subjects]


def content(message: StoredMessage | None) -> tuple[int, str, bytes] | None:
    """What the contract pins down about a stored message (``stored_at`` is a clock reading)."""
    return None if message is None else (message.seq, message.subject, message.data)


def seqs(deliveries: list[Delivery]) -> list[int]:
    return [d.message.seq for d in deliveries]


async def fetch_all(queue: WorkQueue, *, timeout: float = 0.5) -> list[Delivery]:
    """Everything the queue hands out until a fetch comes back empty (nothing settled)."""
    out: list[Delivery] = []
    while True:
        got = await within(queue.fetch(10, timeout=timeout))
        if not got:
            return out
        out.extend(got)


# -- append, dedupe, sequences -------------------------------------------------------------------


async def test_empty_log_has_last_seq_zero(log: EventLog) -> None:
    assert await log.last_seq() == 0


async def test_append_returns_increasing_seqs(log: EventLog, ns: str) -> None:
    results = [await log.append(item(task_subject(ns, f"t{i}"))) for i in range(5)]

    assert [r.seq for r in results] == [1, 2, 3, 4, 5]
    assert not any(r.duplicate for r in results)
    assert await log.last_seq() == 5


async def test_same_msg_id_is_stored_once(log: EventLog, ns: str) -> None:
    subject = task_subject(ns, "t1")
    await log.append(item(subject, b"before"))
    first = await log.append(item(subject, b"first", msg_id="m-1"))
    second = await log.append(item(subject, b"second", msg_id="m-1"))

    assert not first.duplicate
    assert second.duplicate
    assert second.seq == first.seq == 2
    assert await log.last_seq() == 2
    stored = await collect(log.read())
    assert [m.data for m in stored] == [b"before", b"first"]


async def test_expectation_is_checked_before_the_dedupe(log: EventLog, ns: str) -> None:
    # JetStream's order: a retried claim whose first attempt landed fails its (now stale)
    # expectation; the same id with an expectation that holds, or none, is a duplicate.
    agg = aggregate_filter(ns, "task", "t1")
    subject = task_subject(ns, "t1", "task_claimed")
    claim = item(subject, msg_id="claim-1", expected_last_seq=0, expected_filter=agg)
    first = await log.append(claim)
    assert (first.seq, first.duplicate) == (1, False)

    with pytest.raises(ConcurrencyConflict):
        await log.append(claim)
    again = await log.append(
        item(subject, msg_id="claim-1", expected_last_seq=1, expected_filter=agg)
    )
    plain = await log.append(item(subject, msg_id="claim-1"))

    assert (again.seq, again.duplicate) == (1, True)
    assert (plain.seq, plain.duplicate) == (1, True)
    assert await log.last_seq() == 1


# -- optimistic concurrency ----------------------------------------------------------------------


async def test_expected_zero_on_an_empty_aggregate(log: EventLog, ns: str) -> None:
    await log.append(item(task_subject(ns, "t2")))  # another aggregate does not count
    result = await log.append(
        item(
            task_subject(ns, "t1", "task_claimed"),
            expected_last_seq=0,
            expected_filter=aggregate_filter(ns, "task", "t1"),
        )
    )
    assert result.seq == 2


async def test_expected_last_seq_on_an_aggregate(log: EventLog, ns: str) -> None:
    agg = aggregate_filter(ns, "task", "t1")
    offered = await log.append(item(task_subject(ns, "t1", "task_offered", sender="operator")))
    await log.append(item(task_subject(ns, "t2", "task_offered", sender="operator")))
    await log.append(item(task_subject(ns, "t10", "result", sender="carol")))

    # Right: the last message of t1's aggregate (from any sender) is ``offered``, not seq 3.
    claimed = await log.append(
        item(
            task_subject(ns, "t1", "task_claimed", sender="bob"),
            expected_last_seq=offered.seq,
            expected_filter=agg,
        )
    )
    assert claimed.seq == 4

    # Wrong: stale (the claim moved the aggregate on) and too new; nothing is stored.
    for wrong in (offered.seq, 0, claimed.seq + 1):
        with pytest.raises(ConcurrencyConflict) as caught:
            await log.append(
                item(
                    task_subject(ns, "t1", "task_started"),
                    expected_last_seq=wrong,
                    expected_filter=agg,
                )
            )
        assert caught.value.subject == agg
        assert caught.value.expected == wrong
    assert await log.last_seq() == 4
    last = await log.last_message(agg)
    assert last is not None
    assert (last.seq, last.subject) == (4, task_subject(ns, "t1", "task_claimed", sender="bob"))


async def test_expected_last_seq_defaults_to_the_own_subject(log: EventLog, ns: str) -> None:
    subject = task_subject(ns, "t1", "task_heartbeat")
    await log.append(item(subject))
    await log.append(item(task_subject(ns, "t1", "result")))  # same aggregate, other subject

    assert (await log.append(item(subject, expected_last_seq=1))).seq == 3
    with pytest.raises(ConcurrencyConflict):
        await log.append(item(subject, expected_last_seq=2))
    assert await log.last_seq() == 3


async def test_concurrent_claimers_exactly_one_wins(log: EventLog, ns: str) -> None:
    agg = aggregate_filter(ns, "task", "t1")
    offered = await log.append(item(task_subject(ns, "t1", "task_offered", sender="operator")))

    outcomes = await within(
        asyncio.gather(
            *(
                log.append(
                    item(
                        task_subject(ns, "t1", "task_claimed", sender=who),
                        data=who.encode(),
                        expected_last_seq=offered.seq,
                        expected_filter=agg,
                    )
                )
                for who in ("bob", "carol")
            ),
            return_exceptions=True,
        )
    )

    winners = [o for o in outcomes if not isinstance(o, BaseException)]
    losers = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(winners) == 1
    assert len(losers) == 1
    assert isinstance(losers[0], ConcurrencyConflict)
    assert await log.last_seq() == 2
    stored = await collect(log.read())
    assert len(stored) == 2
    assert stored[1].seq == winners[0].seq


# -- append_many ---------------------------------------------------------------------------------


async def test_append_many_keeps_order(log: EventLog, ns: str) -> None:
    items = [item(task_subject(ns, f"t{i % 7}"), f"{i}".encode()) for i in range(300)]

    results = await within(log.append_many(items, window=16))

    assert [r.seq for r in results] == list(range(1, 301))
    assert not any(r.duplicate for r in results)
    stored = await collect(log.read())
    assert [m.data for m in stored] == [f"{i}".encode() for i in range(300)]
    assert [m.subject for m in stored] == [i.subject for i in items]


async def test_append_many_dedupes(log: EventLog, ns: str) -> None:
    subject = task_subject(ns, "t1")
    await log.append(item(subject, b"earlier", msg_id="a"))
    items = [
        item(subject, b"a again", msg_id="a"),
        item(subject, b"b", msg_id="b"),
        item(subject, b"b again", msg_id="b"),
        item(subject, b"c", msg_id="c"),
    ]

    results = await within(log.append_many(items))

    assert [(r.seq, r.duplicate) for r in results] == [(1, True), (2, False), (2, True), (3, False)]
    assert await log.last_seq() == 3
    assert [m.data for m in await collect(log.read())] == [b"earlier", b"b", b"c"]


# -- last_message --------------------------------------------------------------------------------


async def test_last_message_with_a_wildcard_filter(log: EventLog, ns: str) -> None:
    assert await log.last_message(sender_filter(ns, "alice")) is None

    await log.append(item(task_subject(ns, "t1", sender="alice"), b"a1"))
    await log.append(item(task_subject(ns, "t2", sender="alice"), b"a2"))
    await log.append(item(task_subject(ns, "t3", sender="bob"), b"b1"))
    await log.append(item(f"swarmlog.{ns}.alicex.sys.budget_set", b"not alice"))

    last = await log.last_message(sender_filter(ns, "alice"))
    assert content(last) == (2, task_subject(ns, "t2", sender="alice"), b"a2")
    bob = await log.last_message(sender_filter(ns, "bob"))
    assert bob is not None
    assert bob.seq == 3
    exact = await log.last_message(task_subject(ns, "t1", sender="alice"))
    assert exact is not None
    assert exact.data == b"a1"
    assert await log.last_message(sender_filter(ns, "nobody")) is None


async def test_message_at_a_sequence(log: EventLog, ns: str) -> None:
    assert await log.message_at(1) is None
    await log.append(item(task_subject(ns, "t1"), b"one"))
    await log.append(item(task_subject(ns, "t2", sender="bob"), b"two"))
    assert content(await log.message_at(2)) == (2, task_subject(ns, "t2", sender="bob"), b"two")
    assert content(await log.message_at(1)) == (1, task_subject(ns, "t1"), b"one")
    for missing in (0, -1, 3):
        assert await log.message_at(missing) is None


async def test_next_message_walks_a_filter_forward(log: EventLog, ns: str) -> None:
    alice = sender_filter(ns, "alice")
    assert await log.next_message(alice, 1) is None

    await log.append(item(task_subject(ns, "t1", sender="alice"), b"a1"))
    await log.append(item(task_subject(ns, "t2", sender="bob"), b"b1"))
    await log.append(item(f"swarmlog.{ns}.alicex.sys.budget_set", b"not alice"))
    await log.append(item(task_subject(ns, "t3", sender="alice"), b"a2"))

    assert content(await log.next_message(alice, 0)) == (
        1,
        task_subject(ns, "t1", sender="alice"),
        b"a1",
    )
    found = await log.next_message(alice, 2)  # skips bob's and alicex's
    assert found is not None
    assert (found.seq, found.data) == (4, b"a2")
    assert found.stored_at > 0
    assert await log.next_message(alice, 5) is None
    assert await log.next_message(sender_filter(ns, "nobody"), 1) is None


# -- read ----------------------------------------------------------------------------------------


async def test_read_returns_everything_in_order_and_ends(log: EventLog, ns: str) -> None:
    subjects = [task_subject(ns, f"t{i}") for i in range(6)]
    await fill(log, subjects)

    stored = await collect(log.read())
    assert [m.seq for m in stored] == [1, 2, 3, 4, 5, 6]
    assert [m.subject for m in stored] == subjects
    assert [m.data for m in stored] == [s.encode() for s in subjects]

    assert [m.seq for m in await collect(log.read(4))] == [4, 5, 6]
    assert [m.seq for m in await collect(log.read(0))] == [1, 2, 3, 4, 5, 6]


async def test_read_honours_until_seq(log: EventLog, ns: str) -> None:
    await fill(log, [task_subject(ns, f"t{i}") for i in range(6)])

    assert [m.seq for m in await collect(log.read(2, until_seq=4))] == [2, 3, 4]
    assert [m.seq for m in await collect(log.read(until_seq=1))] == [1]
    assert [m.seq for m in await collect(log.read(5, until_seq=6))] == [5, 6]
    assert await collect(log.read(5, until_seq=4)) == []


async def test_read_of_an_empty_log_or_beyond_the_end_yields_nothing(
    log: EventLog, ns: str
) -> None:
    assert await collect(log.read()) == []
    await fill(log, [task_subject(ns, "t1"), task_subject(ns, "t2")])
    assert await collect(log.read(3)) == []
    assert await collect(log.read(100)) == []


async def test_read_without_follow_stops_at_the_last_seq_when_it_started(
    log: EventLog, ns: str
) -> None:
    await fill(log, [task_subject(ns, f"t{i}") for i in range(3)])
    reader = log.read()
    seen = list(await within(anext(reader)))
    await log.append(item(task_subject(ns, "late")))

    seen.extend(await collect(reader))

    assert [m.seq for m in seen] == [1, 2, 3]


async def test_read_with_follow_yields_later_appends(log: EventLog, ns: str) -> None:
    await fill(log, [task_subject(ns, "t1"), task_subject(ns, "t2"), task_subject(ns, "t3")])
    reader = log.read(2, follow=True)
    try:
        seen: list[StoredMessage] = []
        while not seen or seen[-1].seq < 3:
            seen.extend(await within(anext(reader)))
        assert [m.seq for m in seen] == [2, 3]

        # The reader is now caught up and waiting: what is appended next reaches it.
        pending = asyncio.ensure_future(anext(reader))
        await asyncio.sleep(0)
        assert not pending.done()
        late = [task_subject(ns, "t4"), task_subject(ns, "t5")]
        await fill(log, late)
        seen.extend(await within(pending))
        while seen[-1].seq < 5:
            seen.extend(await within(anext(reader)))
        assert [m.seq for m in seen] == [2, 3, 4, 5]
        assert [m.subject for m in seen[2:]] == late
    finally:
        await within(reader.aclose())  # type: ignore[attr-defined]


async def test_read_with_follow_on_an_empty_log(log: EventLog, ns: str) -> None:
    reader = log.read(follow=True)
    try:
        first = asyncio.ensure_future(anext(reader))
        await fill(log, [task_subject(ns, "t1")])
        batch = await within(first)
        assert [m.seq for m in batch] == [1]
    finally:
        await within(reader.aclose())  # type: ignore[attr-defined]


async def test_read_with_follow_and_until_seq_waits_then_ends(log: EventLog, ns: str) -> None:
    await fill(log, [task_subject(ns, "t1")])
    reader = log.read(until_seq=2, follow=True)
    done = asyncio.ensure_future(collect(reader))
    await fill(log, [task_subject(ns, "t2"), task_subject(ns, "t3")])

    assert [m.seq for m in await within(done)] == [1, 2]


# -- work queues ---------------------------------------------------------------------------------


async def test_fetch_on_an_empty_queue_returns_nothing_within_its_timeout(
    log: EventLog, ns: str
) -> None:
    queue = await log.work_queue(QueueSpec("coder", work_filter(ns, "coder", "normal")))
    loop = asyncio.get_running_loop()
    for batch in (1, 5):
        started = loop.time()
        assert await within(queue.fetch(batch, timeout=0.3)) == []
        assert loop.time() - started < 0.3 + 1.0
    await queue.close()


async def test_fetch_returns_only_filtered_messages(log: EventLog, ns: str) -> None:
    filter_ = work_filter(ns, "coder", "normal")
    wanted = await fill(
        log,
        [
            work_subject(ns, "t1"),
            work_subject(ns, "t2", role="reviewer"),
            task_subject(ns, "t1"),
            work_subject(ns, "t3", priority="high"),
            work_subject(ns, "t4"),
        ],
    )
    queue = await log.work_queue(QueueSpec("coder-normal", filter_))

    got = await fetch_all(queue)

    assert seqs(got) == [wanted[0], wanted[4]]
    assert all(subject_matches(filter_, d.message.subject) for d in got)
    assert all(d.num_delivered == 1 for d in got)
    assert content(got[0].message) == (1, work_subject(ns, "t1"), work_subject(ns, "t1").encode())
    for d in got:
        await d.ack()

    # Messages appended after the consumer exists are delivered too.
    (late,) = await fill(log, [work_subject(ns, "t5")])
    more = await fetch_all(queue)
    assert seqs(more) == [late]
    await more[0].ack()
    await queue.close()


async def test_ack_prevents_redelivery(log: EventLog, ns: str) -> None:
    await fill(log, [work_subject(ns, "t1")])
    queue = await log.work_queue(
        QueueSpec("coder", work_filter(ns, "coder", "normal"), ack_wait=ACK_WAIT)
    )
    (delivery,) = await within(queue.fetch(1, timeout=DEADLINE))

    await delivery.ack()

    assert await within(queue.fetch(1, timeout=ACK_WAIT * 3)) == []
    await queue.close()


async def test_nak_redelivers_at_once(log: EventLog, ns: str) -> None:
    await fill(log, [work_subject(ns, "t1")])
    queue = await log.work_queue(QueueSpec("coder", work_filter(ns, "coder", "normal")))
    (first,) = await within(queue.fetch(1, timeout=DEADLINE))
    assert first.num_delivered == 1

    await first.nak(delay=0)

    # ack_wait is the default 30 s, so only the nak can explain a prompt redelivery.
    (again,) = await within(queue.fetch(1, timeout=5.0))
    assert content(again.message) == content(first.message)
    assert again.num_delivered == 2
    await again.ack()
    assert await within(queue.fetch(1, timeout=0.3)) == []
    await queue.close()


async def test_nak_with_delay_holds_redelivery_back(log: EventLog, ns: str) -> None:
    await fill(log, [work_subject(ns, "t1")])
    queue = await log.work_queue(QueueSpec("coder", work_filter(ns, "coder", "normal")))
    (first,) = await within(queue.fetch(1, timeout=DEADLINE))

    await first.nak(delay=1.0)

    assert await within(queue.fetch(1, timeout=0.4)) == []
    (again,) = await within(queue.fetch(1, timeout=5.0))
    assert again.message.seq == first.message.seq
    assert again.num_delivered == 2
    await again.ack()
    await queue.close()


async def test_term_prevents_redelivery(log: EventLog, ns: str) -> None:
    await fill(log, [work_subject(ns, "t1"), work_subject(ns, "t2")])
    queue = await log.work_queue(
        QueueSpec("coder", work_filter(ns, "coder", "normal"), ack_wait=ACK_WAIT)
    )
    (first,) = await within(queue.fetch(1, timeout=DEADLINE))
    assert first.message.seq == 1

    await first.term()

    # The next message comes, the terminated one never does again (not even after ack_wait).
    (second,) = await within(queue.fetch(1, timeout=DEADLINE))
    assert second.message.seq == 2
    await second.ack()
    assert await within(queue.fetch(1, timeout=ACK_WAIT * 3)) == []
    await queue.close()


async def test_handles_with_the_same_name_share_work(log: EventLog, ns: str) -> None:
    filter_ = work_filter(ns, "coder", "normal")
    stored = await fill(log, [work_subject(ns, f"t{i}") for i in range(4)])
    one = await log.work_queue(QueueSpec("coder", filter_, ack_wait=1.0))
    two = await log.work_queue(QueueSpec("coder", filter_, ack_wait=1.0))

    first = await within(one.fetch(2, timeout=DEADLINE))
    second = await within(two.fetch(2, timeout=DEADLINE))
    # Leased to one handle, a message is not handed to the other (nor again to the same).
    assert await within(two.fetch(2, timeout=0.3)) == []
    assert await within(one.fetch(2, timeout=0.1)) == []

    assert sorted(seqs(first) + seqs(second)) == stored
    assert all(d.num_delivered == 1 for d in first + second)
    for d in first + second:
        await d.ack()
    # Acknowledged through either handle: neither sees it again, even after ack_wait.
    assert await within(one.fetch(4, timeout=2.0)) == []
    assert await within(two.fetch(4, timeout=0.3)) == []
    (late,) = await fill(log, [work_subject(ns, "t9")])
    (fresh,) = await within(two.fetch(4, timeout=DEADLINE))
    assert fresh.message.seq == late
    await fresh.ack()
    await one.close()
    await two.close()


async def test_close_is_prompt_with_a_queue_left_open(log: EventLog, ns: str) -> None:
    # A worker cancelled mid-fetch, never closing its queue: closing the log must not hang.
    filter_ = work_filter(ns, "coder", "normal")
    one = await log.work_queue(QueueSpec("coder", filter_))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(one.fetch(1, timeout=5.0), 0.3)
    await fill(log, [work_subject(ns, "t1"), work_subject(ns, "t2")])
    # On JetStream the cancelled fetch's pull request is still open on the server and takes
    # the first message into the abandoned handle's buffer; another handle sees the rest.
    two = await log.work_queue(QueueSpec("coder", filter_))
    for d in await within(two.fetch(2, timeout=0.5)):
        await d.ack()
    loop = asyncio.get_running_loop()

    started = loop.time()
    await within(log.close())

    assert loop.time() - started < 5.0


async def test_unacked_message_is_redelivered_after_ack_wait(log: EventLog, ns: str) -> None:
    await fill(log, [work_subject(ns, "t1")])
    queue = await log.work_queue(
        QueueSpec("coder", work_filter(ns, "coder", "normal"), ack_wait=ACK_WAIT)
    )
    loop = asyncio.get_running_loop()
    (first,) = await within(queue.fetch(1, timeout=DEADLINE))
    delivered_at = loop.time()

    (again,) = await within(queue.fetch(1, timeout=5.0))

    assert loop.time() - delivered_at >= ACK_WAIT * 0.8  # not before ack_wait ran out
    assert content(again.message) == content(first.message)
    assert again.num_delivered == 2
    await again.ack()
    await queue.close()


async def test_max_deliver_stops_redelivery(log: EventLog, ns: str) -> None:
    await fill(log, [work_subject(ns, "t1")])
    queue = await log.work_queue(
        QueueSpec("coder", work_filter(ns, "coder", "normal"), ack_wait=ACK_WAIT, max_deliver=2)
    )
    (first,) = await within(queue.fetch(1, timeout=DEADLINE))
    (second,) = await within(queue.fetch(1, timeout=5.0))
    assert (first.num_delivered, second.num_delivered) == (1, 2)

    assert await within(queue.fetch(1, timeout=ACK_WAIT * 4)) == []

    # The queue still works for new messages.
    (late,) = await fill(log, [work_subject(ns, "t2")])
    (fresh,) = await within(queue.fetch(1, timeout=DEADLINE))
    assert (fresh.message.seq, fresh.num_delivered) == (late, 1)
    await fresh.ack()
    await queue.close()


async def test_in_progress_extends_the_ack_wait(log: EventLog, ns: str) -> None:
    ack_wait = 1.0
    await fill(log, [work_subject(ns, "t1")])
    queue = await log.work_queue(
        QueueSpec("coder", work_filter(ns, "coder", "normal"), ack_wait=ack_wait)
    )
    (first,) = await within(queue.fetch(1, timeout=DEADLINE))

    assert await within(queue.fetch(1, timeout=ack_wait * 0.6)) == []
    await first.in_progress()  # the lease now runs until ~1.6 s after delivery
    # Past the original ack_wait: without in_progress it would have come back by now.
    assert await within(queue.fetch(1, timeout=ack_wait * 0.7)) == []

    # in_progress only extends: the message is redelivered once the new lease runs out.
    (again,) = await within(queue.fetch(1, timeout=5.0))
    assert content(again.message) == content(first.message)
    assert again.num_delivered == 2
    await again.ack()
    await queue.close()


async def test_a_doorbell_rings_for_matching_subjects_only(log: EventLog, ns: str) -> None:
    bell = await log.doorbell(f"swarmlog.{ns}.*.work.coder.>")
    assert await bell.wait(0) == []
    await fill(log, [work_subject(ns, "t1"), work_subject(ns, "t2", role="tester")])
    await log.append(item(work_subject(ns, "t3", priority="critical")))
    rung: list[str] = []
    while len(rung) < 2:
        got = await bell.wait(DEADLINE)
        assert got, "no ring"
        rung += got
    assert rung == [work_subject(ns, "t1"), work_subject(ns, "t3", priority="critical")]
    assert await bell.wait(0.05) == []
    await bell.close()


async def test_flags_are_read_watched_and_deleted(log: EventLog) -> None:
    flags = await log.flags()
    await flags.put("agent.a", b"stop")
    assert await flags.get("agent.a") == b"stop"
    assert await flags.get("agent.b") is None
    assert await flags.items() == {"agent.a": b"stop"}
    seen: list[tuple[str, bytes | None]] = []
    watch = flags.watch()
    seen.append(await within(anext(watch)))  # the current value first
    await flags.put("all", b"everyone")
    seen.append(await within(anext(watch)))
    await flags.delete("agent.a")
    seen.append(await within(anext(watch)))
    await flags.delete("never-set")  # deleting nothing is fine
    assert seen == [("agent.a", b"stop"), ("all", b"everyone"), ("agent.a", None)]
    assert await flags.get("agent.a") is None
    await watch.aclose()  # type: ignore[attr-defined]


async def test_pending_counts_queued_and_unacked_work(log: EventLog, ns: str) -> None:
    assert await log.pending("coder") == 0  # no such consumer
    queue = await log.work_queue(QueueSpec("coder", work_filter(ns, "coder", "normal")))
    await fill(log, [work_subject(ns, f"t{i}") for i in range(3)])

    async def settled(n: int) -> None:
        while await log.pending("coder") != n:  # noqa: ASYNC110 (a count, not an event)
            await asyncio.sleep(0.01)  # the server counts asynchronously: poll, bounded below

    await within(settled(3))
    (first,) = await within(queue.fetch(1, timeout=DEADLINE))
    await within(settled(3))  # in hand, not yet acked: still owed
    await first.ack()
    await within(settled(2))
    await queue.close()


async def test_queues_report_each_consumer_s_waiting_unacked_and_redelivered_work(
    log: EventLog, ns: str
) -> None:
    assert await log.queues() == []  # none yet
    work = work_filter(ns, "coder", "normal")
    queue = await log.work_queue(QueueSpec("coder", work))
    other = await log.work_queue(QueueSpec("another", work_filter(ns, "coder", "high")))
    await fill(log, [work_subject(ns, f"t{i}") for i in range(3)])

    async def reaches(figures: tuple[int, int, int]) -> list[QueueState]:
        while True:
            states = await log.queues()
            coder = next(q for q in states if q.name == "coder")
            if (coder.waiting, coder.unacked, coder.redelivered) == figures:
                return states
            await asyncio.sleep(0.01)  # the server counts asynchronously: poll, bounded below

    states = await within(reaches((3, 0, 0)))
    assert [q.name for q in states] == ["another", "coder"]  # by name, every consumer
    assert states[1].filter_subject == work
    assert (states[0].waiting, states[0].unacked) == (0, 0)  # its filter matched nothing
    (first,) = await within(queue.fetch(1, timeout=DEADLINE))
    await within(reaches((2, 1, 0)))  # in hand
    await first.nak()

    async def redelivered() -> list[Delivery]:
        taken: list[Delivery] = []  # the nak may land after the next fetch: take until it did
        while not any(d.num_delivered == 2 for d in taken):
            taken += await queue.fetch(3, timeout=DEADLINE)
        return taken

    taken = await within(redelivered())
    await within(reaches((0, 3, 1)))  # all in hand, the first a second time
    for delivery in taken:
        await delivery.ack()
    await within(reaches((0, 0, 0)))
    await queue.close()
    await other.close()


async def test_the_result_cache_is_a_separate_store(log: EventLog) -> None:
    cache, flags = await log.cache(), await log.flags()
    await cache.put("result.abc", b"{}")
    assert await cache.get("result.abc") == b"{}"
    assert await flags.get("result.abc") is None  # not a kill flag


@pytest.fixture(
    params=["memory", pytest.param("jetstream", marks=pytest.mark.integration)],
)
async def short_lived(request: pytest.FixtureRequest, ns: str) -> AsyncIterator[EventLog]:
    """A log whose presence bucket keeps a value one second after its last put."""
    if request.param == "memory":
        yield MemoryLog(stream_name(ns), presence_ttl=1.0)
        return
    url: str = request.getfixturevalue("nats_server")
    js = await JetStreamLog.open(url, ns, provision=True, presence_ttl=1.0)
    try:
        yield js
    finally:
        for stream in (js.stream, f"KV_{js.stream}_PRESENCE"):
            await js.client.jetstream().delete_stream(stream)
        await js.close()


async def test_presence_values_are_read_and_gone_a_ttl_after_their_last_put(
    short_lived: EventLog,
) -> None:
    presence = await short_lived.presence()
    await presence.put("echo-1", b"one")
    await presence.put("echo-2", b"two")
    assert await presence.get("echo-1") == b"one"
    assert await presence.items() == {"echo-1": b"one", "echo-2": b"two"}
    await presence.delete("echo-2")  # a replica that stops takes its presence away
    assert await presence.items() == {"echo-1": b"one"}
    assert await (await short_lived.flags()).get("echo-1") is None  # a bucket of its own

    async def gone() -> None:
        while await presence.items():  # noqa: ASYNC110 (the server expires values on a timer)
            await asyncio.sleep(0.05)

    await within(gone())
    assert await presence.get("echo-1") is None
