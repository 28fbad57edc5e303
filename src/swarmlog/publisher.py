"""Publishing signed events: seal with the sender's key and chain, then append with dedupe.

A :class:`Publisher` owns one sender's chain. It recovers the chain head from the log when it
starts (the last valid event under ``swarmlog.<ns>.<sender>.>``), and guards each single publish
with optimistic concurrency on the sender's own subjects, so two processes holding the same key
can never fork its chain: the loser re-reads the head and re-seals.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from swarmlog.bus.ports import Append, AppendResult, EventLog, StoredMessage
from swarmlog.bus.subjects import sender_filter, subject_for
from swarmlog.errors import ConcurrencyConflict, SchemaError
from swarmlog.schemas.codec import decode_envelope, decode_signed
from swarmlog.schemas.payloads import Payload
from swarmlog.schemas.signing import (
    EVENT_DOMAIN,
    ChainHead,
    Identity,
    Prepared,
    Sealed,
    event_hash,
    prepare,
    seal,
    verify_signature,
)

__all__ = ["Published", "Publisher"]

_MAX_RACES = 8
_CHUNK = 512  # events signed per worker-thread call while the previous chunk is appended


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
    ) -> None:
        self.log = log
        self.identity = identity
        self.namespace = namespace
        self._clock = clock
        # Ids need uniqueness, not secrecy: a PRNG seeded from the OS is enough and avoids a
        # system call per event.
        self._entropy = entropy or random.Random(os.urandom(16)).randbytes
        self._head: ChainHead | None = None
        self._last_stream_seq = 0  # stream sequence of our last event: the OCC expectation
        # One publish at a time: two events sealed on the same head would fork the chain (an
        # aggregate expectation does not guard the sender's own chain).
        self._lock = asyncio.Lock()

    async def recover(self) -> ChainHead:
        """Read this sender's chain head from the log."""
        own = sender_filter(self.namespace, self.identity.agent_id)
        last = await self.log.last_message(own)
        head, seq = ChainHead(), 0
        if last is not None:
            # Junk under our prefix (only a holder of our login can write there) is skipped: a
            # running publisher keeps the head it knows; a fresh one walks the log for our last
            # valid event (which a login without consumer rights cannot: it needs the
            # operator's help). OCC still expects the real last message, junk or not.
            head = self._own_event(last) or self._head or await self._scan_for_head() or ChainHead()
            seq = last.seq
        self._head, self._last_stream_seq = head, seq
        return head

    def _own_event(self, message: StoredMessage) -> ChainHead | None:
        try:
            signed = decode_signed(message.data)
            envelope = decode_envelope(signed.body)
        except SchemaError:
            return None
        if envelope.signer != self.identity.public_key or not verify_signature(
            envelope.signer, EVENT_DOMAIN, signed.body, signed.signature
        ):
            return None
        return ChainHead(envelope.sender_seq, event_hash(signed.body))

    async def _scan_for_head(self) -> ChainHead | None:
        best: ChainHead | None = None
        prefix = sender_filter(self.namespace, self.identity.agent_id)[:-1]
        async for batch in self.log.read(1):
            for message in batch:
                if message.subject.startswith(prefix):
                    head = self._own_event(message)
                    if head is not None and (best is None or head.seq > best.seq):
                        best = head
        return best

    def seal(self, payload: Payload, **fields: Any) -> Sealed:
        """Sign ``payload`` as the next event in the chain (does not publish it)."""
        if self._head is None:
            raise RuntimeError("call recover() before sealing")
        now = self._clock()
        sealed = seal(
            self.identity, self._head, payload, now_ns=now, entropy=self._entropy(10), **fields
        )
        return sealed

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
        """
        async with self._lock:
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
            return Published(sealed.id, sealed.envelope.type, subject, result.seq, result.duplicate)
        raise ConcurrencyConflict(
            sender_filter(self.namespace, self.identity.agent_id),
            self._last_stream_seq,
            f"lost {_MAX_RACES} races for {self.identity.agent_id}'s chain; another process is"
            " publishing with the same key: give each process its own agent key",
        )

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

        Events are chained in order, then signed in a worker thread (libsodium releases the GIL)
        while the previous chunk is being appended. Assumes this publisher is the only writer of
        its chain (one process per agent key).
        """
        async with self._lock:
            if self._head is None:
                await self.recover()
            for _ in range(_MAX_RACES):
                out: list[Published] = []
                try:
                    await self._publish_chunks(items, window, out)
                    return out
                except _ChainMoved:
                    await self.recover()  # another holder of this key published: re-chain
                except BaseException:
                    self._head = None  # part may be stored: re-read the chain next time
                    raise
            raise ConcurrencyConflict(
                sender_filter(self.namespace, self.identity.agent_id),
                self._last_stream_seq,
                f"lost {_MAX_RACES} races for {self.identity.agent_id}'s chain; another process"
                " is publishing with the same key: give each process its own agent key",
            )

    async def _publish_chunks(
        self,
        items: Sequence[tuple[Payload, Mapping[str, Any]]],
        window: int,
        out: list[Published],
    ) -> None:
        appending: asyncio.Task[list[AppendResult]] | None = None
        previous: list[tuple[Sealed, str]] = []
        for start in range(0, len(items), _CHUNK):
            prepared = []
            for payload, fields in items[start : start + _CHUNK]:
                ready = prepare(
                    self.identity,
                    self._head or ChainHead(),
                    payload,
                    now_ns=self._clock(),
                    entropy=self._entropy(10),
                    **fields,
                )
                self._head = ready.head
                prepared.append(ready)
            # Small batches are signed inline: a thread hop costs more than a few signatures.
            try:
                if len(prepared) > 16:
                    sealed = await asyncio.to_thread(_sign_all, prepared, self.identity)
                else:
                    sealed = _sign_all(prepared, self.identity)
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


class _ChainMoved(Exception):
    """The sender's chain moved under a batch: re-read it and re-seal."""


def _sign_all(prepared: list[Prepared], identity: Identity) -> list[Sealed]:
    return [p.sign(identity) for p in prepared]
