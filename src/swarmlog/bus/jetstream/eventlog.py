"""The event log on a JetStream stream: appends, reads by sequence and subject, and the handles
(work queues, doorbells, buckets, snapshots) the port hands out.

Appends carry ``Nats-Msg-Id`` (dedupe) and, for optimistic concurrency, ``Nats-Expected-Last-
Subject-Sequence`` with ``...-Subject`` (a wildcard filter naming the aggregate).
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.kv import KeyValue

from swarmlog.bus.jetstream.connection import Patient, connect
from swarmlog.bus.jetstream.doorbell import JetStreamDoorbell
from swarmlog.bus.jetstream.kv import JetStreamKV
from swarmlog.bus.jetstream.provisioning import check_stream, provision
from swarmlog.bus.jetstream.reader import PullReader, read_direct
from swarmlog.bus.jetstream.snapshot_store import JetStreamSnapshots
from swarmlog.bus.jetstream.workqueues import JetStreamQueue, consumer_config
from swarmlog.bus.permissions import Login
from swarmlog.bus.ports import Append, AppendResult, QueueSpec, QueueState, StoredMessage
from swarmlog.bus.subjects import (
    bell_of,
    kv_bucket,
    kv_key,
    kv_stream,
    object_bucket,
    stream_name,
)
from swarmlog.errors import BusError, ConcurrencyConflict
from swarmlog.schemas.presence import PRESENCE_TTL

__all__ = ["JetStreamLog"]


_WRONG_LAST_SEQUENCE = 10071  # JetStream API error code for a failed expected-sequence check
_ACK_WAIT = 10.0  # seconds to wait for the stream to acknowledge an append
_CONSUMER_PAGE = 256  # consumers the server lists per request (JSApiListLimit)


class JetStreamLog:
    """An :class:`~swarmlog.bus.ports.EventLog` on a JetStream stream."""

    def __init__(
        self,
        nc: Client,
        namespace: str,
        url: str = "",
        api_prefix: str | None = None,
        *,
        direct_reads: bool = False,
    ) -> None:
        self.url = url
        """The URL this log was opened with."""
        self._nc = nc
        # An external agent reaches the API where its account imports it.
        options: dict[str, Any] = {"prefix": api_prefix} if api_prefix else {}
        self._raw_js = nc.jetstream(publish_async_max_pending=4096, **options)
        self._js = Patient(self._raw_js, nc)
        self._namespace = namespace
        self._stream = stream_name(namespace)
        self._queues: list[JetStreamQueue] = []
        self._api_prefix = api_prefix
        # A login that may create no consumer (an auditor) reads by batched direct gets.
        self._direct_reads = direct_reads

    @classmethod
    async def open(
        cls,
        url: str,
        namespace: str,
        *,
        provision: bool = False,
        replicas: int = 1,
        login: Login | None = None,
        presence_ttl: float = PRESENCE_TTL,
        direct_reads: bool = False,
    ) -> JetStreamLog:
        """Connect (as ``login``, when given) and (optionally) create or check the namespace's
        stream (and its buckets, with ``replicas`` copies each on a cluster; a new presence
        bucket keeps values ``presence_ttl`` seconds). ``direct_reads``: :meth:`read` by
        batched direct gets, for a login that may only read (an auditor)."""
        nc = await connect(url, login=login)
        api_prefix = login.api_prefix if login else None
        self = cls(nc, namespace, url, api_prefix=api_prefix, direct_reads=direct_reads)
        try:
            if provision:
                await self.provision(replicas=replicas, presence_ttl=presence_ttl)
            else:
                await self.check_stream()
        except BaseException:
            await nc.close()
            raise
        return self

    @property
    def stream(self) -> str:
        return self._stream

    @property
    def client(self) -> Client:
        """The underlying NATS connection (for request/reply services)."""
        return self._nc

    @property
    def namespace(self) -> str:
        return self._namespace

    async def provision(self, *, replicas: int = 1, presence_ttl: float = PRESENCE_TTL) -> None:
        """Create the stream and buckets if missing; an existing stream must be append-only."""
        await provision(self._js, self._namespace, replicas=replicas, presence_ttl=presence_ttl)

    async def check_stream(self) -> None:
        await check_stream(self._js, self._namespace)

    async def append(self, item: Append) -> AppendResult:
        try:
            ack = await self._js.publish(item.subject, item.data, headers=_headers(item))
        except nats.js.errors.APIError as exc:
            raise _append_error(item, exc) from None
        except (nats.errors.TimeoutError, nats.js.errors.NoStreamResponseError):
            raise _no_ack(item) from None
        return AppendResult(ack.seq, bool(ack.duplicate))

    async def append_many(self, items: Sequence[Append], window: int = 256) -> list[AppendResult]:
        futures: deque[asyncio.Future[Any]] = deque()
        results: list[AppendResult] = []

        async def settle_oldest() -> None:
            index = len(results)
            future = futures.popleft()
            try:
                if future.done():  # the common case: no timer needed
                    ack = future.result()
                else:
                    async with asyncio.timeout(_ACK_WAIT):  # no extra task, unlike wait_for
                        ack = await future
            except nats.js.errors.APIError as exc:
                raise _append_error(items[index], exc) from None
            except TimeoutError:
                raise _no_ack(items[index]) from None
            results.append(AppendResult(ack.seq, bool(ack.duplicate)))

        try:
            for item in items:
                if len(futures) >= window:
                    await settle_oldest()
                futures.append(
                    await self._js.publish_async(item.subject, item.data, headers=_headers(item))
                )
            while futures:
                await settle_oldest()
        except BaseException:
            # nats.py frees a slot of its pending-publish limit only when a future is done: an
            # abandoned future would hold its slot for the life of the connection, and enough of
            # them make every later publish_async wait forever.
            for future in futures:
                future.cancel()
            raise
        return results

    async def last_seq(self) -> int:
        try:
            info = await self._js.stream_info(self._stream)
        except nats.errors.Error as exc:
            raise BusError(f"could not read the state of {self._stream}: {exc}") from exc
        return int(info.state.last_seq)

    async def last_message(self, filter_subject: str) -> StoredMessage | None:
        try:
            raw = await self._js.get_last_msg(self._stream, filter_subject)
        except nats.js.errors.NotFoundError:
            return None
        return _stored(raw)

    async def message_at(self, seq: int) -> StoredMessage | None:
        if seq < 1:
            return None
        try:
            raw = await self._js.get_msg(self._stream, seq=seq)
        except nats.js.errors.NotFoundError:
            return None
        except nats.errors.Error as exc:
            raise BusError(f"could not read seq {seq} of {self._stream}: {exc}") from exc
        return _stored(raw)

    async def next_message(self, filter_subject: str, start_seq: int) -> StoredMessage | None:
        try:
            raw = await self._js.get_msg(
                self._stream, seq=max(start_seq, 1), subject=filter_subject, next=True
            )
        except nats.js.errors.NotFoundError:
            return None
        return _stored(raw)

    async def read(
        self, start_seq: int = 1, *, until_seq: int | None = None, follow: bool = False
    ) -> AsyncIterator[list[StoredMessage]]:
        end = until_seq
        if not follow:
            last = await self.last_seq()
            end = last if end is None else min(end, last)
        start = max(start_seq, 1)
        if end is not None and start > end:
            return
        if self._direct_reads:
            if end is None:
                raise BusError("a read-only login reads up to an end; it cannot follow")
            async for direct in read_direct(
                self._nc, self._stream, start, end, api_prefix=self._api_prefix
            ):
                yield direct
            return
        reader = PullReader(self._nc, self._js, self._stream, start, end)
        await reader.open()
        try:
            while True:
                batch = await reader.next_batch()
                if batch is None:
                    return
                yield batch
        finally:
            await reader.close()

    async def work_queue(self, spec: QueueSpec) -> JetStreamQueue:
        # An existing consumer is bound as it is (an agent may not change it); a missing one is
        # created, where this connection may (the operator's, or a server without permissions).
        sub = await self._js.pull_subscribe(
            spec.filter_subject,
            durable=spec.name,
            stream=self._stream,
            config=consumer_config(spec),
        )
        queue = JetStreamQueue(sub)
        self._queues = [q for q in self._queues if not q.closed]
        self._queues.append(queue)
        return queue

    async def ensure_queues(self, specs: Sequence[QueueSpec]) -> None:
        """Create each durable consumer of ``specs`` that is missing; an existing one is left as
        it is. The operator's job: agents may not create consumers."""
        for spec in specs:
            try:
                await self._js.consumer_info(self._stream, spec.name)
            except nats.js.errors.NotFoundError:
                await self._js.add_consumer(self._stream, config=consumer_config(spec))

    async def pending(self, name: str) -> int:
        try:
            info = await self._js.consumer_info(self._stream, name)
        except nats.js.errors.NotFoundError:
            return 0
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    async def queues(self) -> list[QueueState]:
        found: list[QueueState] = []
        while True:  # the server lists a page at a time; a short page is the last
            try:
                page = await self._js.consumers_info(self._stream, offset=len(found) or None)
            except nats.errors.Error as exc:
                raise BusError(f"could not list the consumers of {self._stream}: {exc}") from exc
            found += [_queue_state(info) for info in page]
            if len(page) < _CONSUMER_PAGE:
                return sorted(found, key=lambda q: q.name)

    async def doorbell(self, *filter_subjects: str) -> JetStreamDoorbell:
        bell = JetStreamDoorbell()
        # Plain core subscriptions to the stream's republish of each event's headers, once
        # stored: heard in every account (an event's own subject is not, see bell_prefix).
        for filter_subject in filter_subjects:
            subject = bell_of(self._namespace, filter_subject)
            bell.subs.append(await self._nc.subscribe(subject, cb=bell.ring))
        return bell

    async def announce(self, subject: str, data: bytes) -> None:
        try:
            await self._nc.publish(subject, data)
        except nats.errors.Error as exc:
            raise BusError(f"could not announce on {subject}: {exc}") from exc

    @contextlib.asynccontextmanager
    async def listen(self, filter_subject: str) -> AsyncIterator[AsyncIterator[tuple[str, bytes]]]:
        sub = await self._nc.subscribe(filter_subject)
        await self._nc.flush()  # the server knows of the interest before the caller goes on

        async def heard() -> AsyncIterator[tuple[str, bytes]]:
            async for msg in sub.messages:
                yield msg.subject, msg.data

        try:
            yield heard()
        finally:
            with contextlib.suppress(Exception):  # a connection closed first took it along
                await sub.unsubscribe()

    async def snapshot_store(self) -> JetStreamSnapshots:
        try:
            store = await self._js.object_store(object_bucket(self._namespace))
        except nats.js.errors.BucketNotFoundError:
            raise BusError(
                f"the snapshot bucket of namespace {self._namespace!r} is missing;"
                " run `swarmlog up`"
            ) from None
        # No client given: a snapshot's put and get stream a file, which nats-py has read or
        # written part of when an answer is lost, so neither is made again on a new connection.
        return JetStreamSnapshots(Patient(store))

    async def flags(self) -> JetStreamKV:
        return await self._bucket("flags")

    async def cache(self) -> JetStreamKV:
        return await self._bucket("cache")

    async def presence(self) -> JetStreamKV:
        bucket = kv_bucket(self._namespace, "presence")
        # Bound without looking the bucket up (no stream info): every agent puts its own key,
        # and an external one may read nothing else of the bucket, not even its info.
        stream, prefix = kv_stream(bucket), kv_key(bucket, "")
        kv = KeyValue(name=bucket, stream=stream, pre=prefix, js=self._raw_js, direct=False)
        return JetStreamKV(Patient(kv, self._nc), self._nc, self._js, bucket)

    async def _bucket(self, purpose: str) -> JetStreamKV:
        try:
            kv = await self._js.key_value(kv_bucket(self._namespace, purpose))
        except nats.js.errors.BucketNotFoundError:
            raise BusError(
                f"the {purpose} bucket of namespace {self._namespace!r} is missing;"
                " run `swarmlog up`"
            ) from None
        return JetStreamKV(
            Patient(kv, self._nc), self._nc, self._js, kv_bucket(self._namespace, purpose)
        )

    async def close(self) -> None:
        if not self._nc.is_closed:
            # A work-queue subscription left open would hold the drain for its full timeout
            # (nats-py never marks some buffered pull replies done): unsubscribe those first.
            # Their unacknowledged messages are redelivered after ack_wait, as on any exit.
            for queue in self._queues:
                await queue.close()
            self._queues.clear()
            if self._nc.is_reconnecting:  # no server to drain to (it went away): just close
                await self._nc.close()
                return
            await self._nc.drain()


def _queue_state(info: Any) -> QueueState:
    """A consumer as the server lists it (``nats.js.api.ConsumerInfo``)."""
    config = info.config
    return QueueState(
        name=str(info.name),
        filter_subject=str(config.filter_subject or ""),
        waiting=int(info.num_pending or 0),
        unacked=int(info.num_ack_pending or 0),
        redelivered=int(info.num_redelivered or 0),
    )


def _stored(raw: Any) -> StoredMessage:
    """A message the stream API handed back by sequence or subject."""
    # Exactly the microseconds the API's time has (nats-py keeps no more), not a float's.
    at = raw.time
    stored_at = (
        calendar.timegm(at.utctimetuple()) * 1_000_000_000 + at.microsecond * 1000
        if at is not None
        else 0
    )
    return StoredMessage(int(raw.seq or 0), str(raw.subject), bytes(raw.data or b""), stored_at)


def _headers(item: Append) -> dict[str, str]:
    headers = {"Nats-Msg-Id": item.msg_id}
    if item.expected_last_seq is not None:
        headers["Nats-Expected-Last-Subject-Sequence"] = str(item.expected_last_seq)
        if item.expected_filter is not None:
            headers["Nats-Expected-Last-Subject-Sequence-Subject"] = item.expected_filter
    return headers


def _no_ack(item: Append) -> BusError:
    return BusError(
        f"no acknowledgement for {item.subject} within {_ACK_WAIT:g} s; it may or may not be"
        " stored: look with `swarmlog events tail` before publishing it again"
    )


def _append_error(item: Append, exc: nats.js.errors.APIError) -> Exception:
    if exc.err_code == _WRONG_LAST_SEQUENCE:
        return ConcurrencyConflict(
            item.expected_filter or item.subject, item.expected_last_seq or 0
        )
    return BusError(f"the stream refused {item.subject}: {exc.description}")
