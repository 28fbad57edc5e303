"""The console's live feed: one follower of the log, fanned out to every open page.

The console follows the stream once (:meth:`Client.events` with ``follow``), and each event,
once the projector has folded it (the follower waits for its verdict), is announced to every
page as a server-sent event ``changed``. A page then fetches its own view again, so what it shows
is always the projection's, never a copy kept in the browser. A slow page misses announcements
(its queue is bounded), never holds the follower up, and never the latest: the oldest it has not
heard go (a page that missed the last change of a run would show it unfinished for good).

A page is drawn before its feed connects: what the log did in between would be told to no one
(a workflow that escalates in that moment, then waits on a human, would look still running
for good). So a page carries the last change told as it was when the page was asked for
(:attr:`Hub.last_told`, read before the page's queries), and its feed, connecting with it,
redraws the page at once when a change was told since (a heartbeat is not one).

A projector that lags more than the follower waits for a verdict (two seconds) has not folded
the event it is told of: pages redrawn then show the projection without it. Such a change is
told again once the projector has folded it, and only then counts in :attr:`Hub.last_told`;
so does the stream's end when the console starts ahead of the projector.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from swarmlog.control.client import Client, Event
from swarmlog.errors import SwarmlogError

__all__ = ["Change", "Hub"]

log = logging.getLogger(__name__)

_QUEUE = 64
"""Announcements a page may fall behind by before it misses some (the oldest)."""

_QUIET = frozenset({"agent_heartbeat", "task_heartbeat"})
"""Events no page needs to be redrawn for: liveness beats, each second per agent."""

REDRAW_EVERY = 0.4
"""Seconds between two announcements to one page: a burst of events is one redraw."""
KEEPALIVE = 15.0
"""Seconds between comments on an idle feed, so proxies and browsers keep it open."""
FOLD_WAIT = 10.0
"""Seconds one ask of the projector waits for it to fold a change told before it had (then it
is asked again: a lagging projector is waited for as long as it takes)."""


@dataclass(frozen=True)
class Change:
    """What a page hears of one event."""

    seq: int
    type: str | None
    workflow_id: str | None
    task_id: str | None
    verified: bool | None

    @classmethod
    def of(cls, event: Event) -> Change:
        payload = event.payload if isinstance(event.payload, dict) else {}
        task_id = payload.get("task_id")
        return cls(
            seq=event.seq,
            type=event.type,
            workflow_id=event.workflow_id,
            task_id=task_id if isinstance(task_id, str) else None,
            verified=event.verified,
        )

    def sse(self) -> str:
        """The server-sent event's text."""
        body = json.dumps(
            {
                "seq": self.seq,
                "type": self.type,
                "workflow_id": self.workflow_id,
                "task_id": self.task_id,
                "verified": self.verified,
            }
        )
        return f"event: changed\ndata: {body}\n\n"


@dataclass
class Hub:
    """Follows the log from its end and announces each event to the pages listening."""

    client: Client
    _pages: set[asyncio.Queue[Change]] = field(default_factory=set)
    _task: asyncio.Task[None] | None = None
    _stopping: bool = False
    last_seq: int = 0
    last_told: int = 0
    """The seq of the last change told that the projection holds (heartbeats are not told)."""
    _unfolded: int = 0
    """The seq of the last change told before the projector had folded it."""
    _watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start following from the stream's current end (told again once it is folded: a page
        drawn now may not show it yet)."""
        self.last_seq = await self.client.last_seq()
        with contextlib.suppress(SwarmlogError):  # no answer: the watch below asks again
            if (await self.client.folded(self.last_seq, 0.0) or 0) >= self.last_seq:
                self.last_told = self.last_seq
        self._task = asyncio.create_task(self._follow(), name="console-follower")
        self._told_unfolded(self.last_seq)

    async def stop(self) -> None:
        self._stopping = True
        for task in (self._task, self._watch):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    # A read that turns the cancellation into a bus error ends at the next turn.
                    await asyncio.wait_for(task, 5.0)

    async def _follow(self) -> None:
        while not self._stopping:
            try:
                async for event in self.client.events(after_seq=self.last_seq, follow=True):
                    self.last_seq = event.seq
                    if event.type not in _QUIET:
                        self._announce(Change.of(event))
            except SwarmlogError as exc:  # the server went away: follow again when it is back
                if self._stopping:
                    return
                log.warning("the console's follower stopped (%s); following again", exc)
                await asyncio.sleep(1.0)  # a back-off before reconnecting, not a synchronisation

    def _announce(self, change: Change) -> None:
        if change.verified is None:
            self._told_unfolded(change.seq)
        else:
            self.last_told = max(self.last_told, change.seq)
        for page in self._pages:
            if page.full():  # a slow page misses the oldest it has not heard: see module
                page.get_nowait()
            page.put_nowait(change)

    def _told_unfolded(self, seq: int) -> None:
        """``seq`` was told (or is where the console began) before the projector folded it: tell
        it again once it has."""
        self._unfolded = max(self._unfolded, seq)
        if self._unfolded > self.last_told and (self._watch is None or self._watch.done()):
            self._watch = asyncio.create_task(self._until_folded(), name="console-folds")

    async def _until_folded(self) -> None:
        while not self._stopping and self._unfolded > self.last_told:
            seq = self._unfolded
            try:
                position = await self.client.folded(seq, FOLD_WAIT)
            except SwarmlogError as exc:
                log.debug("no projector position for the console (%s); asking again", exc)
                position = None
            if position is None:  # no projector answers (yet)
                await asyncio.sleep(1.0)  # a back-off before asking again, not a synchronisation
            elif position >= seq and seq > self.last_told:
                self._announce(Change(seq, None, None, None, True))

    async def feed(self, drawn_at: int | None = None) -> AsyncIterator[str]:
        """One page's feed of server-sent events, until the page goes away.

        ``drawn_at`` is the :attr:`last_told` the page was drawn at; when a change was told
        since, the first thing told is that change, so the page catches up (``None``: a feed
        that is not a page's, told only what comes).
        """
        page: asyncio.Queue[Change] = asyncio.Queue(_QUEUE)
        self._pages.add(page)
        try:
            yield ": connected\n\n"
            if drawn_at is not None and drawn_at < self.last_told:
                # Registered before this check: an event from here on is queued, and one
                # before it is in last_told, so nothing falls between the two.
                with contextlib.suppress(asyncio.QueueFull):  # full: a redraw is coming
                    page.put_nowait(Change(self.last_told, None, None, None, None))
            while True:
                try:
                    change = await asyncio.wait_for(page.get(), KEEPALIVE)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                yield change.sse()
                # What comes in the next moment is told once, at its end: a page redraws at
                # most this often, and always after the last change of a burst. (A throttle in
                # the page would drop that last one: it discards what comes within its window.)
                await asyncio.sleep(REDRAW_EVERY)  # a rate, not a synchronisation
                latest = None
                while not page.empty():
                    latest = page.get_nowait()
                if latest is not None:
                    yield latest.sse()
        finally:
            self._pages.discard(page)
