"""Following the kill-switch flags from a running process (the shell side of
:mod:`swarmlog.agents.policy.killflags`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from swarmlog.agents.policy.killflags import KillFlag, killed_by
from swarmlog.bus.ports import FlagStore

__all__ = ["FlagWatch"]


class FlagWatch:
    """The current kill-switch flags, kept up to date by a background watch.

    ``on_change`` runs after every change (the runtime uses it to stop a handler at once).
    """

    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        self.flags: dict[str, bytes] = {}
        self.changed = asyncio.Event()
        self._on_change = on_change
        self._task: asyncio.Task[None] | None = None

    async def start(self, store: FlagStore) -> None:
        """Read the flags now (so a killed agent never starts), then follow them."""
        self.flags = await store.items()
        self._task = asyncio.create_task(self._follow(store))

    def stops(self, agent_id: str, role: str) -> KillFlag | None:
        """The kill switch that stops ``agent_id`` of ``role``, if one is pulled."""
        return killed_by(self.flags, agent_id, role)

    async def wait_changed(self, timeout: float) -> None:
        """Return at the next change, or after ``timeout`` seconds."""
        self.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.changed.wait(), timeout)

    async def _follow(self, store: FlagStore) -> None:
        async for key, value in store.watch():
            if value is None:
                self.flags.pop(key, None)
            else:
                self.flags[key] = value
            self.changed.set()
            if self._on_change is not None:
                self._on_change()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
