"""The log on a real NATS JetStream server (nats-py): the production adapter.

Provisioning follows the design: one stream per namespace, ``SWARMLOG_<NS>`` over
``swarmlog.<ns>.>``, file storage, deny delete, deny purge, no rollups, a dedupe window. Appends
carry ``Nats-Msg-Id`` (dedupe) and, for optimistic concurrency, ``Nats-Expected-Last-Subject-
Sequence`` with ``...-Subject`` (a wildcard filter naming the aggregate).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    ObjectMeta,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from swarmlog.bus.doorbells import drain_queue
from swarmlog.bus.permissions import Login
from swarmlog.bus.ports import Append, AppendResult, Delivery, StoredMessage
from swarmlog.bus.queues import QueueSpec
from swarmlog.bus.subjects import (
    js_api,
    kv_bucket,
    kv_key,
    kv_stream,
    object_bucket,
    stream_name,
    stream_subjects,
)
from swarmlog.errors import BusError, ConcurrencyConflict

__all__ = [
    "DEFAULT_DUPLICATE_WINDOW",
    "JetStreamLog",
    "JetStreamSnapshots",
    "connect",
    "refusals",
    "stream_config",
]

log = logging.getLogger(__name__)

DEFAULT_DUPLICATE_WINDOW = 120.0
"""Seconds within which a repeated ``Nats-Msg-Id`` is acknowledged but not stored again."""

_WRONG_LAST_SEQUENCE = 10071  # JetStream API error code for a failed expected-sequence check
_LOGIN_REFUSALS = 3  # refused logins in a row that make a refusal final
_ACK_WAIT = 10.0  # seconds to wait for the stream to acknowledge an append
_READ_BATCH = 2048  # messages per fetch by a reader
_PREFETCH = 2  # batches a reader fetches ahead of its consumer
_FETCH_WAIT = 1.0  # seconds a reader's fetch lingers when it is caught up
_READER_INACTIVE = 60.0  # seconds before the server drops an abandoned reader's consumer


_TRANSIENT = (
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.NoStreamResponseError,
    nats.errors.NoRespondersError,
)
"""What the server answers for the moment it re-registers an account's JetStream API (while it
reloads its logins: `keys issue`, `kill`, `revive`): nobody took the request, so nothing was
done, and asking again is safe."""
_PATIENCE = 2.0  # seconds a call keeps retrying through such a moment


class _Patient:
    """A nats-py JetStream context whose calls ride out a reload: a call that found no responder
    is made again, with growing pauses, for up to :data:`_PATIENCE` seconds."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        async def patient(*args: Any, **kwargs: Any) -> Any:
            delay, waited = 0.005, 0.0
            while True:
                try:
                    return await attr(*args, **kwargs)
                except _TRANSIENT:
                    if waited >= _PATIENCE:
                        raise
                await asyncio.sleep(delay)
                waited += delay
                delay = min(delay * 2, 0.25)

        return patient


async def _quiet_error(exc: Exception) -> None:
    # nats-py prints connection errors to stderr by default; swarmlog reports them itself. A
    # permissions violation is worth a warning: the broker refused something this process tried.
    if "permissions violation" in str(exc).lower():
        log.warning("nats refused: %s", exc)
    else:
        log.debug("nats: %s", exc)


async def _nothing_listens(url: str) -> bool:
    """Whether every server in ``url`` refuses TCP connections (so waiting cannot help)."""
    for server in url.split(","):
        parts = urlsplit(server.strip())
        try:
            host, port = parts.hostname, parts.port
        except ValueError:
            return False
        if host is None or port is None:
            return False
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
        except ConnectionRefusedError:
            continue
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return False
    return True


async def connect(
    url: str,
    *,
    name: str = "swarmlog",
    timeout: float = 5.0,
    login: Login | None = None,
    **opts: Any,
) -> Client:
    """Connect to NATS at ``url`` (as ``login``, when given); raises :class:`BusError` with what to
    do when the server is unreachable or refuses the login.

    nats-py retries a first connection without end, so it gets a deadline, and a URL nothing
    listens on fails at once.
    """
    unreachable = BusError(
        f"cannot reach NATS at {url}; start it with `swarmlog up --detach` or pass a reachable"
        " --nats-url"
    )
    if await _nothing_listens(url):
        raise unreachable
    if login is not None:
        opts |= {"nkeys_seed_str": login.seed, "inbox_prefix": login.inbox_prefix}
    refused = asyncio.Event()
    refusals_seen = 0

    async def on_error(exc: Exception) -> None:
        nonlocal refusals_seen
        if "authorization" in str(exc).lower():
            # nats-py would retry a refused login until the deadline. One refusal can be the
            # server reloading its logins at that moment; three in a row (0.5 s) are an answer.
            refusals_seen += 1
            if refusals_seen >= _LOGIN_REFUSALS:
                refused.set()
        await _quiet_error(exc)

    connecting = asyncio.ensure_future(
        nats.connect(
            url,
            name=name,
            connect_timeout=max(1, round(timeout)),
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.25,
            error_cb=on_error,
            **opts,
        )
    )
    told = asyncio.ensure_future(refused.wait())
    try:
        await asyncio.wait({connecting, told}, timeout=timeout, return_when="FIRST_COMPLETED")
    finally:
        told.cancel()
    if connecting.done() and connecting.exception() is None:
        client = connecting.result()
        if not refused.is_set():
            return client
        await client.close()
    else:
        connecting.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await connecting
    if refused.is_set() or refusals_seen:
        who = login.inbox_prefix.removeprefix("_INBOX_") if login else "an anonymous client"
        raise BusError(
            f"NATS at {url} refused the login of {who}: its key is unknown to the server,"
            " or it was killed, revoked or expired; see `swarmlog keys show`"
        )
    raise unreachable


async def refusals(url: str, login: Login, subjects: Sequence[str]) -> list[str]:
    """Log in as ``login`` and publish to each of ``subjects``; the ones the server refuses, as
    it says so (a probe of the broker's permissions, for the demo and for operators)."""
    said: list[str] = []
    all_said = asyncio.Event()

    def refused() -> list[str]:
        return [
            s
            for s in subjects
            if any(f'permissions violation for publish to "{s.lower()}"' in e for e in said)
        ]

    async def on_error(exc: Exception) -> None:
        said.append(str(exc).lower())
        if len(refused()) == len(subjects):
            all_said.set()

    nc = await nats.connect(
        url,
        nkeys_seed_str=login.seed,
        inbox_prefix=login.inbox_prefix,
        error_cb=on_error,
        allow_reconnect=False,
    )
    try:
        for subject in subjects:
            await nc.publish(subject, b"{}")
        await nc.flush()
        # The server answers each refused publish before the flush's pong, but nats-py reports
        # errors from a task of its own: give them a moment to arrive.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_said.wait(), 2.0)
    finally:
        await nc.close()
    return refused()


def stream_config(
    namespace: str, *, replicas: int = 1, duplicate_window: float = DEFAULT_DUPLICATE_WINDOW
) -> StreamConfig:
    """The append-only stream of a namespace, exactly as the design fixes it."""
    return StreamConfig(
        name=stream_name(namespace),
        description=f"swarmlog event log of namespace {namespace}",
        subjects=stream_subjects(namespace),
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        storage=StorageType.FILE,
        num_replicas=replicas,
        duplicate_window=duplicate_window,
        deny_delete=True,
        deny_purge=True,
        allow_rollup_hdrs=False,
        # Larger than what readers accept, so an oversized event is stored and then quarantined
        # (visible in the audit) rather than silently refused at the door.
        max_msg_size=1_048_576,
    )


class JetStreamLog:
    """An :class:`~swarmlog.bus.ports.EventLog` on a JetStream stream."""

    def __init__(
        self, nc: Client, namespace: str, url: str = "", api_prefix: str | None = None
    ) -> None:
        self.url = url
        """The URL this log was opened with."""
        self._nc = nc
        # An external agent reaches the API where its account imports it.
        options: dict[str, Any] = {"prefix": api_prefix} if api_prefix else {}
        self._js = _Patient(nc.jetstream(publish_async_max_pending=4096, **options))
        self._namespace = namespace
        self._stream = stream_name(namespace)
        self._queues: list[_JetStreamQueue] = []

    @classmethod
    async def open(
        cls,
        url: str,
        namespace: str,
        *,
        provision: bool = False,
        replicas: int = 1,
        login: Login | None = None,
    ) -> JetStreamLog:
        """Connect (as ``login``, when given) and (optionally) create or check the namespace's
        stream (and its buckets, with ``replicas`` copies each on a cluster)."""
        nc = await connect(url, login=login)
        self = cls(nc, namespace, url, api_prefix=login.api_prefix if login else None)
        try:
            if provision:
                await self.provision(replicas=replicas)
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

    async def provision(self, *, replicas: int = 1) -> None:
        """Create the stream and buckets if missing; an existing stream must be append-only."""
        await self._provision_stream(replicas)
        # What is not an event stream: kill-switch flags, the result cache, snapshots.
        for purpose in ("flags", "cache"):
            bucket = kv_bucket(self._namespace, purpose)
            try:
                await self._js.key_value(bucket)
            except nats.js.errors.BucketNotFoundError:
                # Cached results expire on their own (a day); flags stay until deleted.
                ttl = 86_400.0 if purpose == "cache" else None
                await self._js.create_key_value(
                    KeyValueConfig(bucket=bucket, history=1, replicas=replicas, ttl=ttl)
                )
        snapshots = object_bucket(self._namespace)
        try:
            await self._js.object_store(snapshots)
        except nats.js.errors.BucketNotFoundError:
            await self._js.create_object_store(
                snapshots, ObjectStoreConfig(bucket=snapshots, replicas=replicas)
            )

    async def _provision_stream(self, replicas: int) -> None:
        config = stream_config(self._namespace, replicas=replicas)
        try:
            info = await self._js.stream_info(self._stream)
        except nats.js.errors.NotFoundError:
            await self._js.add_stream(config)
            return
        current = info.config
        if list(current.subjects or []) != config.subjects:
            raise BusError(
                f"stream {self._stream} exists for subjects {current.subjects}, not"
                f" {config.subjects}; use another --namespace"
            )
        unlimited = all(
            value in (None, 0, -1)
            for value in (current.max_age, current.max_msgs, current.max_bytes)
        )
        if not unlimited or current.storage != StorageType.FILE:
            raise BusError(
                f"stream {self._stream} exists with limits or memory storage that would drop"
                " history; it was not created by swarmlog: use another --namespace"
            )
        if not (current.deny_delete and current.deny_purge) or current.allow_rollup_hdrs:
            raise BusError(
                f"stream {self._stream} exists but is not append-only (deny delete/purge,"
                " no rollups); it was not created by swarmlog: use another --namespace"
            )

    async def check_stream(self) -> None:
        try:
            await self._js.stream_info(self._stream)
        except nats.js.errors.NotFoundError:
            raise BusError(
                f"stream {self._stream} does not exist; run `swarmlog up` to provision it"
            ) from None

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

        for item in items:
            if len(futures) >= window:
                await settle_oldest()
            futures.append(
                await self._js.publish_async(item.subject, item.data, headers=_headers(item))
            )
        while futures:
            await settle_oldest()
        return results

    async def last_seq(self) -> int:
        info = await self._js.stream_info(self._stream)
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
        reader = _PullReader(self._nc, self._js, self._stream, start, end)
        await reader.open()
        try:
            while True:
                batch = await reader.next_batch()
                if batch is None:
                    return
                yield batch
        finally:
            await reader.close()

    async def work_queue(
        self,
        name: str,
        filter_subject: str,
        *,
        ack_wait: float = 30.0,
        max_deliver: int = 5,
        new_only: bool = False,
    ) -> _JetStreamQueue:
        spec = QueueSpec(name, filter_subject, ack_wait, max_deliver, new_only)
        # An existing consumer is bound as it is (an agent may not change it); a missing one is
        # created, where this connection may (the operator's, or a server without permissions).
        sub = await self._js.pull_subscribe(
            filter_subject, durable=name, stream=self._stream, config=_consumer_config(spec)
        )
        queue = _JetStreamQueue(sub)
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
                await self._js.add_consumer(self._stream, config=_consumer_config(spec))

    async def pending(self, name: str) -> int:
        try:
            info = await self._js.consumer_info(self._stream, name)
        except nats.js.errors.NotFoundError:
            return 0
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    async def doorbell(self, *filter_subjects: str) -> _JetStreamDoorbell:
        bell = _JetStreamDoorbell()
        # Plain core subscriptions: the server hands them every message published on the
        # subjects as it routes it to the stream, at no cost to the stream.
        for filter_subject in filter_subjects:
            bell.subs.append(await self._nc.subscribe(filter_subject, cb=bell.ring))
        return bell

    async def snapshot_store(self) -> JetStreamSnapshots:
        try:
            store = await self._js.object_store(object_bucket(self._namespace))
        except nats.js.errors.BucketNotFoundError:
            raise BusError(
                f"the snapshot bucket of namespace {self._namespace!r} is missing;"
                " run `swarmlog up`"
            ) from None
        return JetStreamSnapshots(_Patient(store))

    async def flags(self) -> _JetStreamKV:
        return await self._bucket("flags")

    async def cache(self) -> _JetStreamKV:
        return await self._bucket("cache")

    async def _bucket(self, purpose: str) -> _JetStreamKV:
        try:
            kv = await self._js.key_value(kv_bucket(self._namespace, purpose))
        except nats.js.errors.BucketNotFoundError:
            raise BusError(
                f"the {purpose} bucket of namespace {self._namespace!r} is missing;"
                " run `swarmlog up`"
            ) from None
        return _JetStreamKV(_Patient(kv), self._nc, self._js, kv_bucket(self._namespace, purpose))

    async def close(self) -> None:
        if not self._nc.is_closed:
            # A work-queue subscription left open would hold the drain for its full timeout
            # (nats-py never marks some buffered pull replies done): unsubscribe those first.
            # Their unacknowledged messages are redelivered after ack_wait, as on any exit.
            for queue in self._queues:
                await queue.close()
            self._queues.clear()
            await self._nc.drain()


class JetStreamSnapshots:
    """The namespace's :class:`~swarmlog.bus.ports.SnapshotStore`: a JetStream object store,
    each object's record kept as JSON in its description."""

    def __init__(self, store: Any) -> None:
        self._store = store

    async def put(self, name: str, path: Path, meta: dict[str, Any]) -> int:
        with path.open("rb") as data:
            info = await self._store.put(
                name, data, meta=ObjectMeta(name=name, description=json.dumps(meta))
            )
        return int(info.size or 0)

    async def get(self, name: str, path: Path) -> dict[str, Any]:
        try:
            with path.open("wb") as out:
                result = await self._store.get(name, writeinto=out)
        except nats.js.errors.ObjectNotFoundError:
            raise BusError(f"no snapshot {name!r}; see `swarmlog snapshot list`") from None
        meta: dict[str, Any] = json.loads(result.info.description or "{}")
        return meta

    async def catalog(self) -> list[dict[str, Any]]:
        try:
            infos = await self._store.list(ignore_deletes=True)
        except nats.js.errors.NotFoundError:
            return []
        found = [
            {"name": i.name, "size": int(i.size or 0)} | json.loads(i.description or "{}")
            for i in infos
        ]
        return sorted(found, key=lambda s: (s.get("seq", 0), s["name"]))


class _JetStreamDoorbell:
    def __init__(self) -> None:
        self.subs: list[Any] = []
        self._rung: asyncio.Queue[str] = asyncio.Queue(maxsize=1024)

    async def ring(self, msg: Msg) -> None:
        with contextlib.suppress(asyncio.QueueFull):  # a full queue already means "ring"
            self._rung.put_nowait(msg.subject)

    async def wait(self, timeout: float) -> list[str]:
        return await drain_queue(self._rung, timeout)

    async def close(self) -> None:
        for sub in self.subs:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
        self.subs = []


_KV_RESYNC = 2.0
"""Seconds between full reads of a followed bucket (see :meth:`_JetStreamKV.watch`)."""


class _JetStreamKV:
    """A KV bucket read and followed without creating any consumer: agents may create none
    (see :mod:`swarmlog.bus.permissions`). Keys are listed from the bucket stream's subject
    counts, read one by one (direct get), and followed through a plain subscription to the
    bucket's subjects, on which every put and delete is also published."""

    def __init__(self, kv: Any, nc: Client, js: Any, bucket: str) -> None:
        self._kv = kv
        self._nc = nc
        self._js = js
        self._stream = kv_stream(bucket)
        self._prefix = kv_key(bucket, "")

    async def put(self, key: str, value: bytes) -> None:
        await self._kv.put(key, value)

    async def delete(self, key: str) -> None:
        with contextlib.suppress(nats.js.errors.KeyNotFoundError):
            await self._kv.delete(key)

    async def get(self, key: str) -> bytes | None:
        try:
            entry = await self._kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            return None
        return bytes(entry.value) if entry.value else None

    async def keys(self) -> list[str]:
        """Every key with a message in the bucket (deleted ones included: they hold a marker)."""
        info = await self._js.stream_info(self._stream, subjects_filter=self._prefix + ">")
        subjects = info.state.subjects or {}
        return sorted(s.removeprefix(self._prefix) for s in subjects)

    async def items(self) -> dict[str, bytes]:
        out = {}
        for key in await self.keys():
            value = await self.get(key)
            if value is not None:
                out[key] = value
        return out

    async def watch(self) -> AsyncIterator[tuple[str, bytes | None]]:
        changes: asyncio.Queue[Msg] = asyncio.Queue()

        async def on_change(msg: Msg) -> None:
            changes.put_nowait(msg)

        # Subscribed before the current values are read, so no change falls in between.
        sub = await self._nc.subscribe(self._prefix + ">", cb=on_change)
        known: dict[str, bytes] = {}
        try:
            await self._nc.flush()
            while True:
                # Now and every so often, the values as they are: a change published while
                # this connection was away (a revived agent is let back in after its flag is
                # lifted) is not heard, only seen.
                with contextlib.suppress(nats.errors.Error, nats.js.errors.Error):
                    now = await self.items()
                    for key in known.keys() - now.keys():
                        yield key, None
                    for key, value in now.items():
                        if known.get(key) != value:
                            yield key, value
                    known = now
                deadline = asyncio.get_running_loop().time() + _KV_RESYNC
                while (left := deadline - asyncio.get_running_loop().time()) > 0:
                    try:
                        msg = await asyncio.wait_for(changes.get(), left)
                    except TimeoutError:
                        break
                    key = msg.subject.removeprefix(self._prefix)
                    operation = (msg.headers or {}).get("KV-Operation")
                    if operation is not None or not msg.data:
                        known.pop(key, None)
                        yield key, None
                    else:
                        known[key] = bytes(msg.data)
                        yield key, known[key]
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()


def _stored(raw: Any) -> StoredMessage:
    """A message the stream API handed back by sequence or subject."""
    stored_at = int(raw.time.timestamp() * 1e9) if raw.time is not None else 0
    return StoredMessage(int(raw.seq or 0), str(raw.subject), bytes(raw.data or b""), stored_at)


def _consumer_config(spec: QueueSpec) -> ConsumerConfig:
    return ConsumerConfig(
        name=spec.name,
        durable_name=spec.name,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=spec.ack_wait,
        max_deliver=spec.max_deliver,
        filter_subject=spec.filter_subject,
        deliver_policy=DeliverPolicy.NEW if spec.new_only else DeliverPolicy.ALL,
    )


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


class _PullReader:
    """Reads the stream in order through an ephemeral pull consumer without acks.

    nats-py's ``fetch`` awaits each message separately; this reader collects pull requests'
    messages in a subscription callback and hands over whatever has arrived at once (low latency
    when following a trickle). A new request goes out when fewer than half a batch is still
    asked for, and at most ``_PREFETCH`` batches wait for the consumer, so memory stays flat
    however far behind the consumer is. With an ``end``, exactly the messages up to it are asked
    for (the stream has no gaps: deletes and purges are denied), so a bounded read ends at once.

    Like nats-py's ordered consumer, it never skips a message: a sequence gap (messages lost
    while the connection was down), a vanished consumer (server restart) or a lost request makes
    it drop what it has not handed over and recreate the consumer at the next sequence it needs.
    """

    def __init__(self, nc: Client, js: Any, stream: str, start: int, end: int | None) -> None:
        self._nc = nc
        self._js = js
        self._stream = stream
        self._end = end
        self._batches: asyncio.Queue[list[StoredMessage] | BaseException | None] = asyncio.Queue(
            _PREFETCH
        )
        self._arrived: list[StoredMessage] = []
        self._wake = asyncio.Event()
        self._outstanding = 0  # messages asked for and not yet received
        self._next = start  # the next sequence this reader needs
        self._asked_to = start - 1  # bounded reads: the last sequence requests cover
        self._reset = False  # the consumer must be recreated at ``_next``
        self._failure: Exception | None = None
        self._consumer = ""
        self._inbox = ""
        self._sub: Any = None
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self._inbox = self._nc.new_inbox()
        self._sub = await self._nc.subscribe(self._inbox, cb=self._on_message)
        await self._create_consumer()
        self._task = asyncio.create_task(self._pull_loop())

    async def _create_consumer(self) -> None:
        if self._consumer:
            with contextlib.suppress(nats.errors.Error):
                await self._js.delete_consumer(self._stream, self._consumer)
        info = await self._js.add_consumer(
            self._stream,
            ConsumerConfig(
                ack_policy=AckPolicy.NONE,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=self._next,
                inactive_threshold=_READER_INACTIVE,
                mem_storage=True,
            ),
        )
        self._consumer = info.name
        self._arrived = []
        self._outstanding = 0
        self._asked_to = self._next - 1
        self._reset = False

    async def _recreate(self) -> None:
        """Recreate the consumer, waiting out a server that is restarting (a daemon outlives
        outages: it retries with backoff for as long as it runs)."""
        delay = 0.1
        while True:
            try:
                await self._create_consumer()
                return
            except (nats.errors.Error, TimeoutError) as exc:
                log.info("reader: recreating the consumer failed (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _on_message(self, msg: Msg) -> None:
        if self._reset or (msg.reply and self._consumer not in msg.reply):
            return  # from a consumer being replaced
        if not msg.data and msg.headers and "Status" in msg.headers:
            status = msg.headers.get("Status", "")
            unsent = msg.headers.get("Nats-Pending-Messages")
            if status == "408" and unsent is not None:
                # A request expired with this many of its messages never sent.
                self._outstanding = max(0, self._outstanding - int(unsent))
            else:
                self._reset = True  # consumer gone (404/409), no responders (503), ...
            self._wake.set()
            return
        # Reply subject: $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.
        # <timestamp>.<pending>, or with <domain>.<account hash> after ACK (12 tokens).
        tokens = msg.reply.split(".")
        at = 5 if len(tokens) == 9 else 7
        seq = int(tokens[at])
        if seq != self._next:
            self._reset = True  # a gap: never hand over past a missing message
            self._wake.set()
            return
        self._next = seq + 1
        self._arrived.append(StoredMessage(seq, msg.subject, msg.data, int(tokens[at + 2])))
        self._outstanding = max(0, self._outstanding - 1)
        self._wake.set()

    async def _ask(self) -> None:
        batch = _READ_BATCH
        request: dict[str, int] = {"batch": batch}
        if self._end is None:
            request["expires"] = int(_FETCH_WAIT * 1e9)  # follow: linger, then ask again
        else:
            batch = request["batch"] = min(batch, self._end - self._asked_to)
            if batch <= 0:
                return
            self._asked_to += batch
        self._outstanding += batch
        await self._nc.publish(
            js_api("CONSUMER", "MSG", "NEXT", self._stream, self._consumer),
            msgspec.json.encode(request),
            reply=self._inbox,
        )

    async def _pull_loop(self) -> None:
        try:
            await self._pull()
        except Exception as exc:  # the consumer side must hear of it, never hang
            self._failure = exc
            with contextlib.suppress(asyncio.QueueFull):
                self._batches.put_nowait(exc)

    async def _pull(self) -> None:
        while True:
            if self._reset:
                await self._recreate()
            if self._outstanding <= _READ_BATCH // 2:
                await self._ask()
            try:
                await asyncio.wait_for(self._wake.wait(), _FETCH_WAIT + 5.0)
            except TimeoutError:
                self._reset = True  # a lost request or a silent server: start over
                continue
            self._wake.clear()
            batch, self._arrived = self._arrived, []
            if not batch:
                continue
            await self._batches.put(batch)
            if self._end is not None and batch[-1].seq >= self._end:
                await self._batches.put(None)
                return

    async def next_batch(self) -> list[StoredMessage] | None:
        if self._failure is not None and self._batches.empty():
            raise self._failure
        item = await self._batches.get()
        if isinstance(item, BaseException):
            raise item
        return item

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, nats.errors.Error):
                await self._task
        with contextlib.suppress(nats.errors.Error):
            if self._sub is not None:
                await self._sub.unsubscribe()
            if self._consumer:
                await self._js.delete_consumer(self._stream, self._consumer)


@dataclass
class _JetStreamDelivery:
    msg: Msg
    message: StoredMessage

    @property
    def num_delivered(self) -> int:
        return int(self.msg.metadata.num_delivered)

    async def ack(self) -> None:
        await self.msg.ack()

    async def in_progress(self) -> None:
        await self.msg.in_progress()

    async def nak(self, delay: float | None = None) -> None:
        await self.msg.nak(delay=delay)

    async def term(self) -> None:
        await self.msg.term()


@dataclass
class _JetStreamQueue:
    sub: Any  # nats.js.client.JetStreamContext.PullSubscription
    closed: bool = False

    async def fetch(self, batch: int, timeout: float) -> list[Delivery]:
        try:
            msgs = await self.sub.fetch(batch, timeout=timeout)
        except TimeoutError:  # nats-py raises its own subclass, or a bare one near the deadline
            return []
        except _TRANSIENT:  # the server is reloading its logins: nothing was taken, ask again
            await asyncio.sleep(0.01)
            return []
        return [
            _JetStreamDelivery(m, StoredMessage(m.metadata.sequence.stream, m.subject, m.data))
            for m in msgs
        ]

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self.sub.unsubscribe()
