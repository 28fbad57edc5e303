"""What every built-in role does besides its job: follow the kill switches, announce itself,
and heartbeat while it works."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field

from swarmlog.agents.flagwatch import FlagWatch
from swarmlog.agents.publisher import Publisher, Speaker
from swarmlog.bus.ports import EventLog
from swarmlog.schemas.payloads import AgentHeartbeat, AgentRegistered

__all__ = ["Presence"]


@dataclass(eq=False, repr=False)  # compared and shown as an object, as before
class Presence(Speaker):
    """A built-in role's registration, heartbeat and kill-switch state."""

    publisher: Publisher
    role: str
    _: KW_ONLY
    heartbeat: float = 5.0
    """Seconds between heartbeats."""
    clock: Callable[[], int] = time.time_ns
    watch: FlagWatch = field(default_factory=FlagWatch, init=False)
    _last_heartbeat: int = field(default=0, init=False)

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
        self._last_heartbeat = self.clock()

    async def beat(self) -> None:
        """Heartbeat if one is due (call it from the role's loop)."""
        now = self.clock()
        if now - self._last_heartbeat >= self.heartbeat * 1e9:
            self._last_heartbeat = now
            await self.publisher.publish(AgentHeartbeat(agent_id=self.agent_id))

    async def stop(self) -> None:
        await self.watch.stop()
