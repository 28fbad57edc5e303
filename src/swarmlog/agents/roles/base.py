"""What the conductor and the watchdog share: a replica that acts on what the projection shows."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import ClassVar

from swarmlog.agents.presence import RolePresence
from swarmlog.agents.publisher import Publisher, Speaker
from swarmlog.bus.ports import EventLog
from swarmlog.projections.client import Query, WaitFor
from swarmlog.schemas.presence import PRESENCE_EVERY

__all__ = ["ProjectionRole"]


@dataclass(eq=False)
class ProjectionRole(Speaker):
    """One replica of a built-in role that reads the projection (``read``), waits for it to
    catch up with the stream (``wait_for``), publishes as its own identity, and keeps its
    presence: registration, presence put every ``heartbeat`` seconds, its kill switches, and
    ``agent_stopped`` when it closes."""

    role: ClassVar[str]
    log: EventLog
    publisher: Publisher
    read: Query
    wait_for: WaitFor
    _: KW_ONLY
    heartbeat: float = PRESENCE_EVERY
    clock: Callable[[], int] = time.time_ns
    _presence: RolePresence = field(init=False)

    def __post_init__(self) -> None:
        self._presence = RolePresence(
            self.log, self.publisher, self.role, heartbeat=self.heartbeat, clock=self.clock
        )

    async def start(self) -> None:
        await self._presence.start()

    async def close(self) -> None:
        await self._presence.stop()

    async def _catch_up(self) -> None:
        """Wait until the projection has folded the stream up to its end (so a decision sees
        everything on the log until now)."""
        await self.wait_for(await self.log.last_seq())
