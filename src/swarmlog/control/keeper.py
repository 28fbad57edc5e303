"""The keeper: daemons that stay up. It starts again, with back-off, every kept daemon of the
data dir (projector, built-in roles, console, agent replicas) whose process exited without being
stopped (``agent stop`` and ``down`` remove the pidfile first, so what is stopped stays stopped).

``up --detach`` runs it as the daemon ``keeper``; the restarts are counted in each daemon's
pidfile (``agent ps`` shows them) and noted in the daemon's own log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from swarmlog.config import Settings
from swarmlog.control.daemons import daemon_alive, kept_daemons, restart_daemon
from swarmlog.control.restarts import next_streak, restart_delay
from swarmlog.control.system import command_argv
from swarmlog.errors import ServerError

__all__ = ["KEEPER", "keep", "keeper_argv"]

log = logging.getLogger(__name__)

KEEPER = "keeper"
"""The keeper's own daemon name (it is not kept: `up` starts it again)."""

SCAN = 0.25
"""Seconds between two looks at the daemons."""


def keeper_argv(settings: Settings) -> list[str]:
    """The keeper daemon's command line."""
    return command_argv(settings, "keeper", "run")


def _uptime(started_at: str, until: datetime) -> float:
    try:
        started = datetime.fromisoformat(started_at)
    except ValueError:
        return 0.0
    return max(0.0, (until - started).total_seconds())


async def keep(
    settings: Settings,
    stop: asyncio.Event,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Keep the data dir's daemons up until ``stop``; how many restarts it made."""
    dead: dict[str, tuple[int, float, datetime]] = {}  # name -> (pid, seen dead at, wall)
    restarts = 0
    while not stop.is_set():
        now = clock()
        for info in kept_daemons(settings.run_dir, settings.logs_dir):
            if info.held or daemon_alive(info):
                dead.pop(info.name, None)
                continue
            pid, since, wall = dead.setdefault(info.name, (info.pid, now, datetime.now(UTC)))
            if pid != info.pid:  # a new process died: a new exit
                dead[info.name] = (info.pid, now, datetime.now(UTC))
                continue
            streak = next_streak(info.streak, _uptime(info.started_at, wall))
            # Seen dead on two looks at least: a stop in flight has removed the pidfile by then.
            if now - since < max(SCAN, restart_delay(streak)):
                continue
            with contextlib.suppress(OSError), info.log_path.open("a") as out:
                out.write(
                    f"--- {datetime.now(UTC).isoformat(timespec='seconds')} exited without"
                    f" a stop (pid {info.pid}); started again by the keeper (restart"
                    f" {info.restarts + 1}, {streak} in a row)\n"
                )
            try:
                again = restart_daemon(settings.run_dir, info, streak)
            except ServerError as exc:
                log.warning("could not start %s again: %s", info.name, exc)
                continue
            dead.pop(info.name, None)
            if again.pid != info.pid:
                restarts += 1
                log.warning("%s exited; started again as pid %d", info.name, again.pid)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SCAN)
    return restarts
