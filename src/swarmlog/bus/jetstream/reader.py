"""Reading the stream in order, fast and without gaps: through an ephemeral pull consumer, or,
for a login that may create no consumer (an auditor), by batched direct gets."""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

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
)

from swarmlog.bus.ports import StoredMessage
from swarmlog.bus.subjects import JS_API, js_api
from swarmlog.errors import BusError

__all__ = ["PullReader", "read_direct"]


log = logging.getLogger(__name__)

_READ_BATCH = 2048  # messages per fetch by a reader
_PREFETCH = 2  # batches a reader fetches ahead of its consumer
_FETCH_WAIT = 1.0  # seconds a reader's fetch lingers when it is caught up
_READER_INACTIVE = 60.0  # seconds before the server drops an abandoned reader's consumer
_DIRECT_BATCH = 1024  # messages per direct-get batch
_DIRECT_BYTES = 8 * 1024 * 1024  # and at most this many bytes of them
_DIRECT_WAIT = 10.0  # seconds to wait for the next message of a batch


class PullReader:
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


async def read_direct(
    nc: Client, stream: str, start: int, end: int, *, api_prefix: str | None = None
) -> AsyncIterator[list[StoredMessage]]:
    """The messages ``start..end`` of ``stream`` in order, one batch per direct-get request
    (``{"seq": N, "batch": B}``, answered by up to B messages and an end-of-batch status).

    For a login that may only read (an auditor: no consumer of its own, see
    :mod:`swarmlog.bus.permissions`); ``api_prefix`` is where its account imports the API.
    A deleted message is simply not among the answers (a reader sees the gap in the
    sequences); an error status or a silent server raises :class:`BusError`."""
    subject = js_api("DIRECT", "GET", stream)
    if api_prefix is not None:
        subject = api_prefix + subject.removeprefix(JS_API)
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    try:
        seq = start
        while seq <= end:
            want = min(_DIRECT_BATCH, end - seq + 1)
            request = {"seq": seq, "batch": want, "max_bytes": _DIRECT_BYTES}
            await nc.publish(subject, msgspec.json.encode(request), reply=inbox)
            batch: list[StoredMessage] = []
            while True:
                try:
                    msg = await sub.next_msg(timeout=_DIRECT_WAIT)
                except nats.errors.TimeoutError:
                    raise BusError(
                        f"reading {stream} from seq {seq}: no answer in {_DIRECT_WAIT:.0f} s"
                    ) from None
                headers = msg.headers or {}
                status = headers.get("Status")
                if status in ("204", "404"):  # the batch is over; nothing (more) from seq on
                    break
                if status is not None:
                    raise BusError(
                        f"reading {stream} from seq {seq}: the server answered {status}"
                        f" {headers.get('Description', '')}".rstrip()
                    )
                stored = StoredMessage(
                    int(headers["Nats-Sequence"]),
                    headers["Nats-Subject"],
                    msg.data,
                    timestamp_ns(headers["Nats-Time-Stamp"]),
                )
                if stored.seq <= end:
                    batch.append(stored)
            if not batch:
                return
            yield batch
            seq = batch[-1].seq + 1
    finally:
        with contextlib.suppress(nats.errors.Error):
            await sub.unsubscribe()


def timestamp_ns(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 UTC time with up to nine decimals, as the
    server stamps a direct get (``2026-12-03T17:25:43.795985708Z``): exactly, no float."""
    whole, _, fraction = text.rstrip("Z").partition(".")
    seconds = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    return seconds * 1_000_000_000 + int((fraction + "000000000")[:9])
