"""Traces from the log to an OTLP receiver: after the fact (:func:`export_traces`, ``swarmlog
traces export``) or live (:func:`follow_traces`, ``swarmlog traces follow``).

Both read verified events through :meth:`Client.events <swarmlog.control.client.Client.events>`,
derive spans with :mod:`swarmlog.observability.spans` and send the complete ones with
:class:`~swarmlog.observability.otlp.OTLPTraces`. The ids are derived from the events, so a
span sent twice is the same span, never a second one; the follower also remembers, in a file
under the data dir, up to where it has sent (``traces/<namespace>-<endpoint digest>.json``), so
a restarted follower sends nothing twice. An event the projector has not judged yet holds both
up: spans are derived from judged events only, in stream order.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from swarmlog.config import Settings
from swarmlog.control.client import Client
from swarmlog.control.eventstream import Event
from swarmlog.errors import ConfigError
from swarmlog.files import write_private_json
from swarmlog.observability.otlp import BATCH, OTLPTraces
from swarmlog.observability.spans import SpanBuilder, SpanRecord

__all__ = [
    "Exported",
    "FollowState",
    "export_traces",
    "follow_traces",
    "state_path",
]

log = logging.getLogger(__name__)

VERDICT_RETRY = 0.5
"""Seconds before asking again for the verdict on an event the projector had not judged."""
MAX_PENDING = 50_000
"""Spans a follower holds while its receiver refuses them; past it, it stops reading (the log
keeps the rest)."""
MAX_BACKOFF = 30.0
"""The longest wait between two tries to send to a receiver that refused."""


@dataclass(frozen=True)
class Exported:
    """What an export sent (``traces export --json`` prints these fields)."""

    spans: int
    """Spans sent."""
    traces: int
    """Traces they belong to."""
    workflows: int
    """Of those traces, the workflows' (the others are tasks submitted on their own)."""
    pending: int
    """Spans started and not complete yet: sent by a later export once they end."""
    position: int
    """The stream sequence of the last event read."""
    endpoint: str
    unjudged: int | None
    """The sequence of the first event left for a later export because the projector had not
    judged it yet (``None``: none was)."""


class FollowState:
    """Where a follower of one namespace has sent spans to one endpoint up to, in a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> tuple[int, int]:
        """``(sent, resume)``: every span complete by stream sequence ``sent`` was sent; the
        traces open there all start at ``resume`` or later. ``(0, 1)`` the first time."""
        try:
            state = json.loads(self.path.read_text())
            sent, resume = int(state["sent"]), int(state["resume"])
        except FileNotFoundError:
            return 0, 1
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"{self.path} is not a follower's state ({exc}); remove it to send every trace"
                " again from the start of the log",
                parameter="state",
            ) from None
        return sent, max(1, resume)

    def save(self, sent: int, resume: int, endpoint: str) -> None:
        write_private_json(self.path, {"sent": sent, "resume": resume, "endpoint": endpoint})


def state_path(settings: Settings, endpoint: str) -> Path:
    """The follower's state file for ``endpoint`` in ``settings``' data dir and namespace."""
    digest = hashlib.sha256(endpoint.encode()).hexdigest()[:12]
    return settings.data_dir / "traces" / f"{settings.namespace}-{digest}.json"


@contextlib.asynccontextmanager
async def _closing(stream: AsyncIterator[Event]) -> AsyncIterator[AsyncIterator[Event]]:
    """``stream``, closed when left (a reader of the log that stops early lets go of it)."""
    try:
        yield stream
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


async def export_traces(
    client: Client, sink: OTLPTraces, *, workflow_id: str | None = None
) -> Exported:
    """Send every complete span of the log (of ``workflow_id``'s trace only, when given)."""
    if workflow_id is not None and await client.workflow(workflow_id) is None:
        raise ConfigError(
            f"no workflow {workflow_id} in the projections; `swarmlog workflows` lists them",
            parameter="workflow_id",
        )
    builder = SpanBuilder(client.settings.namespace)
    batch: list[SpanRecord] = []
    keys: set[str] = set()
    sent = position = 0
    unjudged = None
    async with _closing(client.events(workflow_id=workflow_id)) as events:
        async for event in events:
            if event.verified is None:
                unjudged = event.seq  # a later export derives from here, once it is judged
                break
            batch.extend(builder.feed(event))
            position = event.seq
            if len(batch) >= BATCH:
                sent += await _send(sink, batch, keys)
                batch = []
    sent += await _send(sink, batch, keys)
    return Exported(
        spans=sent,
        traces=len(keys),
        workflows=sum(1 for k in keys if k.startswith("workflow:")),
        pending=builder.open_spans,
        position=position,
        endpoint=sink.endpoint,
        unjudged=unjudged,
    )


async def _send(sink: OTLPTraces, batch: list[SpanRecord], keys: set[str]) -> int:
    if batch:
        await asyncio.to_thread(sink.export, batch)  # the SDK's exporter blocks
        keys.update(s.trace_key for s in batch)
    return len(batch)


async def follow_traces(
    client: Client,
    sink: OTLPTraces,
    state: FollowState,
    *,
    stop: asyncio.Event,
    notice: Callable[[str], None],
    interval: float = 1.0,
) -> int:
    """Send each span as it completes, until ``stop``; the spans sent. Spans are sent in a
    batch at most ``interval`` seconds after they complete; a receiver that refuses them is
    tried again (the follower holds them, then stops reading, meanwhile)."""
    follower = _Follower(client, sink, state, notice, interval)
    running = asyncio.create_task(follower.run())
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (running, stopping):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stopping
        try:
            await running  # its error, if it failed
        except asyncio.CancelledError:
            pass
        finally:
            await follower.flush()  # what is complete goes before it stops, if it can
    return follower.sent


class _Follower:
    def __init__(
        self,
        client: Client,
        sink: OTLPTraces,
        state: FollowState,
        notice: Callable[[str], None],
        interval: float,
    ) -> None:
        self.client = client
        self.sink = sink
        self.state = state
        self.notice = notice
        self.interval = interval
        self.builder = SpanBuilder(client.settings.namespace)
        self.done, self.resume = state.load()
        """Spans complete by ``done`` were sent by an earlier run: not again."""
        self.fed = self.saved = self.done
        self.pending: list[SpanRecord] = []
        self.sent = 0
        self.failing = False
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=BATCH)

    async def run(self) -> None:
        self.notice(
            f"following the log from seq {self.resume} to {self.sink.endpoint}"
            + (f" (spans complete by seq {self.done} were sent before)" if self.done else "")
        )
        reader = asyncio.create_task(self._read(self.resume))
        clock = asyncio.get_running_loop().time
        delay = self.interval  # before sending what completed; longer while refused
        send_at: float | None = None
        try:
            while True:
                if reader.done():
                    reader.result()  # the reader's error ends the follower
                    return
                if send_at is None and (self.pending or self.fed > self.saved):
                    send_at = clock() + delay
                # Idle, it still looks up every interval: to see a reader that failed.
                wait = self.interval if send_at is None else max(0.0, send_at - clock())
                if len(self.pending) < MAX_PENDING:
                    with contextlib.suppress(TimeoutError):
                        self._feed(await asyncio.wait_for(self.queue.get(), wait))
                else:  # the receiver refuses and this is all it holds: the log keeps the rest
                    await asyncio.sleep(wait)
                due = send_at is not None and clock() >= send_at
                if due or len(self.pending) >= BATCH:
                    if await self.flush():
                        delay, send_at = self.interval, None
                    else:
                        delay = min(MAX_BACKOFF, delay * 2)
                        send_at = clock() + delay
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    def _feed(self, event: Event) -> None:
        self.pending.extend(s for s in self.builder.feed(event) if s.end_seq > self.done)
        self.fed = event.seq

    async def _read(self, start: int) -> None:
        """Judged events from ``start`` on, into the queue, for ever."""
        seq = start
        while True:
            stream = self.client.events(after_seq=seq - 1, follow=True)
            async with _closing(stream) as events:
                async for event in events:
                    if event.verified is None:
                        break  # not judged yet: read it again, with the projector's verdict
                    await self.queue.put(event)
                    seq = event.seq + 1
            await asyncio.sleep(VERDICT_RETRY)

    async def flush(self) -> bool:
        """Send what is complete and save the position; ``False`` if the receiver refused."""
        if self.pending:
            batch = self.pending
            try:
                await asyncio.to_thread(self.sink.export, batch)
            except ConfigError as exc:
                if not self.failing:
                    self.notice(f"{exc.message}; trying again")
                self.failing = True
                return False
            if self.failing:
                self.notice(f"sending to {self.sink.endpoint} again")
            self.failing = False
            self.pending = []
            self.sent += len(batch)
        if self.fed > self.saved:
            resume = self.builder.resume_seq() or self.fed + 1
            await asyncio.to_thread(self.state.save, self.fed, resume, self.sink.endpoint)
            self.saved = self.fed
        return True
