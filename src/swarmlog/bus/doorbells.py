"""What both adapters' doorbells share."""

from __future__ import annotations

import asyncio

__all__ = ["drain_queue"]


async def drain_queue(queue: asyncio.Queue[str], timeout: float) -> list[str]:
    """Everything in ``queue``, waiting up to ``timeout`` for the first item."""
    out: list[str] = []
    if queue.empty() and timeout > 0:
        try:
            out.append(await asyncio.wait_for(queue.get(), timeout))
        except TimeoutError:
            return out
    while not queue.empty():
        out.append(queue.get_nowait())
    return out
