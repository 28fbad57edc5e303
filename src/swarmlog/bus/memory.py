"""An in-memory event log with JetStream's semantics, for simulation and fast unit tests.

It keeps the contract of :class:`swarmlog.bus.ports.EventLog` (checked by the same contract suite
as the JetStream adapter): dedupe by message id within a window, optimistic concurrency on a
subject filter, ordered reads, and durable work queues with ack, in-progress, nak and term.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swarmlog.bus.doorbells import drain_queue
from swarmlog.bus.ports import (
    Append,
    AppendResult,
    Delivery,
    QueueSpec,
    QueueState,
    StoredMessage,
)
from swarmlog.bus.subjects import subject_matches
from swarmlog.errors import BusError, ConcurrencyConflict
from swarmlog.schemas.presence import PRESENCE_TTL

__all__ = ["MemoryFlags", "MemoryLog", "MemorySnapshots"]


class MemoryLog:
    """An :class:`~swarmlog.bus.ports.EventLog` held in a list."""

    def __init__(
        self,
        stream: str = "SWARMLOG_MEMORY",
        *,
        duplicate_window: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], int] = time.time_ns,
        presence_ttl: float = PRESENCE_TTL,
    ) -> None:
        self._stream = stream
        self._messages: list[StoredMessage] = []
        self._ids: dict[str, tuple[int, float]] = {}
        self._window = duplicate_window
        self._clock = clock
        self._wall_clock = wall_clock
        self._changed = asyncio.Condition()
        self._queues: dict[str, _MemoryQueue] = {}
        self._version = 0  # bumped by every append and nak, to wake waiting fetchers
        self._listeners: list[tuple[str, asyncio.Queue[tuple[str, bytes]]]] = []
        self._doorbells: list[_MemoryDoorbell] = []
        self._flags = MemoryFlags()
        self._cache = MemoryFlags()
        # Values expire by the same wall clock the log stamps messages with (a simulation's
        # virtual clock): as on JetStream, a key is gone ``presence_ttl`` after its last put.
        self._presence = MemoryFlags(ttl=presence_ttl, clock=wall_clock)
        self._snapshots = MemorySnapshots()

    @property
    def stream(self) -> str:
        return self._stream

    async def append(self, item: Append) -> AppendResult:
        now = self._clock()
        # As on JetStream, the expectation is checked before the dedupe: a retried append whose
        # expectation no longer holds (say, because its first attempt landed) is a conflict.
        if item.expected_last_seq is not None:
            pattern = item.expected_filter or item.subject
            last = self._last(pattern)
            actual = last.seq if last else 0
            if actual != item.expected_last_seq:
                raise ConcurrencyConflict(pattern, item.expected_last_seq)
        self._forget_old_ids(now)
        seen = self._ids.get(item.msg_id)
        if seen is not None and now - seen[1] <= self._window:
            return AppendResult(seen[0], duplicate=True)
        seq = len(self._messages) + 1
        self._messages.append(StoredMessage(seq, item.subject, item.data, self._wall_clock()))
        self._ids[item.msg_id] = (seq, now)
        for bell in self._doorbells:
            bell.ring(item.subject)
        await self._bump()
        return AppendResult(seq)

    def _forget_old_ids(self, now: float) -> None:
        # Ids are kept in append order, so the expired ones are at the front.
        while self._ids:
            oldest = next(iter(self._ids))
            if now - self._ids[oldest][1] <= self._window:
                return
            del self._ids[oldest]

    async def _bump(self) -> None:
        self._version += 1
        async with self._changed:
            self._changed.notify_all()

    async def append_many(self, items: Sequence[Append], window: int = 256) -> list[AppendResult]:
        return [await self.append(item) for item in items]

    async def last_seq(self) -> int:
        return len(self._messages)

    def _last(self, pattern: str) -> StoredMessage | None:
        for message in reversed(self._messages):
            if subject_matches(pattern, message.subject):
                return message
        return None

    async def last_message(self, filter_subject: str) -> StoredMessage | None:
        return self._last(filter_subject)

    async def message_at(self, seq: int) -> StoredMessage | None:
        return self._messages[seq - 1] if 1 <= seq <= len(self._messages) else None

    async def next_message(self, filter_subject: str, start_seq: int) -> StoredMessage | None:
        for message in self._messages[max(start_seq, 1) - 1 :]:
            if subject_matches(filter_subject, message.subject):
                return message
        return None

    async def read(
        self, start_seq: int = 1, *, until_seq: int | None = None, follow: bool = False
    ) -> AsyncIterator[list[StoredMessage]]:
        end = until_seq if until_seq is not None else (None if follow else len(self._messages))
        next_seq = max(start_seq, 1)
        while True:
            stop = len(self._messages) if end is None else min(end, len(self._messages))
            if next_seq <= stop:
                batch = self._messages[next_seq - 1 : stop]
                next_seq = stop + 1
                yield batch
                continue
            if end is not None and next_seq > end:
                return
            if not follow:
                return
            wanted = next_seq
            async with self._changed:
                await self._changed.wait_for(lambda: len(self._messages) >= wanted)  # noqa: B023

    async def work_queue(self, spec: QueueSpec) -> _MemoryQueue:
        queue = self._queues.get(spec.name)
        if queue is None:
            queue = _MemoryQueue(self, spec.filter_subject, spec.ack_wait, spec.max_deliver)
            if spec.new_only:
                queue.cursor = len(self._messages)
            self._queues[spec.name] = queue
        return queue

    async def pending(self, name: str) -> int:
        queue = self._queues.get(name)
        if queue is None:
            return 0
        return queue.unread() + len(queue.pending)

    async def queues(self) -> list[QueueState]:
        return [
            QueueState(
                name=name,
                filter_subject=queue.filter_subject,
                waiting=queue.unread(),
                unacked=len(queue.pending),
                redelivered=sum(1 for p in queue.pending.values() if p.deliveries > 1),
            )
            for name, queue in sorted(self._queues.items())
        ]

    async def doorbell(self, *filter_subjects: str) -> _MemoryDoorbell:
        bell = _MemoryDoorbell(self, filter_subjects)
        self._doorbells.append(bell)
        return bell

    async def announce(self, subject: str, data: bytes) -> None:
        for pattern, heard in list(self._listeners):
            if subject_matches(pattern, subject):
                heard.put_nowait((subject, data))

    @contextlib.asynccontextmanager
    async def listen(self, filter_subject: str) -> AsyncIterator[AsyncIterator[tuple[str, bytes]]]:
        queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        entry = (filter_subject, queue)
        self._listeners.append(entry)

        async def heard() -> AsyncIterator[tuple[str, bytes]]:
            while True:
                yield await queue.get()

        try:
            yield heard()
        finally:
            self._listeners.remove(entry)

    async def flags(self) -> MemoryFlags:
        return self._flags

    async def cache(self) -> MemoryFlags:
        return self._cache

    async def presence(self) -> MemoryFlags:
        return self._presence

    async def snapshot_store(self) -> MemorySnapshots:
        return self._snapshots

    async def close(self) -> None:
        return None


class _MemoryDoorbell:
    def __init__(self, log: MemoryLog, filter_subjects: tuple[str, ...]) -> None:
        self._log = log
        self._filters = filter_subjects
        self._rung: asyncio.Queue[str] = asyncio.Queue()

    def ring(self, subject: str) -> None:
        if any(subject_matches(f, subject) for f in self._filters):
            self._rung.put_nowait(subject)

    async def wait(self, timeout: float) -> list[str]:
        return await drain_queue(self._rung, timeout)

    async def close(self) -> None:
        with contextlib.suppress(ValueError):
            self._log._doorbells.remove(self)


class MemoryFlags:
    """An in-memory :class:`~swarmlog.bus.ports.FlagStore`; with a ``ttl`` (seconds), a value
    is gone that long after its last put, by ``clock`` (ns), as in a bucket with a max age."""

    def __init__(
        self, *, ttl: float | None = None, clock: Callable[[], int] = time.time_ns
    ) -> None:
        self._values: dict[str, bytes] = {}
        self._put_at: dict[str, int] = {}
        self._ttl = ttl
        self._clock = clock
        self._watchers: list[asyncio.Queue[tuple[str, bytes | None]]] = []

    def _expire(self) -> None:
        if self._ttl is None:
            return
        # Silently, as JetStream's max age does: no delete is announced to watchers.
        oldest = self._clock() - int(self._ttl * 1e9)
        for key in [k for k, at in self._put_at.items() if at < oldest]:
            del self._values[key], self._put_at[key]

    async def put(self, key: str, value: bytes) -> None:
        self._values[key] = value
        self._put_at[key] = self._clock()
        self._notify(key, value)

    async def delete(self, key: str) -> None:
        self._put_at.pop(key, None)
        if self._values.pop(key, None) is not None:
            self._notify(key, None)

    async def get(self, key: str) -> bytes | None:
        self._expire()
        return self._values.get(key)

    async def items(self) -> dict[str, bytes]:
        self._expire()
        return dict(self._values)

    def _notify(self, key: str, value: bytes | None) -> None:
        for queue in self._watchers:
            queue.put_nowait((key, value))

    async def watch(self) -> AsyncIterator[tuple[str, bytes | None]]:
        queue: asyncio.Queue[tuple[str, bytes | None]] = asyncio.Queue()
        self._expire()
        for item in self._values.items():
            queue.put_nowait(item)
        self._watchers.append(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._watchers.remove(queue)


class MemorySnapshots:
    """A :class:`~swarmlog.bus.ports.SnapshotStore` held in a dict (each file's bytes and
    record); the files it is given and writes are real files."""

    def __init__(self) -> None:
        self._objects: dict[str, tuple[bytes, dict[str, Any]]] = {}

    async def put(self, name: str, path: Path, meta: dict[str, Any]) -> int:
        data = await asyncio.to_thread(path.read_bytes)
        # Kept as JSON would keep it: a copy, not the caller's dict.
        self._objects[name] = (data, json.loads(json.dumps(meta)))
        return len(data)

    async def get(self, name: str, path: Path) -> dict[str, Any]:
        if name not in self._objects:
            raise BusError(f"no snapshot {name!r}; see `swarmlog snapshot list`")
        data, meta = self._objects[name]
        await asyncio.to_thread(path.write_bytes, data)
        return json.loads(json.dumps(meta))  # type: ignore[no-any-return]

    async def catalog(self) -> list[dict[str, Any]]:
        found = [
            {"name": name, "size": len(data)} | json.loads(json.dumps(meta))
            for name, (data, meta) in self._objects.items()
        ]
        return sorted(found, key=lambda s: (s.get("seq", 0), s["name"]))


@dataclass
class _Pending:
    deliveries: int
    ready_at: float  # when it may be (re)delivered: ack-wait expiry or nak delay


@dataclass
class _MemoryQueue:
    log: MemoryLog
    filter_subject: str
    ack_wait: float
    max_deliver: int
    cursor: int = 0  # last stream sequence considered for first delivery
    pending: dict[int, _Pending] = field(default_factory=dict)

    def unread(self) -> int:
        """Messages past the cursor that match the filter: never delivered yet."""
        messages = self.log._messages[self.cursor :]
        return sum(1 for m in messages if subject_matches(self.filter_subject, m.subject))

    def _take(self, batch: int) -> list[Delivery]:
        now = self.log._clock()
        out: list[Delivery] = []
        for seq, state in sorted(self.pending.items()):
            if len(out) >= batch:
                return out
            if state.ready_at <= now:
                if state.deliveries >= self.max_deliver:
                    del self.pending[seq]
                    continue
                state.deliveries += 1
                state.ready_at = now + self.ack_wait
                out.append(_MemoryDelivery(self, self.log._messages[seq - 1], state.deliveries))
        messages = self.log._messages
        while len(out) < batch and self.cursor < len(messages):
            message = messages[self.cursor]
            self.cursor += 1
            if subject_matches(self.filter_subject, message.subject):
                self.pending[message.seq] = _Pending(1, now + self.ack_wait)
                out.append(_MemoryDelivery(self, message, 1))
        return out

    def _next_ready(self) -> float | None:
        times = [p.ready_at for p in self.pending.values() if p.deliveries < self.max_deliver]
        return min(times) if times else None

    async def fetch(self, batch: int, timeout: float) -> list[Delivery]:
        deadline = self.log._clock() + timeout
        while True:
            out = self._take(batch)
            now = self.log._clock()
            if out or now >= deadline:
                return out
            wake = deadline
            ready = self._next_ready()
            if ready is not None:
                wake = min(wake, ready)
            known = self.log._version
            async with self.log._changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self.log._changed.wait_for(lambda: self.log._version != known),  # noqa: B023
                        timeout=max(wake - now, 0.001),
                    )

    async def waiting(self) -> int:
        return self.unread()

    async def close(self) -> None:
        return None

    def settle(self, seq: int, *, redeliver_in: float | None) -> None:
        state = self.pending.get(seq)
        if state is None:
            return
        if redeliver_in is None:
            del self.pending[seq]
        else:
            state.ready_at = self.log._clock() + redeliver_in


@dataclass
class _MemoryDelivery:
    queue: _MemoryQueue
    message: StoredMessage
    num_delivered: int

    async def ack(self) -> None:
        self.queue.settle(self.message.seq, redeliver_in=None)

    async def term(self) -> None:
        self.queue.settle(self.message.seq, redeliver_in=None)

    async def in_progress(self) -> None:
        self.queue.settle(self.message.seq, redeliver_in=self.queue.ack_wait)

    async def nak(self, delay: float | None = None) -> None:
        self.queue.settle(self.message.seq, redeliver_in=delay or 0.0)
        await self.queue.log._bump()
