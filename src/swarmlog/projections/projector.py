"""The projector: read the log in batches, verify, fold, and write each batch with its position.

Signatures are checked in a thread pool (libsodium releases the GIL); admitting and folding run in
stream order; the batch is committed in one DuckDB transaction, the new position with it (the last
sequence its rows hold). The same class serves the live projector (``follow=True``), ``replay``
and ``audit verify``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from swarmlog.bus.ports import EventLog, StoredMessage
from swarmlog.errors import BusError, RowExists, SchemaError, StoreError
from swarmlog.projections.fold import fold_checked
from swarmlog.projections.state import Key, State
from swarmlog.projections.store import ProjectionStore
from swarmlog.projections.verify import (
    Checked,
    check,
    creates,
    touches,
    touches_then,
    touches_where,
)
from swarmlog.schemas.codec import decode_signed
from swarmlog.schemas.envelope import Envelope
from swarmlog.schemas.signing import event_hash

__all__ = ["COMMIT_MAX", "BatchResult", "Projector"]

log = logging.getLogger(__name__)

_READ_AHEAD = 8
"""Batches read (and their signatures checked) ahead of the fold."""
COMMIT_MAX = 4096
"""The most events one fold takes from the batches read ahead (one transaction): so what the
projector has told as folded is never more than this ahead of what it committed (see
:class:`~swarmlog.projections.service.QueryService`)."""
_PRESUME_UP_TO = 16
"""Messages a batch may have at most for the rows it creates to be presumed absent rather than
looked up (:func:`~swarmlog.projections.verify.creates`): the lookup is a fixed cost, most of a
lone offer's commit and little of a large batch's, and a wrong guess costs the whole batch
folded again, which a sender repeating task ids could otherwise force on large batches."""
_PRESUME_PAUSE = 1000
"""Batches folded without presuming after a wrong guess: a sender that repeats task ids to make
the projector fold batches twice gets one batch folded twice per this many, not one per offer."""

_Read = tuple[list[StoredMessage], list[Future[list[Checked]]]]
"""A batch read and the futures of its signature checks."""


@dataclass
class BatchResult:
    """What one batch did."""

    applied: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    """(stream sequence, reason) of every quarantined message."""
    last_seq: int = 0


class Projector:
    """Folds the log of one namespace into a :class:`ProjectionStore`."""

    def __init__(
        self,
        log: EventLog,
        store: ProjectionStore,
        *,
        namespace: str,
        operator_key: str,
        verify: bool = True,
        threads: int = 2,
    ) -> None:
        self.log = log
        self.store = store
        self.namespace = namespace
        self.operator_key = operator_key
        self.verify = verify
        self._pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="verify")
        self._threads = max(1, threads)
        self._state = State()
        self._unpresumed = 0  # batches still to fold without presuming (after a wrong guess)
        self._folding: Callable[[int], None] | None = None  # see run(on_folded)
        self.cpu = {"preload": 0.0, "fold": 0.0, "write": 0.0}
        """CPU seconds of the folding thread by stage, summed over batches (``bench limits``)."""
        store.bind(namespace=namespace, operator_key=operator_key)

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _check(self, messages: Sequence[StoredMessage]) -> list[Checked]:
        return [check(m, self.namespace, verify=self.verify) for m in messages]

    def _start_checks(self, batch: Sequence[StoredMessage]) -> list[Future[list[Checked]]]:
        """Begin the stateless checks of ``batch`` on the pool (they run while we fold)."""
        size = max(1, -(-len(batch) // self._threads))
        return [
            self._pool.submit(self._check, batch[i : i + size]) for i in range(0, len(batch), size)
        ]

    def process(
        self, batch: Sequence[StoredMessage], on_folded: Callable[[int], None] | None = None
    ) -> BatchResult:
        """Verify, fold and commit one batch (blocking: call it from a worker thread);
        ``on_folded`` is called in this thread with its last sequence once it is folded,
        before its commit."""
        self._folding = on_folded
        try:
            return self._fold(batch, self._start_checks(batch))
        finally:
            self._folding = None

    def _fold(
        self, batch: Sequence[StoredMessage], checks: list[Future[list[Checked]]]
    ) -> BatchResult:
        result = BatchResult(last_seq=batch[-1].seq if batch else 0)
        if not batch:
            return result
        checked = [c for part in checks for c in part.result()]
        passed = [c.envelope for c in checked if c.envelope is not None and c.rejection is None]
        presume: list[tuple[str, Key]] = []
        if self._unpresumed:
            self._unpresumed -= 1
        elif len(batch) <= _PRESUME_UP_TO:
            presume = [k for e in passed for k in creates(e)]
        try:
            return self._commit(result, checked, passed, presume)
        except RowExists:
            # An offer repeated a task id whose row was not in memory: nothing was written.
            log.info(
                "batch %d..%d folded again, looking its rows up (an offer repeated a task id)",
                batch[0].seq,
                batch[-1].seq,
            )
            self._unpresumed = _PRESUME_PAUSE
            return self._commit(result, checked, passed, [])

    def _commit(
        self,
        result: BatchResult,
        checked: list[Checked],
        passed: list[Envelope],
        presume: list[tuple[str, Key]],
    ) -> BatchResult:
        """Preload, fold and write one batch (``presume``: rows taken to be absent unasked)."""
        keys: list[tuple[str, Key]] = [key for e in passed for key in touches(e)]
        where: list[tuple[str, str, Any]] = [w for e in passed for w in touches_where(e)]
        ids = [(e.id, e.occurred_at) for e in passed]
        state = self._state
        cpu, began = self.cpu, time.thread_time()
        try:
            presumed = self.store.preload(state, keys, ids, where, presume)
            # Then what only the rows just loaded name (a model call's workflow budget).
            then = [key for e in passed for key in touches_then(state, e)]
            if then:
                self.store.preload(state, then, [])
            preloaded = time.thread_time()
            result.rejected = fold_checked(state, checked, self.operator_key, verify=self.verify)
            result.applied = len(checked) - len(result.rejected)
            folded = time.thread_time()
            if self._folding is not None:
                self._folding(result.last_seq)  # its commit begins
            self.store.flush(state, result.last_seq, presumed)
            cpu["preload"] += preloaded - began
            cpu["fold"] += folded - preloaded
            cpu["write"] += time.thread_time() - folded
        except BaseException:
            state.evict()  # a failed batch must leave nothing behind for the next one
            raise
        state.evict(keep_resident=True)
        return result

    async def _check_still_logged(self, position: int) -> None:
        """Refuse to go on from ``position`` unless the stream holds there the message this
        file folded: a stream that lost its last events (a machine crash between its periodic
        syncs) would otherwise hand out their sequences again, and the projection would keep
        rows of events no replay sees, beside the new ones at the same sequences.

        The same message is the same subject stored at the same time (the server's clock, to
        the microsecond the stream API reports: no publisher chooses it, so neither the old
        bytes published again nor junk of the same size passes), with the same hash where the
        row has one."""
        folded = self.store.folded_at(position)
        message = await self.log.message_at(position)
        if folded is not None and message is not None:
            subject, folded_hash, stored_at = folded
            same = (
                message.subject == subject
                and message.stored_at // 1000 == stored_at // 1000
                and (folded_hash is None or _hash_of(message) == folded_hash)
            )
            if same:
                return
        held = "holds no message there" if message is None else "holds another message there"
        raise StoreError(
            f"{self.store.path} was folded up to seq {position}, but the stream {held} (it lost"
            " events this projection has, or is another stream): move the projection away and"
            " start the projector, which refolds the stream"
        )

    async def run(
        self,
        *,
        follow: bool = True,
        until_seq: int | None = None,
        stop: asyncio.Event | None = None,
        on_batch: Callable[[BatchResult], None] | None = None,
        on_folded: Callable[[int], None] | None = None,
    ) -> int:
        """Fold from the stored position; returns the position reached.

        With ``follow`` it keeps folding new events until ``stop`` is set; without, it ends at
        ``until_seq`` or at the stream's last sequence when it started. Reading runs ahead of
        folding (its signatures checked on the pool as soon as read), and each fold takes every
        batch read while the one before it was folded and written: one transaction for all of
        them (a group commit), so a burst of events waits for one commit, not one each.

        Folding and writing run in a thread of their own, which takes the next batch as soon as
        it has committed one: a batch read meanwhile waits for no turn of the event loop (from
        one commit to the next batch's first statement 0.28 ms, where handing each batch from
        task to task to a worker thread took 0.42, measured in ``bench latency``). ``on_batch``
        runs on the event loop after each commit; ``on_folded`` with a batch's last sequence
        as soon as it is folded, while it commits (a reader that waits for the commit, as
        :class:`~swarmlog.projections.service.QueryService` does, may be told it at once).
        """
        start = self.store.position() + 1
        position = start - 1
        if position:
            await self._check_still_logged(position)
        if until_seq is not None and until_seq < start:
            return position
        loop = asyncio.get_running_loop()
        reader = self.log.read(start, until_seq=until_seq, follow=follow)
        inbox: queue.SimpleQueue[_Read | None] = queue.SimpleQueue()  # None: nothing more
        room = asyncio.Semaphore(_READ_AHEAD)  # batches read and not yet folded
        halt = threading.Event()  # fold nothing more (a batch being folded still commits)
        ended: asyncio.Future[None] = loop.create_future()  # the folding thread is done

        def committed(result: BatchResult, batches: int) -> None:
            nonlocal position
            position = result.last_seq
            for _ in range(batches):
                room.release()
            for seq, reason in result.rejected:
                log.warning("quarantined seq %d: %s", seq, reason)
            if on_batch is not None:
                on_batch(result)

        def finished(error: BaseException | None) -> None:
            if error is None:
                ended.set_result(None)
            else:
                ended.set_exception(error)

        def tell(callback: Callable[..., None], *args: Any) -> None:
            # The loop outlives the thread (run awaits it), unless run itself was cancelled.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(callback, *args)

        def fold_all() -> None:
            error: BaseException | None = None
            try:
                last = False
                held: _Read | None = None  # read, and left for the next transaction
                while not halt.is_set():
                    item = held if held is not None else None if last else inbox.get()
                    held = None
                    if item is None or halt.is_set():
                        break
                    batch, checks = item
                    batches = 1
                    # Group commit: what was read meanwhile goes into the same transaction.
                    while not last:
                        try:
                            more = inbox.get_nowait()
                        except queue.Empty:
                            break
                        if more is None:
                            last = True
                            break
                        if len(batch) + len(more[0]) > COMMIT_MAX:
                            held = more
                            break
                        batch, checks = [*batch, *more[0]], [*checks, *more[1]]
                        batches += 1
                    tell(committed, self._fold(batch, checks), batches)
            except BaseException as exc:  # run() raises it
                error = exc
            tell(finished, error)

        async def read_ahead() -> None:
            expected = start
            async for batch in reader:
                if batch[0].seq != expected or batch[-1].seq - batch[0].seq + 1 != len(batch):
                    # Committing past a missing sequence would lose an event for good.
                    raise BusError(
                        f"the log reader skipped events (expected seq {expected}, got"
                        f" {batch[0].seq}..{batch[-1].seq}); restart the projector"
                    )
                expected = batch[-1].seq + 1
                for at in range(0, len(batch), COMMIT_MAX):  # a reader's batch is smaller
                    part = batch[at : at + COMMIT_MAX]
                    await room.acquire()
                    inbox.put((part, self._start_checks(part)))
            inbox.put(None)

        self._folding = None if on_folded is None else (lambda seq: tell(on_folded, seq))
        folder = threading.Thread(target=fold_all, name="fold", daemon=True)
        folder.start()
        reading = asyncio.ensure_future(read_ahead())
        stopper = asyncio.ensure_future(stop.wait()) if stop is not None else None
        waiting: set[asyncio.Future[Any]] = {reading, ended}
        if stopper is not None:
            waiting.add(stopper)
        try:
            while True:
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if ended in done:
                    ended.result()  # raises what the fold raised
                    break  # folded everything read
                if stopper is not None and stopper in done:
                    break
                if reading in done:
                    reading.result()  # raises what the reader raised
                    waiting.discard(reading)  # all read: the thread folds the rest, then ends
        finally:
            # A batch in flight always commits, whatever stopped us: its position with it.
            halt.set()
            inbox.put(None)
            cancelled = await _outwait(ended)
            self._folding = None
            if stopper is not None:
                stopper.cancel()
            reading.cancel()
            # Let the reader unwind before closing it (what it raised was raised above).
            cancelled = await _outwait(reading) or cancelled
            try:
                await reader.aclose()  # type: ignore[attr-defined]
            except asyncio.CancelledError:
                cancelled = True  # its consumer is dropped by the server when left idle
            failed = ended.exception()
            if failed is not None:
                raise failed  # the batch in flight when we stopped did not commit
            if cancelled:
                raise asyncio.CancelledError
        return position


def _hash_of(message: StoredMessage) -> str | None:
    """The hash a sender's chain knows ``message`` by (``None`` if it is no signed event)."""
    try:
        return event_hash(decode_signed(message.data).body)
    except SchemaError:
        return None


async def _outwait(future: asyncio.Future[Any]) -> bool:
    """Wait until ``future`` is done, however often the waiting task is cancelled meanwhile
    (the folding thread still writes the state and calls back, the reader still unwinds:
    nothing may go on without them); whether it was cancelled. What ``future`` raised is for
    the caller to look at."""
    cancelled = False
    while not future.done():
        try:
            await asyncio.wait({future})
        except asyncio.CancelledError:
            cancelled = True
    return cancelled
