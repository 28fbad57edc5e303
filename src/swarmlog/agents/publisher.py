"""Publishing signed events: seal with the sender's key and chain, then append with dedupe.

A :class:`Publisher` owns one sender's chain. It recovers the chain head from the log when it
starts (the last valid event under ``swarmlog.<ns>.<sender>.>``), and guards each single publish
with optimistic concurrency on the sender's own subjects, so two processes holding the same key
can never fork its chain: the loser re-reads the head and re-seals.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from swarmlog.bus.ports import Append, AppendResult, EventLog
from swarmlog.bus.subjects import sender_filter, subject_for
from swarmlog.errors import BusError, ConcurrencyConflict, SwarmlogError
from swarmlog.projections.verify import chain_position, next_own_head
from swarmlog.schemas.payloads import Payload
from swarmlog.schemas.signing import (
    ChainHead,
    Identity,
    Sealed,
    prepare,
    seal,
    sign_all,
)

__all__ = ["CHUNK", "MAX_WALK", "ChainHint", "HeadHint", "Published", "Publisher", "Speaker"]

_log = logging.getLogger(__name__)

MAX_WALK = 50_000
"""Messages under its own prefix a publisher reads at most to find its chain head (one request
each): beyond, it asks for the projector, whose hint leaves only the messages it has not folded."""

_MAX_RACES = 8
_Item = tuple[Payload, Mapping[str, Any], int | None]
"""An event to publish: payload, envelope fields, and when it happened (``None``: now)."""
CHUNK = 512
"""Events of a run signed at a time, while the previous chunk is appended."""


@dataclass(frozen=True)
class ChainHint:
    """A reader's view of one sender's chain: its ``head`` (the event at stream sequence
    ``head_seq``, 0 for none) after folding the stream up to ``position``. The projection's
    ``chain_heads`` row and position are one, the publisher's own last event another."""

    head: ChainHead
    head_seq: int
    position: int


HeadHint = Callable[[str], Awaitable[ChainHint | None]]
"""Where a fresh publisher of the agent named may start looking for its chain head (``None``:
no idea)."""


@dataclass(frozen=True)
class Published:
    """An event stored on the log."""

    event_id: str
    type: str
    subject: str
    seq: int
    duplicate: bool = False


class Publisher:
    """Seals and appends events for one identity."""

    def __init__(
        self,
        log: EventLog,
        identity: Identity,
        namespace: str,
        *,
        clock: Callable[[], int] = time.time_ns,
        entropy: Callable[[int], bytes] | None = None,
        hint: HeadHint | None = None,
    ) -> None:
        """``hint`` (the projection's view of this sender's chain) spares a fresh publisher
        walking its whole prefix; it is checked against the stream, never trusted blindly."""
        self.log = log
        self.identity = identity
        self.namespace = namespace
        self._clock = clock
        # Ids must be unguessable, not only unique: the stream deduplicates on them, so whoever
        # could predict an agent's next id could store a message under it first and have the
        # agent's own event dropped as a duplicate. The OS's generator (0.4 µs an event), not
        # a seeded Mersenne Twister, whose state its outputs give away.
        self._entropy = entropy or os.urandom
        self._head: ChainHead | None = None
        self._last_stream_seq = 0  # the last message under our prefix: the OCC expectation
        self._known: ChainHint | None = None  # our chain as of our last event or recovery
        self._hint = hint
        # One publish at a time: two events sealed on the same head would fork the chain (an
        # aggregate expectation does not guard the sender's own chain).
        self._lock = asyncio.Lock()
        self._held: dict[int, list[_Item]] = {}
        self._holds = itertools.count(1)

    async def recover(self) -> ChainHead:
        """Read this sender's chain head from the log.

        The head is where a reader's chain for this sender stands: the walk from a known point
        (this publisher's own last event, else the projection's :class:`ChainHint`, checked
        against the stream, else the stream's start) over the messages under this sender's
        prefix skips what a reader rejects (:func:`~swarmlog.projections.verify.next_own_head`:
        junk, replayed copies, forks), so nothing planted there becomes the head the next event
        chains to. It reads one message at a time (``STREAM.MSG.GET``), which an agent login
        may; it needs no consumer. OCC still expects the real last message, junk or not.
        """
        own = sender_filter(self.namespace, self.identity.agent_id)
        last = await self.log.last_message(own)
        if last is None:
            self._head, self._last_stream_seq = ChainHead(), 0
            self._known = ChainHint(ChainHead(), 0, 0)
            return self._head
        start = self._known or await self._hinted() or ChainHint(ChainHead(), 0, 0)
        head = await self._walk(start, last.seq)
        self._head, self._last_stream_seq = head, last.seq
        return head

    async def _hinted(self) -> ChainHint | None:
        """The hint, if one is given and the stream holds this sender's event where it says."""
        if self._hint is None:
            return None
        try:
            hint = await self._hint(self.identity.agent_id)
        except SwarmlogError as exc:  # a hint saves a walk; without it we walk from the start
            _log.warning("no chain head hint for %s: %s", self.identity.agent_id, exc)
            return None
        if hint is None:
            return None
        if hint.head_seq == 0:
            return hint if hint.head == ChainHead() else None
        own = sender_filter(self.namespace, self.identity.agent_id)
        stored = await self.log.next_message(own, hint.head_seq)
        if (
            stored is None
            or stored.seq != hint.head_seq
            or chain_position(stored, self.namespace, self.identity.agent_id) != hint.head
        ):
            _log.warning(
                "the chain head hint for %s (seq %d) does not match the stream; walking its"
                " prefix from the start",
                self.identity.agent_id,
                hint.head_seq,
            )
            return None
        return hint

    async def _walk(self, start: ChainHint, until: int) -> ChainHead:
        own = sender_filter(self.namespace, self.identity.agent_id)
        head, head_seq, at = start.head, start.head_seq, start.position
        walked = 0
        while at < until:
            if walked == MAX_WALK:
                raise BusError(
                    f"more than {MAX_WALK} messages under {own} after seq {start.position};"
                    f" {self.identity.agent_id} cannot find its chain head by walking them:"
                    " start the projector (`swarmlog up`), whose chain head it starts from"
                )
            message = await self.log.next_message(own, at + 1)
            if message is None or message.seq > until:
                break
            walked += 1
            step = next_own_head(
                head,
                message,
                self.namespace,
                sender=self.identity.agent_id,
                signer=self.identity.public_key,
            )
            if step is not None:
                head, head_seq = step, message.seq
            at = message.seq
        self._known = ChainHint(head, head_seq, until)
        return head

    def seal(self, payload: Payload, **fields: Any) -> Sealed:
        """Sign ``payload`` as the next event in the chain (does not publish it)."""
        if self._head is None:
            raise RuntimeError("call recover() before sealing")
        now = self._clock()
        sealed = seal(
            self.identity, self._head, payload, now_ns=now, entropy=self._entropy(10), **fields
        )
        return sealed

    def hold(self, items: Sequence[tuple[Payload, Mapping[str, Any]]]) -> int:
        """Hold events back, dated now: the next publish of any event sends them first, in the
        same call, or :meth:`release` does. Returns the hold's token.

        A worker holds a task's ``task_started`` while the task is young: one that ends at
        once has it stored in the same publish as its result (one call and one signing pass
        instead of two; the appends are still two round trips, the first one conditional on
        the chain), and whatever else the task says still comes after it on the chain."""
        now = self._clock()
        token = next(self._holds)
        self._held[token] = [(payload, fields, now) for payload, fields in items]
        return token

    def drop(self, token: int) -> None:
        """Never publish what the hold ``token`` still holds (a task handed back unstarted)."""
        self._held.pop(token, None)

    def take(self, token: int, which: Callable[[Payload], bool]) -> list[tuple[Payload, int]]:
        """Take back what the hold ``token`` still holds and ``which`` picks, never to be
        published by this publisher: each payload with the time it was held at. (A quick
        task's result says when it started instead of a ``task_started`` of its own.)"""
        taken: list[tuple[Payload, int]] = []
        kept: list[_Item] = []
        for payload, fields, at in self._held.get(token, []):
            if at is not None and which(payload):  # held items are always dated
                taken.append((payload, at))
            else:
                kept.append((payload, fields, at))
        if kept:
            self._held[token] = kept  # in its place: holds go out in the order they were made
        else:
            self._held.pop(token, None)
        return taken

    async def release(self, token: int) -> list[Published]:
        """Publish now what the hold ``token`` still holds (nothing if it went out already)."""
        async with self._lock:
            items = self._held.pop(token, [])
            return await self._batch(items) if items else []

    def _take_held(self) -> list[_Item]:
        held = [item for items in self._held.values() for item in items]
        self._held.clear()
        return held

    async def publish(
        self,
        payload: Payload,
        *,
        expect: tuple[str, int] | None = None,
        **fields: Any,
    ) -> Published:
        """Seal and append one event; returns where it was stored.

        ``expect`` = (aggregate filter, last sequence) makes the append conditional on that
        aggregate (a claim, say) and raises :class:`ConcurrencyConflict` when it lost. Without it,
        the append is conditional on this sender's own chain and a lost race is retried.
        Events held back (:meth:`hold`) are stored first.
        """
        async with self._lock:
            held = self._take_held()
            if held:
                await self._batch(held)
            return await self._publish(payload, expect, fields)

    async def _publish(
        self, payload: Payload, expect: tuple[str, int] | None, fields: dict[str, Any]
    ) -> Published:
        if self._head is None:
            await self.recover()
        for _ in range(_MAX_RACES):
            sealed = self.seal(payload, **fields)
            subject = subject_for(self.namespace, sealed.envelope)
            if expect is not None:
                condition = expect
            else:
                condition = (
                    sender_filter(self.namespace, self.identity.agent_id),
                    self._last_stream_seq,
                )
            item = Append(
                subject,
                sealed.data,
                msg_id=sealed.id,
                expected_last_seq=condition[1],
                expected_filter=condition[0],
            )
            try:
                result = await self.log.append(item)
            except ConcurrencyConflict:
                if expect is not None:
                    raise
                await self.recover()  # another holder of this key published: re-chain
                continue
            except BaseException:
                self._head = None  # stored or not, we cannot tell: re-read the chain next time
                raise
            self._head = sealed.head
            self._last_stream_seq = result.seq
            self._known = ChainHint(sealed.head, result.seq, result.seq)
            return Published(sealed.id, sealed.envelope.type, subject, result.seq, result.duplicate)
        raise self._lost_races()

    async def publish_many(
        self, payloads: Sequence[Payload], *, window: int = 256, **fields: Any
    ) -> list[Published]:
        """Seal and append many events (the same envelope ``fields`` on each) with a bounded
        window of unacknowledged appends; see :meth:`publish_batch`."""
        return await self.publish_batch([(p, fields) for p in payloads], window=window)

    async def publish_batch(
        self, items: Sequence[tuple[Payload, Mapping[str, Any]]], *, window: int = 256
    ) -> list[Published]:
        """Seal and append many events, each with its own envelope fields, in order.

        Events are chained in order, then signed a batch at a time (one signature over a tree
        of their bodies, :func:`~swarmlog.schemas.signing.sign_all`) while the previous chunk
        is being appended. Assumes this publisher is the only writer of
        its chain (one process per agent key). Events held back (:meth:`hold`) go first; what
        is returned is where ``items`` were stored.
        """
        async with self._lock:
            held = self._take_held()
            out = await self._batch([*held, *((p, f, None) for p, f in items)], window)
            return out[len(held) :]

    async def _batch(self, items: Sequence[_Item], window: int = 256) -> list[Published]:
        if self._head is None:
            await self.recover()
        for _ in range(_MAX_RACES):
            out: list[Published] = []
            try:
                await self._publish_chunks(items, window, out)
                if out and self._head is not None:
                    self._known = ChainHint(
                        self._head, out[-1].seq, max(self._last_stream_seq, out[-1].seq)
                    )
                return out
            except _ChainMoved:
                await self.recover()  # another holder of this key published: re-chain
            except BaseException:
                self._head = None  # part may be stored: re-read the chain next time
                raise
        raise self._lost_races()

    def _lost_races(self) -> ConcurrencyConflict:
        return ConcurrencyConflict(
            sender_filter(self.namespace, self.identity.agent_id),
            self._last_stream_seq,
            f"lost {_MAX_RACES} races for {self.identity.agent_id}'s chain; another process is"
            " publishing with the same key: give each process its own agent key",
        )

    async def _publish_chunks(
        self,
        items: Sequence[_Item],
        window: int,
        out: list[Published],
    ) -> None:
        appending: asyncio.Task[list[AppendResult]] | None = None
        previous: list[tuple[Sealed, str]] = []
        for start in range(0, len(items), CHUNK):
            prepared = []
            for payload, fields, at in items[start : start + CHUNK]:
                ready = prepare(
                    self.identity,
                    self._head or ChainHead(),
                    payload,
                    now_ns=self._clock() if at is None else at,
                    entropy=self._entropy(10),
                    **fields,
                )
                self._head = ready.head
                prepared.append(ready)
            # Signed inline: one signature per batch of events (sign_all) costs less than a
            # thread hop.
            try:
                sealed = sign_all(prepared, self.identity)
            except BaseException:
                if appending is not None:
                    appending.cancel()
                raise
            if appending is not None:
                out += self._published(previous, await appending)
            previous = [(s, subject_for(self.namespace, s.envelope)) for s in sealed]
            items_ = [Append(subject, s.data, msg_id=s.id) for s, subject in previous]
            if start == 0:
                # The first event is conditional on this sender's chain, as in publish(): if
                # another process published with this key, nothing is stored and we re-chain.
                # (The rest follow it in order; a writer slipping in between is evidence the
                # projector reports as a fork.)
                own = sender_filter(self.namespace, self.identity.agent_id)
                first = items_[0]
                guarded = Append(
                    first.subject,
                    first.data,
                    msg_id=first.msg_id,
                    expected_last_seq=self._last_stream_seq,
                    expected_filter=own,
                )
                try:
                    head_result = await self.log.append(guarded)
                except ConcurrencyConflict:
                    raise _ChainMoved from None
                out += self._published(previous[:1], [head_result])
                previous, items_ = previous[1:], items_[1:]
            appending = asyncio.create_task(self.log.append_many(items_, window=window))
        if appending is not None:
            out += self._published(previous, await appending)

    def _published(
        self, sealed: list[tuple[Sealed, str]], results: list[AppendResult]
    ) -> list[Published]:
        if results:
            self._last_stream_seq = max(self._last_stream_seq, max(r.seq for r in results))
        return [
            Published(s.id, s.envelope.type, subject, r.seq, r.duplicate)
            for (s, subject), r in zip(sealed, results, strict=True)
        ]


class Speaker:
    """A part of a replica that publishes as one identity (the runtime, its settler and inbox, a
    built-in role): its agent id and namespace are its :attr:`publisher`'s, read from there
    rather than copied."""

    publisher: Publisher

    @property
    def agent_id(self) -> str:
        return self.publisher.identity.agent_id

    @property
    def namespace(self) -> str:
        return self.publisher.namespace


class _ChainMoved(Exception):
    """The sender's chain moved under a batch: re-read it and re-seal."""
