"""Where a replica's work comes from: its role's work queues, most urgent priority first.

Work for a role arrives as ``task_assignment`` events on one durable consumer per priority level,
shared by every replica of the role (and, for a swarm agent, offers on a consumer of its own).
:meth:`Intake.take` always looks at the most urgent level that may hold work, and sleeps on a
doorbell (a plain subscription to the role's work subjects) when idle, so new work is seen at
once without polling; every level is looked at again each sweep, since redeliveries and delayed
retries ring no bell.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from swarmlog.agents.api import Agent
from swarmlog.bus.ports import Delivery, Doorbell, EventLog, WorkQueue
from swarmlog.bus.queues import QueueSpec, agent_queues
from swarmlog.bus.subjects import offer_filter, role_work_filter, work_priority
from swarmlog.schemas.types import PRIORITIES

__all__ = ["OFFERS", "Intake"]

OFFERS = "task_offered"
"""The pseudo-level of swarm offers, looked at after every priority level."""
_RUNG_WAIT = 0.02
"""How long a fetch waits on a level that just rang (the ring can overtake the store)."""
_STORED_WAIT = 0.25
"""How long a fetch waits on a level the server says holds work (its answer is on the way)."""
_RING_GRACE = 1.0
"""How long a level that rang stays one to look at first though found empty: under load the ring
can overtake the store by more than a fetch waits, and a level dropped then is looked at again
only once the less urgent ones run dry (seen: a critical task waited behind eight low ones)."""


class Intake:
    """One replica's work queues and the doorbell that wakes it."""

    def __init__(
        self,
        agent: Agent,
        log: EventLog,
        namespace: str,
        *,
        ack_wait: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.agent = agent
        self._clock = clock
        self._rung_at: dict[str, float] = {}  # level -> when its doorbell last rang
        self.log = log
        self.namespace = namespace
        self.ack_wait = ack_wait
        self._queues: list[tuple[str, WorkQueue]] = []
        self._offers: WorkQueue | None = None
        self._bell: Doorbell | None = None
        # Levels that may hold work, looked at first; swarm agents also watch offers.
        self._levels = [*PRIORITIES, OFFERS] if agent.swarm else list(PRIORITIES)
        self._maybe: set[str] = set(self._levels)
        self.rang = False
        """Whether the last :meth:`take` heard the doorbell (work was published, whether or not
        this replica got it): the idle loop looks again soon after a ring."""

    async def open(self, agent_id: str) -> QueueSpec:
        """Open the doorbell and the work queues; returns the spec of the agent's inbox."""
        role = self.agent.role
        filters = [role_work_filter(self.namespace, role)]
        if self.agent.swarm:
            filters.append(offer_filter(self.namespace))
        self._bell = await self.log.doorbell(*filters)
        specs = agent_queues(
            self.namespace,
            role,
            agent_id,
            swarm=self.agent.swarm,
            max_attempts=self.agent.retry.max_attempts,
            ack_wait=self.ack_wait,
        )
        *work, inbox = specs
        for spec in work:
            queue = await self.log.work_queue(spec)
            if spec.new_only:
                self._offers = queue
            else:
                self._queues.append((work_priority(spec.filter_subject), queue))
        return inbox

    async def close(self) -> None:
        if self._bell is not None:
            await self._bell.close()
            self._bell = None
        for _, queue in self._queues:
            await queue.close()
        self._queues = []

    async def take(self, batch: int, wait: float) -> tuple[bool, list[Delivery]]:
        """Up to ``batch`` deliveries from the most urgent level holding work, waiting up to
        ``wait`` for a ring when none may; ``(True, offers)`` when they are swarm offers."""
        if self._bell is None:
            raise RuntimeError("call start() first")
        rung = {work_priority(s) for s in await self._bell.wait(0)}
        if not self._maybe and not rung:
            rung = {work_priority(s) for s in await self._bell.wait(wait)}
            if not rung:
                self._maybe = set(self._levels)
        self.rang = bool(rung)
        self._maybe |= rung
        self._rung_at |= dict.fromkeys(rung, self._clock())
        graced: list[str] = []  # found empty just after ringing: looked at again next time
        levels = [(p, q) for p, q in self._queues if p in self._maybe]
        if self._offers is not None and OFFERS in self._maybe:
            levels.append((OFFERS, self._offers))
        for at, (priority, queue) in enumerate(levels):
            deliveries = await queue.fetch(batch, timeout=_RUNG_WAIT)
            if not deliveries and at + 1 < len(levels) and await queue.waiting():
                # The fetch stopped waiting before a loaded server answered it: the work is
                # there, and it goes before any less urgent level (seen: a critical task
                # published behind a normal one was handled after it).
                deliveries = await queue.fetch(batch, timeout=_STORED_WAIT)
            if deliveries:
                # Less urgent work: the graced levels come first next time.
                return priority == OFFERS, deliveries
            if priority == OFFERS:
                self._maybe.discard(OFFERS)
                continue
            rang_at = self._rung_at.get(priority)
            if rang_at is not None and self._clock() - rang_at < _RING_GRACE:
                graced.append(priority)
            else:
                self._maybe.discard(priority)
                self._rung_at.pop(priority, None)
        # Nothing else to take: no need to keep looking at them (the sweep after an idle wait
        # finds what they rang for), and an idle replica must not spin on them.
        self._maybe.difference_update(graced)
        return False, []
