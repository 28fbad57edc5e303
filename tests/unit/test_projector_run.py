"""The projector's run loop on the in-memory log: following, stopping, and what it raises."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple

import pytest
from tests.unit.test_chain_rules import Clock, make, publisher

import swarmlog.projections.projector as projector_module
from swarmlog.agents.publisher import Publisher
from swarmlog.bus.memory import MemoryLog
from swarmlog.bus.ports import Append, StoredMessage
from swarmlog.errors import BusError, StoreError
from swarmlog.projections.projector import BatchResult, Projector
from swarmlog.projections.store import ProjectionStore
from swarmlog.projections.verify import Checked
from swarmlog.schemas.payloads import TaskOffered
from swarmlog.schemas.signing import Identity

DEADLINE = 10.0


async def until(condition: Any, what: str) -> None:
    """Wait (with a deadline) until ``condition()`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


class Rig(NamedTuple):
    clock: Clock
    log: MemoryLog
    operator: Identity
    projector: Projector
    ops: Publisher
    """The operator's publisher."""


def rig(tmp_path: Path) -> Rig:
    """A clock, the in-memory log, the operator, a projector and the operator's publisher."""
    clock = Clock()
    log, operator, _, projector = make(tmp_path, clock)
    return Rig(clock, log, operator, projector, publisher(log, operator, clock))


def hold_folds(projector: Projector, until: threading.Event) -> threading.Event:
    """Make each fold of ``projector`` wait for ``until`` before it folds; the event returned
    is set when a fold begins."""
    folding = threading.Event()
    fold = projector._fold

    def held(batch: Sequence[StoredMessage], checks: list[Future[list[Checked]]]) -> Any:
        folding.set()
        assert until.wait(DEADLINE), "the fold was never let go"
        return fold(batch, checks)

    projector._fold = held  # type: ignore[method-assign]
    return folding


async def refused(log: MemoryLog, store: ProjectionStore, operator: Identity, said: str) -> None:
    """A projector of ``store`` on ``log`` refuses to start, saying ``said``."""
    later = Projector(log, store, namespace="unit", operator_key=operator.public_key)
    try:
        with pytest.raises(StoreError, match=said):
            await later.run(follow=False)
    finally:
        later.close()


def watch_halt(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """An event set when the run loop tells its folding thread to fold nothing more."""
    halted = threading.Event()

    class Halt(threading.Event):
        def set(self) -> None:
            super().set()
            halted.set()

    monkeypatch.setattr(
        projector_module, "threading", SimpleNamespace(Event=Halt, Thread=threading.Thread)
    )
    return halted


async def test_following_folds_what_arrives_and_reports_each_commit_on_the_loop(
    tmp_path: Path,
) -> None:
    r = rig(tmp_path)
    projector, ops = r.projector, r.ops
    seen: list[tuple[int, bool]] = []
    stop = asyncio.Event()
    main = threading.current_thread()

    def on_batch(result: BatchResult) -> None:
        seen.append((result.last_seq, threading.current_thread() is main))

    running = asyncio.create_task(projector.run(follow=True, stop=stop, on_batch=on_batch))
    try:
        first = await ops.publish(TaskOffered(task_id="t1", capability="c"))
        await until(lambda: seen and seen[-1][0] >= first.seq, "the first commit")
        second = await ops.publish(TaskOffered(task_id="t2", capability="c"))
        await until(lambda: seen[-1][0] >= second.seq, "the second commit")
        assert projector.store.position() == second.seq
        assert all(on_loop for _, on_loop in seen)
    finally:
        stop.set()
        position = await asyncio.wait_for(running, DEADLINE)
        projector.close()
    assert position == second.seq


async def test_stopping_commits_the_batch_being_folded_and_folds_no_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = rig(tmp_path)
    projector, ops = r.projector, r.ops
    halted = watch_halt(monkeypatch)
    folding = hold_folds(projector, halted)
    stop = asyncio.Event()
    running = asyncio.create_task(projector.run(follow=True, stop=stop))
    try:
        offered = await ops.publish(TaskOffered(task_id="t1", capability="c"))
        await until(folding.is_set, "the fold to begin")
        later = await ops.publish(TaskOffered(task_id="t2", capability="c"))
        stop.set()
        position = await asyncio.wait_for(running, DEADLINE)
    finally:
        halted.set()
        projector.close()
    assert position == offered.seq
    assert projector.store.position() == offered.seq < later.seq


async def test_what_the_fold_raises_run_raises_and_the_position_stays(tmp_path: Path) -> None:
    r = rig(tmp_path)
    projector, ops = r.projector, r.ops
    first = await ops.publish(TaskOffered(task_id="t1", capability="c"))
    await projector.run(follow=False)
    await ops.publish(TaskOffered(task_id="t2", capability="c"))

    def broken(batch: Sequence[StoredMessage], checks: list[Future[list[Checked]]]) -> Any:
        raise StoreError("the disk is full")

    projector._fold = broken  # type: ignore[method-assign]
    try:
        with pytest.raises(StoreError, match="the disk is full"):
            await asyncio.wait_for(projector.run(follow=True), DEADLINE)
    finally:
        projector.close()
    assert projector.store.position() == first.seq


class GappyLog(MemoryLog):
    """A log whose reader skips a message (what a broken reader would hand over)."""

    async def read(
        self, start_seq: int = 1, *, until_seq: int | None = None, follow: bool = False
    ) -> AsyncIterator[list[StoredMessage]]:
        async for batch in super().read(start_seq, until_seq=until_seq, follow=follow):
            yield [m for m in batch if m.seq != 2]


async def test_a_reader_that_skips_a_sequence_stops_the_projector(tmp_path: Path) -> None:
    clock = Clock()
    log = GappyLog("SWARMLOG_UNIT", wall_clock=clock)
    _, operator, _, unused = make(tmp_path / "unused", clock)
    unused.close()
    store = ProjectionStore(tmp_path / "p.duckdb")
    projector = Projector(log, store, namespace="unit", operator_key=operator.public_key)
    ops = publisher(log, operator, clock)
    for i in range(3):
        await ops.publish(TaskOffered(task_id=f"t{i}", capability="c"))
    try:
        with pytest.raises(BusError, match="skipped events"):
            await asyncio.wait_for(projector.run(follow=True), DEADLINE)
    finally:
        projector.close()
    assert store.position() == 0


async def test_a_projection_ahead_of_its_stream_or_of_another_stream_is_refused(
    tmp_path: Path,
) -> None:
    """A stream that lost its last events (a machine crash between periodic syncs) hands out
    their sequences again: the projection must not keep rows no replay sees."""
    clock, log, operator, projector, ops = rig(tmp_path)
    for i in range(3):
        await ops.publish(TaskOffered(task_id=f"t{i}", capability="c"))
    assert await projector.run(follow=False) == 3
    projector.close()
    shorter = MemoryLog("SWARMLOG_UNIT", wall_clock=clock)
    other = MemoryLog("SWARMLOG_UNIT", wall_clock=clock)
    for stream, count in ((shorter, 2), (other, 3)):
        again = publisher(stream, operator, clock)
        for i in range(count):
            # The same subjects (the same task ids), other events: only the hash tells.
            await again.publish(TaskOffered(task_id=f"t{i}", capability="other"))
    await refused(shorter, projector.store, operator, "holds no message there")
    await refused(other, projector.store, operator, "another message")
    assert projector.store.position() == 3
    # The stream it was folded from is still fine to go on from.
    resumed = Projector(log, projector.store, namespace="unit", operator_key=operator.public_key)
    try:
        await ops.publish(TaskOffered(task_id="t3", capability="c"))
        assert await resumed.run(follow=False) == 4
    finally:
        resumed.close()


async def test_a_batch_that_fails_to_commit_as_the_projector_stops_is_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = rig(tmp_path)
    projector, ops = r.projector, r.ops
    halted = watch_halt(monkeypatch)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def broken(batch: Sequence[StoredMessage], checks: list[Future[list[Checked]]]) -> Any:
        loop.call_soon_threadsafe(stop.set)
        assert halted.wait(DEADLINE), "the run loop never stopped"  # it saw the stop first
        raise StoreError("the disk is full")

    projector._fold = broken  # type: ignore[method-assign]
    await ops.publish(TaskOffered(task_id="t0", capability="c"))
    try:
        with pytest.raises(StoreError, match="the disk is full"):
            await asyncio.wait_for(projector.run(follow=True, stop=stop), DEADLINE)
    finally:
        projector.close()


async def test_cancelled_twice_run_still_waits_for_the_batch_being_folded(
    tmp_path: Path,
) -> None:
    r = rig(tmp_path)
    projector, ops = r.projector, r.ops
    release = threading.Event()
    folding = hold_folds(projector, release)
    reported: list[int] = []
    running = asyncio.create_task(
        projector.run(follow=True, on_batch=lambda r: reported.append(r.last_seq))
    )
    try:
        offered = await ops.publish(TaskOffered(task_id="t0", capability="c"))
        await until(folding.is_set, "the fold to begin")
        running.cancel()
        await asyncio.sleep(0)  # let the first cancellation land, then cancel its wait
        running.cancel()
        await asyncio.sleep(0)
        assert not running.done()  # it must not end while its thread still writes the state
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(running, DEADLINE)
    finally:
        release.set()
        projector.close()
    assert reported == [offered.seq]  # reported before run() ended, not after
    assert projector.store.position() == offered.seq


async def _append(log: MemoryLog, subject: str, data: bytes) -> None:
    await log.append(Append(subject, data, f"raw-{next(_raw_ids)}"))


_raw_ids = itertools.count()


async def test_the_old_last_message_published_again_after_a_lost_tail_is_told_apart(
    tmp_path: Path,
) -> None:
    """The stream lost seqs 2 and 3; another event took seq 2, and an agent published the old
    seq 3 bytes again, which land at seq 3: the same subject and hash, stored at another time."""
    clock, log, operator, projector, ops = rig(tmp_path)
    for i in range(3):
        await ops.publish(TaskOffered(task_id=f"t{i}", capability="c"))
    assert await projector.run(follow=False) == 3
    projector.close()
    old = [await log.message_at(seq) for seq in (1, 2, 3)]
    assert all(m is not None for m in old)
    after = MemoryLog("SWARMLOG_UNIT", wall_clock=clock)
    await _append(after, old[0].subject, old[0].data)  # type: ignore[union-attr]
    await _append(after, old[1].subject, b"another message")  # type: ignore[union-attr]
    await _append(after, old[2].subject, old[2].data)  # type: ignore[union-attr]
    await refused(after, projector.store, operator, "another message")


async def test_junk_of_the_same_size_in_place_of_quarantined_junk_is_told_apart(
    tmp_path: Path,
) -> None:
    clock, log, operator, projector, ops = rig(tmp_path)
    offered = await ops.publish(TaskOffered(task_id="t0", capability="c"))
    first = await log.message_at(offered.seq)
    assert first is not None
    await _append(log, first.subject, b"junk-AAAA")
    assert await projector.run(follow=False) == 2
    assert projector.store.rows("SELECT reason, hash FROM quarantine") == [("malformed", None)]
    projector.close()
    after = MemoryLog("SWARMLOG_UNIT", wall_clock=clock)
    await _append(after, first.subject, first.data)
    await _append(after, first.subject, b"junk-BBBB")
    await refused(after, projector.store, operator, "another message")


async def test_a_cancel_while_the_reader_unwinds_is_not_lost(tmp_path: Path) -> None:
    _, log, _, projector, ops = rig(tmp_path)
    offered = await ops.publish(TaskOffered(task_id="t0", capability="c"))
    read = log.read
    unwinding, release = asyncio.Event(), asyncio.Event()

    async def slow_to_close(*args: Any, **kwargs: Any) -> AsyncIterator[list[StoredMessage]]:
        try:
            async for batch in read(*args, **kwargs):
                yield batch
        finally:
            unwinding.set()
            await release.wait()  # a consumer's deletion: a round trip to the server

    log.read = slow_to_close  # type: ignore[method-assign]
    stop = asyncio.Event()
    running = asyncio.create_task(projector.run(follow=True, stop=stop))
    try:
        await until(lambda: projector.store.position() == offered.seq, "the commit")
        stop.set()
        await asyncio.wait_for(unwinding.wait(), DEADLINE)
        running.cancel()  # an asyncio.timeout around run() firing now, say
        await asyncio.sleep(0)
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(running, DEADLINE)
    finally:
        release.set()
        projector.close()


async def test_no_transaction_holds_more_than_commit_max_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the projector tells as folded before it commits is at most one transaction, so
    that bound must hold however much was read ahead (the next projector's reads wait for it)."""
    monkeypatch.setattr(projector_module, "COMMIT_MAX", 3)
    r = rig(tmp_path)
    projector, ops = r.projector, r.ops
    release = threading.Event()
    folding = hold_folds(projector, release)
    sizes: list[int] = []
    stop = asyncio.Event()
    running = asyncio.create_task(
        projector.run(follow=True, stop=stop, on_batch=lambda b: sizes.append(b.applied))
    )
    try:
        await ops.publish(TaskOffered(task_id="first", capability="c"))
        await until(folding.is_set, "the first fold to begin")
        # Read ahead while the first fold is held: far more than one transaction may take.
        await ops.publish_many([TaskOffered(task_id=f"t{i}", capability="c") for i in range(10)])
        last = await r.log.last_seq()
        release.set()
        await until(lambda: projector.store.position() == last, "the rest to be folded")
    finally:
        release.set()
        stop.set()
        await asyncio.wait_for(running, DEADLINE)
        projector.close()
    assert sum(sizes) == 11
    assert max(sizes) <= 3
