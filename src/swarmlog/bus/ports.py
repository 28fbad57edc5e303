"""The log as a port: what the rest of swarmlog needs from the bus, whatever adapts it.

Two adapters implement it, JetStream (``jetstream/``) and in-memory (``memory.py``), and one
contract test suite runs against both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "Append",
    "AppendResult",
    "Delivery",
    "Doorbell",
    "EventLog",
    "FlagStore",
    "QueueSpec",
    "QueueState",
    "SnapshotStore",
    "StoredMessage",
    "WorkQueue",
]


@dataclass(frozen=True)
class QueueSpec:
    """A durable pull consumer on the namespace's stream (which ones there are:
    :mod:`swarmlog.bus.queues`)."""

    name: str
    filter_subject: str
    ack_wait: float = 30.0
    max_deliver: int = 5
    new_only: bool = False
    """Deliver only what arrives after the consumer is created (swarm offers)."""


@dataclass(frozen=True, slots=True)
class QueueState:
    """Where a durable consumer stands (counts only): what :meth:`EventLog.queues` reports."""

    name: str
    filter_subject: str
    waiting: int
    """Messages on the stream that match the filter and were never delivered (the depth)."""
    unacked: int
    """Messages delivered and not yet acknowledged: in hand, or waiting to be redelivered."""
    redelivered: int
    """Of ``unacked``, those delivered more than once."""


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message as stored on the stream, at its stream sequence."""

    seq: int
    subject: str
    data: bytes
    stored_at: int = field(default=0, compare=False)
    """When the server stored it (ns since the epoch, the server's clock); 0 when unknown.
    Not part of a message's identity (adapters know it with different precision)."""


@dataclass(frozen=True, slots=True)
class Append:
    """One message to append, deduplicated by ``msg_id``.

    With ``expected_last_seq`` it is stored only if the last message on ``expected_filter`` (a
    wildcard subject, default the message's own) has that sequence, 0 meaning none yet: optimistic
    concurrency on an aggregate.
    """

    subject: str
    data: bytes
    msg_id: str
    expected_last_seq: int | None = None
    expected_filter: str | None = None


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Where an append landed; ``duplicate`` when the ``msg_id`` was already stored."""

    seq: int
    duplicate: bool = False


class Delivery(Protocol):
    """A message handed to a work-queue consumer, to be settled exactly once."""

    @property
    def message(self) -> StoredMessage: ...

    @property
    def num_delivered(self) -> int:
        """1 on first delivery, more on redelivery."""
        ...

    async def ack(self) -> None:
        """Done: never deliver again."""

    async def in_progress(self) -> None:
        """Still working: restart the ack-wait timer."""

    async def nak(self, delay: float | None = None) -> None:
        """Failed for now: redeliver after ``delay`` seconds (or at once)."""

    async def term(self) -> None:
        """Failed for good: never deliver again."""


class WorkQueue(Protocol):
    """A durable pull consumer shared by every replica of a role."""

    async def fetch(self, batch: int, timeout: float) -> list[Delivery]:
        """Up to ``batch`` deliveries; an empty list when none arrive within ``timeout``."""
        ...

    async def waiting(self) -> int:
        """How many messages the server holds for the queue undelivered, as it answers however
        slowly it does (an empty :meth:`fetch` says only that none came in time); ``0`` when it
        does not answer."""
        ...

    async def close(self) -> None: ...


class Doorbell(Protocol):
    """Rings when a message is published on a subject filter: lets an idle consumer sleep
    without polling. A ring is a hint, not a delivery: the consumer still fetches."""

    async def wait(self, timeout: float) -> list[str]:
        """Subjects published since the last call, waiting up to ``timeout`` for one (``0``: do
        not wait); an empty list when none came."""
        ...

    async def close(self) -> None: ...


class FlagStore(Protocol):
    """Small named values that processes read and watch: a KV bucket (the kill switches, the
    result cache, presence)."""

    async def put(self, key: str, value: bytes) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def get(self, key: str) -> bytes | None: ...

    async def items(self) -> dict[str, bytes]:
        """Every flag now set."""
        ...

    def watch(self) -> AsyncIterator[tuple[str, bytes | None]]:
        """Every current flag, then each change as it happens (``None``: deleted)."""
        ...


class SnapshotStore(Protocol):
    """Named files, each with a JSON-able record beside it: the projection snapshots of a
    namespace (an object store). Putting a name again replaces it."""

    async def put(self, name: str, path: Path, meta: dict[str, Any]) -> int:
        """Store the file at ``path`` as ``name`` with ``meta`` beside it; its size in bytes."""
        ...

    async def get(self, name: str, path: Path) -> dict[str, Any]:
        """Write ``name`` to ``path``; the meta stored with it. ``BusError`` when there is no
        such snapshot."""
        ...

    async def catalog(self) -> list[dict[str, Any]]:
        """Every stored snapshot: its ``name``, ``size`` and meta, by ``seq`` (then name)."""
        ...


class EventLog(Protocol):
    """An append-only, deduplicating, ordered log of messages (one per namespace)."""

    @property
    def stream(self) -> str: ...

    async def append(self, item: Append) -> AppendResult:
        """Store one message; raises ``ConcurrencyConflict`` when the expectation fails."""
        ...

    async def append_many(self, items: Sequence[Append], window: int = 256) -> list[AppendResult]:
        """Store many messages with at most ``window`` unacknowledged at once, in order."""
        ...

    async def last_seq(self) -> int:
        """The stream's last sequence (0 when empty)."""
        ...

    async def last_message(self, filter_subject: str) -> StoredMessage | None:
        """The last message whose subject matches ``filter_subject`` (wildcards allowed)."""
        ...

    async def message_at(self, seq: int) -> StoredMessage | None:
        """The message stored at stream sequence ``seq`` (``None`` when there is none)."""

    async def next_message(self, filter_subject: str, start_seq: int) -> StoredMessage | None:
        """The first message at or after ``start_seq`` whose subject matches ``filter_subject``
        (wildcards allowed); ``None`` when there is none. One read of one message, which a login
        without consumer rights may make: how an agent walks its own prefix."""
        ...

    def read(
        self, start_seq: int = 1, *, until_seq: int | None = None, follow: bool = False
    ) -> AsyncIterator[list[StoredMessage]]:
        """Batches of messages in stream order from ``start_seq``.

        Without ``follow`` it ends at ``until_seq``, or at the last sequence when it started;
        with ``follow`` it waits for new messages until the consumer stops iterating.
        """
        ...

    async def work_queue(self, spec: QueueSpec) -> WorkQueue:
        """The durable consumer ``spec`` names (created if missing, where this connection may);
        with ``new_only`` a new consumer starts at the next message instead of the first."""
        ...

    async def pending(self, name: str) -> int:
        """Messages of durable consumer ``name`` not yet acknowledged, queued or in hand (its
        lag); 0 when it does not exist."""
        ...

    async def queues(self) -> list[QueueState]:
        """Every durable consumer of the stream and where it stands, by name (the operator's:
        on JetStream, listing consumers is the stream account's API)."""
        ...

    async def doorbell(self, *filter_subjects: str) -> Doorbell:
        """A :class:`Doorbell` for messages published on any of ``filter_subjects``."""
        ...

    async def announce(self, subject: str, data: bytes) -> None:
        """Send ``data`` on ``subject`` to whoever listens now: not stored, not retried, no
        reply (a preview, such as a model's partial text; never something to act on)."""
        ...

    def listen(
        self, filter_subject: str
    ) -> AbstractAsyncContextManager[AsyncIterator[tuple[str, bytes]]]:
        """What is announced on ``filter_subject``, with its subject: from the moment the
        context is entered (so a listener can start listening before it sets off what it
        listens to) until it is left."""
        ...

    async def flags(self) -> FlagStore:
        """The namespace's flag store (kill switches)."""
        ...

    async def cache(self) -> FlagStore:
        """The namespace's result cache (a key-value store like the flags)."""
        ...

    async def presence(self) -> FlagStore:
        """The namespace's presence bucket: one signed value per agent id (see
        :mod:`swarmlog.schemas.presence`), each gone a fixed time after its last put (the
        bucket's TTL). Bound without a round trip: a login that may only put its own key gets
        a handle too (a missing bucket fails the put)."""
        ...

    async def snapshot_store(self) -> SnapshotStore:
        """The namespace's projection snapshots."""
        ...

    async def close(self) -> None: ...
