"""The console's live feed tells a page of a burst of events once at its start and once at its
end, never leaving the last change of a burst untold."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from swarmlog.console import live
from swarmlog.console.live import Change, Hub
from swarmlog.control.eventstream import Event


async def test_a_burst_is_told_at_its_start_and_after_its_last_event() -> None:
    hub = Hub(client=None)  # type: ignore[arg-type]  # announcing needs no client
    feed = hub.feed()
    assert await anext(feed) == ": connected\n\n"  # the page is listening from here on

    def change(seq: int) -> Change:
        return Change(seq=seq, type="result", workflow_id="wf", task_id=None, verified=True)

    told: list[int] = []

    async def listen() -> None:
        async for text in feed:
            body: dict[str, Any] = json.loads(text.split("data: ", 1)[1])
            told.append(body["seq"])
            if body["seq"] == 5:
                return

    listening = asyncio.create_task(listen())
    for seq in range(1, 6):
        hub._announce(change(seq))
    await asyncio.wait_for(listening, 5)
    assert told == [1, 5]  # the first at once, the rest folded into the last
    await feed.aclose()


async def _connected(last_told: int, drawn_at: int) -> tuple[Hub, AsyncIterator[str]]:
    """A hub that last told ``last_told`` and the feed of a page drawn at ``drawn_at``."""
    hub = Hub(client=None)  # type: ignore[arg-type]  # announcing needs no client
    hub.last_told = last_told
    feed = hub.feed(drawn_at=drawn_at)
    assert await anext(feed) == ": connected\n\n"
    return hub, feed


def _seq(told: str) -> int:
    seq: int = json.loads(told.split("data: ", 1)[1])["seq"]
    return seq


async def test_a_page_drawn_before_the_log_moved_is_redrawn_as_its_feed_connects() -> None:
    # The page was drawn at seq 3; an escalation (seq 4, 5) was folded before the browser
    # opened the feed, and then the log goes quiet: the page must hear of it at once.
    _, feed = await _connected(last_told=5, drawn_at=3)
    assert _seq(await asyncio.wait_for(anext(feed), 5)) == 5
    await feed.aclose()


async def test_a_page_drawn_at_the_feeds_position_hears_only_what_comes() -> None:
    hub, feed = await _connected(last_told=5, drawn_at=5)
    waiting = asyncio.ensure_future(anext(feed))
    await asyncio.sleep(0)  # one turn of the loop: the feed is waiting on its queue
    assert not waiting.done()
    hub._announce(Change(seq=6, type="result", workflow_id="wf", task_id=None, verified=True))
    assert _seq(await asyncio.wait_for(waiting, 5)) == 6
    await feed.aclose()


class _Lagging:
    """A client whose log and projector the test moves by hand: events are read as put in
    :attr:`log`, and :meth:`folded` answers once :attr:`position` reaches what is asked."""

    def __init__(self, last_seq: int, position: int) -> None:
        self.log: asyncio.Queue[Event] = asyncio.Queue()
        self.end = last_seq
        self.position = position
        self.moved = asyncio.Event()

    async def last_seq(self) -> int:
        return self.end

    async def events(self, *, after_seq: int, follow: bool) -> AsyncIterator[Event]:
        while True:
            yield await self.log.get()

    async def folded(self, seq: int, timeout: float) -> int | None:
        with contextlib.suppress(TimeoutError):
            while self.position < seq:
                self.moved.clear()
                await asyncio.wait_for(self.moved.wait(), timeout)
        return self.position

    def fold(self, position: int) -> None:
        self.position = position
        self.moved.set()


def _event(seq: int, verified: bool | None) -> Event:
    return Event(
        seq=seq, subject="s", type="result", id=None, sender=None, signer=None,
        workflow_id="wf", occurred_at=None, intact=True, problem=None, verified=verified,
        payload={"task_id": "t"},
    )  # fmt: skip


async def _told_text(feed: AsyncIterator[str]) -> str:
    return await asyncio.wait_for(anext(feed), 5)


async def _told(feed: AsyncIterator[str]) -> dict[str, Any]:
    told: dict[str, Any] = json.loads((await _told_text(feed)).split("data: ")[1])
    return told


async def test_a_change_told_before_the_projector_folded_it_is_told_again_once_it_has() -> None:
    client = _Lagging(last_seq=3, position=3)
    hub = Hub(client=client)  # type: ignore[arg-type]  # the part of a Client the hub uses
    await hub.start()
    feed = hub.feed()
    assert await anext(feed) == ": connected\n\n"
    await client.log.put(_event(4, verified=None))  # the follower gave up waiting for a verdict
    assert (await _told(feed))["verified"] is None
    assert hub.last_told == 3  # a page drawn now does not show seq 4: it must hear of it again
    drawn_at = hub.last_told
    client.fold(4)
    again = await _told(feed)
    assert (again["seq"], again["verified"]) == (4, True)
    assert hub.last_told == 4
    # And the page drawn in between, whose feed connects only now, is redrawn at once.
    late = hub.feed(drawn_at=drawn_at)
    assert await anext(late) == ": connected\n\n"
    assert _seq(await asyncio.wait_for(anext(late), 5)) == 4
    await late.aclose()
    await feed.aclose()
    await hub.stop()


async def test_a_console_that_starts_ahead_of_the_projector_tells_pages_once_it_caught_up() -> None:
    client = _Lagging(last_seq=9, position=5)
    hub = Hub(client=client)  # type: ignore[arg-type]
    await hub.start()
    assert hub.last_told < 9  # a page drawn now shows the projection at 5
    feed = hub.feed()
    assert await anext(feed) == ": connected\n\n"
    client.fold(9)
    assert _seq(await _told_text(feed)) == 9
    assert hub.last_told == 9
    await feed.aclose()
    await hub.stop()


async def test_a_page_that_falls_behind_misses_the_oldest_changes_never_the_latest() -> None:
    hub, feed = await _connected(last_told=0, drawn_at=0)
    last = live._QUEUE + 10  # more than the page's queue holds, told while it is not reading
    for seq in range(1, last + 1):
        hub._announce(Change(seq=seq, type="result", workflow_id="wf", task_id=None, verified=True))
    told = [_seq(await asyncio.wait_for(anext(feed), 5)) for _ in range(2)]
    assert told == [11, last]  # the oldest it held, then the burst folded into its last
    await feed.aclose()
