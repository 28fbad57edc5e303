"""Signs of life on the log: a replica's periodic heartbeat (its load), and the keep-alive of
long work (in-progress acks restart the deliveries' ack-wait timers, and ``task_heartbeat``
events say the tasks are still moving)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from swarmlog.agents.jobs import Job
from swarmlog.agents.publisher import Publisher
from swarmlog.schemas.payloads import AgentHeartbeat, TaskHeartbeat

__all__ = ["heartbeats", "keep_alive"]

log = logging.getLogger(__name__)


async def heartbeats(
    publisher: Publisher,
    period: float,
    *,
    load: Callable[[], int],
    quiet: Callable[[], bool],
    closing: Callable[[], bool],
) -> None:
    """Every ``period`` seconds, an ``agent_heartbeat`` with the replica's ``load`` (tasks in
    hand), except while ``quiet`` (killed); ends when ``closing``."""
    agent_id = publisher.identity.agent_id
    while not closing():
        await asyncio.sleep(period)  # a period, not a synchronisation
        if not quiet():
            try:
                await publisher.publish(AgentHeartbeat(agent_id=agent_id, in_flight=load()))
            except Exception as exc:  # a missed heartbeat is not worth dying for
                log.warning("heartbeat failed: %s", exc)


async def keep_alive(publisher: Publisher, jobs: Sequence[Job], ack_wait: float) -> None:
    """Until cancelled: restart the jobs' ack-wait timers well before they run out, and say so
    on the log."""
    period = max(ack_wait / 3, 0.05)
    while True:
        await asyncio.sleep(period)
        for job in jobs:
            await job.delivery.in_progress()
        await publisher.publish_batch([(TaskHeartbeat(task_id=j.task.task_id), j.wf) for j in jobs])
