"""What every built-in role does besides its job: follow the kill switches, announce itself,
and heartbeat while it works."""

from __future__ import annotations

import time
from collections.abc import Callable

from swarmlog.agents.flagwatch import FlagWatch
from swarmlog.agents.publisher import Publisher
from swarmlog.bus.ports import EventLog
from swarmlog.schemas.payloads import AgentHeartbeat, AgentRegistered

__all__ = ["Presence"]


class Presence:
    """A built-in role's registration, heartbeat and kill-switch state."""

    def __init__(
        self,
        publisher: Publisher,
        role: str,
        *,
        heartbeat: float = 5.0,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.publisher = publisher
        self.role = role
        self.heartbeat = heartbeat
        self.watch = FlagWatch()
        self._clock = clock
        self._last_heartbeat = 0

    @property
    def agent_id(self) -> str:
        return self.publisher.identity.agent_id

    @property
    def killed(self) -> bool:
        return self.watch.stops(self.agent_id, self.role) is not None

    async def start(self, log: EventLog) -> None:
        """Read the kill switches; announce this replica unless it is killed."""
        await self.watch.start(await log.flags())
        if not self.killed:
            await self.publisher.publish(
                AgentRegistered(agent_id=self.agent_id, role=self.role, replica=self.agent_id)
            )
        self._last_heartbeat = self._clock()

    async def beat(self) -> None:
        """Heartbeat if one is due (call it from the role's loop)."""
        now = self._clock()
        if now - self._last_heartbeat >= self.heartbeat * 1e9:
            self._last_heartbeat = now
            await self.publisher.publish(AgentHeartbeat(agent_id=self.agent_id))

    async def stop(self) -> None:
        await self.watch.stop()
