"""Signs of life, off the log: a replica's periodic presence (its load and the tasks in hand, put
in the presence bucket by its :class:`~swarmlog.agents.presence.Beacon`), and the keep-alive of
long work (in-progress acks restart the deliveries' ack-wait timers).

Neither writes an event: an idle replica adds nothing to the log, and a long task only what it
does (its model and tool calls, the progress its handler reports with ``ctx.progress``). That
the task is still in hand is in its replica's presence, which is what the watchdog's stall
detection reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Sequence

from swarmlog.agents.jobs import Job
from swarmlog.agents.presence import Beacon

__all__ = ["keep_alive", "presence_beats"]

log = logging.getLogger(__name__)


async def presence_beats(
    beacon: Beacon,
    period: float,
    *,
    tasks: Callable[[], Collection[str]],
    capacity: int,
    quiet: Callable[[], bool],
    closing: Callable[[], bool],
    changed: asyncio.Event | None = None,
) -> None:
    """Every ``period`` seconds, and at once when ``changed`` is set (the tasks in hand changed:
    the router routes by the load a replica's presence says, so a replica that just finished
    must not look full for a whole period), put the replica's presence with the ``tasks`` in
    hand, except while ``quiet`` (killed: it is not to be taken for live); ends when
    ``closing``. Changes that come while a put is under way are put together by the next."""
    while not closing():
        if changed is None:
            await asyncio.sleep(period)  # a period, not a synchronisation
        else:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(period):
                    await changed.wait()
            changed.clear()
        if not quiet():
            held = tasks()
            await beacon.put(load=len(held), capacity=capacity, tasks=held)


async def keep_alive(jobs: Sequence[Job], ack_wait: float) -> None:
    """Until cancelled: restart the jobs' ack-wait timers well before they run out."""
    period = max(ack_wait / 3, 0.05)
    while True:
        await asyncio.sleep(period)
        for job in jobs:
            await job.delivery.in_progress()
