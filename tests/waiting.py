"""Waiting for a condition with a deadline: the only synchronisation tests use."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

__all__ = ["eventually", "until", "wait_until"]


async def until(
    condition: Callable[[], object], timeout: float = 10.0, poll: float = 0.005
) -> None:
    """Return once ``condition()`` is true; fail the test after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(poll)


async def eventually(
    condition: Callable[[], Awaitable[object]], timeout: float = 10.0, poll: float = 0.005
) -> None:
    """Return once ``await condition()`` is true; fail the test after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(poll)


def wait_until(
    condition: Callable[[], object],
    timeout: float = 10.0,
    poll: float = 0.02,
    max_poll: float = 0.2,
) -> None:
    """The blocking form of :func:`until`, for tests that drive subprocesses.

    The pause between looks grows from ``poll`` to ``max_poll``: a look here usually asks a
    running system (a query), and a test waiting many seconds must not spend the CPU the system
    under test needs to get there.
    """
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(poll)
        poll = min(max_poll, poll * 1.5)
