"""The console's live feed tells a page of a burst of events once at its start and once at its
end, never leaving the last change of a burst untold."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from swarmlog.console.live import Change, Hub


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
