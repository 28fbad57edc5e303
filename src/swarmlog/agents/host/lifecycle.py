"""A daemon's life as its starter sees it: the line it writes once it takes work, and the
signals that stop it. Apart from :mod:`~swarmlog.agents.host.entrypoints` so that what starts,
waits for or stops a daemon (``agent start``, ``up``) does not import the runtime it runs."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

__all__ = ["announce_ready", "ready_line", "stop_on_signals"]


def ready_line(agent_id: str) -> str:
    """The line a replica writes to its output once it takes work (`agent start` waits for it)."""
    return f"swarmlog: {agent_id} ready"


def announce_ready(agent_id: str) -> None:
    """Say on stderr (the daemon's log) that ``agent_id`` is up and its queues are open."""
    print(ready_line(agent_id), file=sys.stderr, flush=True)


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (graceful stop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return stop
