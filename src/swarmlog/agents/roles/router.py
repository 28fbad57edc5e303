"""The router, a built-in role: turns routed task offers into assignments.

It consumes ``task_offered`` events (``mode="routed"``) from one durable consumer shared by every
router replica, picks a role with :func:`~swarmlog.agents.policy.routing.pick` over a snapshot of
the agents (from the projection, with their liveness and load from the presence bucket, refreshed
every second), their queues' lag and its own recent assignments, and publishes a ``task_assignment``
to that role's queue at the offer's priority.

A first delivery's assignment goes out in a batch with the others (the consumer hands an offer
to one router at a time); a redelivered offer's is conditional on the task having no assignment
yet (optimistic concurrency on ``swarmlog.<ns>.*.work.*.*.<task_id>``), so an offer redelivered
after a crash is never assigned twice. With no live agent able to take it, the offer is retried
every ``retry_delay`` seconds and escalated after ``give_up_after`` tries.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from swarmlog.agents.policy import routing
from swarmlog.agents.policy.breakers import Breaker, BreakerPolicy, record, send_through
from swarmlog.agents.policy.liveness import with_presence
from swarmlog.agents.policy.routing import AgentView, Candidate, circuits, role_candidates
from swarmlog.agents.presence import PresenceReader, RolePresence
from swarmlog.agents.publisher import Publisher, Speaker
from swarmlog.bus.ports import Delivery, Doorbell, EventLog, StoredMessage, WorkQueue
from swarmlog.bus.queues import GIVE_UP_AFTER, router_queue
from swarmlog.bus.subjects import assignment_filter, offer_filter
from swarmlog.errors import ConcurrencyConflict, SwarmlogError
from swarmlog.projections.verify import check
from swarmlog.schemas.payloads import (
    CircuitClosed,
    CircuitHalfOpened,
    CircuitOpened,
    Payload,
    TaskAssignment,
    TaskEscalated,
    TaskFailed,
    TaskOffered,
)
from swarmlog.schemas.presence import PRESENCE_EVERY, STALE_AFTER, Presence
from swarmlog.schemas.signing import OPERATOR_ID, ROUTER_ROLE
from swarmlog.schemas.types import PRIORITIES

__all__ = [
    "GIVE_UP_AFTER",
    "ROLE",
    "BreakerOutcome",
    "BreakerOutcomeSource",
    "Router",
    "RoutingOutcome",
]

log = logging.getLogger(__name__)

ROLE = ROUTER_ROLE

_CLOSED = Breaker()
_MAX_FORGED = 8
"""Forged assignments of one offer a redelivery steps over before it waits and tries again."""
_REMEMBERED = 4096
"""Tasks a router remembers having assigned (see ``Router._routed``)."""

AgentSource = Callable[[], Awaitable[list[AgentView]]]
"""Where the router reads the agents from (the projection, in production)."""

BreakerOutcome = tuple[int, str, bool | None, str | None]
"""``(seq, role, ok, dependency)``: a result (``True``), an error naming the failed dependency
(``False``), or a permanent error (``None``: the work's own fault, which counts for nothing)."""
BreakerOutcomeSource = Callable[[int | None], Awaitable[tuple[list[BreakerOutcome], int]]]
"""Task outcomes after a stream sequence, ``([outcome, ...], last seq read)``; with ``None``,
no outcomes, only where the stream is now (a router does not judge the past)."""


@dataclass(frozen=True)
class RoutingOutcome:
    task_id: str
    status: str
    """``assigned``, ``already_assigned``, ``waiting`` (no agent yet), ``escalated``,
    ``timed_out``, ``not_routed`` (a swarm-mode offer) or ``rejected``."""
    role: str = ""


@dataclass(eq=False, repr=False)  # compared and shown as an object, as before
class Router(Speaker):
    """One router replica."""

    log: EventLog
    publisher: Publisher
    agents: AgentSource
    _: KW_ONLY
    refresh: float = 1.0
    """Seconds a snapshot of the agents is used before it is read again."""
    stale_after: float = STALE_AFTER
    """Seconds after its last presence at which a replica no longer counts as live."""
    retry_delay: float = 1.0
    give_up_after: int = GIVE_UP_AFTER
    heartbeat: float = PRESENCE_EVERY
    clock: Callable[[], int] = time.time_ns
    outcomes: BreakerOutcomeSource | None = None
    breaker_policy: BreakerPolicy = field(default_factory=BreakerPolicy)
    breakers: dict[str, Breaker] = field(default_factory=dict, init=False)
    """Per role, from the outcomes of its work (empty without an outcome source)."""
    _outcomes_after: int | None = field(default=None, init=False)
    _queue: WorkQueue | None = field(default=None, init=False)
    # Tasks this router assigned lately: a server that lost its consumers' state in a crash
    # hands their offers out again as first deliveries, and those must go the conditional way.
    _routed: OrderedDict[str, None] = field(default_factory=OrderedDict, init=False)
    _bell: Doorbell | None = field(default=None, init=False)
    _presence: RolePresence = field(init=False)
    _reader: PresenceReader = field(init=False)
    _candidates: list[Candidate] = field(default_factory=list, init=False)
    rang: bool = field(default=False, init=False)
    """Whether the last :meth:`step` that found nothing heard an offer published meanwhile."""
    _refreshed_at: int | None = field(default=None, init=False)
    _snapshot: tuple[list[AgentView], Counter[str]] = field(
        default_factory=lambda: ([], Counter()), init=False
    )
    _assigned: Counter[str] = field(default_factory=Counter, init=False)

    def __post_init__(self) -> None:
        self._presence = RolePresence(
            self.log, self.publisher, ROLE, heartbeat=self.heartbeat, clock=self.clock
        )
        self._reader = PresenceReader(self.log, self.namespace, clock=self.clock)

    async def start(self) -> None:
        await self._presence.start()
        self._bell = await self.log.doorbell(offer_filter(self.namespace))
        self._queue = await self.log.work_queue(
            router_queue(self.namespace, give_up_after=self.give_up_after)
        )

    async def close(self) -> None:
        await self._presence.stop()
        if self._bell is not None:
            await self._bell.close()
        if self._queue is not None:
            await self._queue.close()

    async def step(self, wait: float = 0.25) -> list[RoutingOutcome]:
        """Route what is waiting (up to a batch); an empty list when nothing came."""
        if self._queue is None or self._bell is None:
            raise RuntimeError("call start() first")
        if self._presence.killed:
            await self._presence.watch.wait_changed(wait)
            return []
        deliveries = await self._queue.fetch(64, timeout=0.02)
        if not deliveries:
            if self.outcomes is not None:
                await self.candidates()  # breakers follow outcomes while no offer comes too
            # Asleep until an offer is published (or a sweep); a ring means look again soon.
            self.rang = bool(await self._bell.wait(wait))
            return []
        return await self.handle_batch(deliveries)

    async def candidates(self) -> list[Candidate]:
        """The roles work can go to, from a snapshot at most ``refresh`` seconds old."""
        now = self.clock()
        if self._refreshed_at is None or now - self._refreshed_at >= self.refresh * 1e9:
            flags = self._presence.watch  # a kill flag beats what the projection says
            views = [a for a in await self.agents() if flags.stops(a.agent_id, a.role) is None]
            views = with_presence(views, await self._presence_of(views))
            pending: Counter[str] = Counter()
            # The queue depth of each role work may go to (a request per role and priority,
            # every second: the built-in roles have no queue to ask about).
            for role in {a.role for a in views if routing.takes_work(a)}:
                for priority in PRIORITIES:
                    pending[role] += await self.log.pending(f"{self.namespace}-{role}-{priority}")
            self._assigned.clear()  # the lag read just now includes them
            self._refreshed_at = now
            self._snapshot = (views, pending)
            await self._judge(now)
        views, pending = self._snapshot
        candidates = role_candidates(
            views,
            now=now,
            stale_after=int(self.stale_after * 1e9),
            pending=pending,
            assigned=self._assigned,
        )
        return routing.through_circuits(
            candidates, self.breakers, now=now, policy=self.breaker_policy
        )

    async def _presence_of(self, views: list[AgentView]) -> dict[str, Presence]:
        """Who is live and how loaded now; nothing when the bucket cannot be read (then only
        what the log says counts: registrations within ``stale_after``)."""
        try:
            return await self._reader.read(views)
        except Exception as exc:
            log.warning("presence unreadable: %s", exc)
            return {}

    def _breaker(self, circuit: str) -> Breaker:
        return self.breakers.get(circuit, _CLOSED)

    async def _judge(self, now: int) -> None:
        """Feed the outcomes of work since the last look to the breakers: an error naming a
        dependency counts against that dependency, any other error against the role, and a
        result for the role and every dependency it declares; a permanent error (bad input)
        counts against nothing."""
        if self.outcomes is None:
            return
        found, self._outcomes_after = await self.outcomes(self._outcomes_after)
        declared = {v.role: v.dependencies for v in self._snapshot[0]}
        for _, role, ok, dependency in found:
            judged = routing.judged_circuits(role, ok, dependency, declared.get(role, frozenset()))
            for circuit in judged:
                before = self._breaker(circuit)
                after, why = record(before, ok, now=now, policy=self.breaker_policy)
                await self._moved(circuit, before, after, why)

    async def _moved(self, circuit: str, before: Breaker, after: Breaker, why: str) -> None:
        self.breakers[circuit] = after
        if after.state == before.state:
            return
        log.warning("circuit %s %s: %s", circuit, after.state, why)
        change: Payload
        if after.state == "open":
            change = CircuitOpened(circuit=circuit, reason=why)
        elif after.state == "half_open":
            change = CircuitHalfOpened(circuit=circuit)
        else:
            change = CircuitClosed(circuit=circuit, reason=why)
        await self.publisher.publish(change)

    async def handle(self, delivery: Delivery) -> RoutingOutcome:
        (outcome,) = await self.handle_batch([delivery])
        return outcome

    async def handle_batch(self, deliveries: Sequence[Delivery]) -> list[RoutingOutcome]:
        """Route a batch of offers: decide each, then publish the assignments together.

        A first delivery cannot have been routed yet (the consumer hands an offer to one router
        at a time), so its assignment goes in the batch; a redelivered offer may have been, so
        its assignment is published alone, conditional on the task having none.
        """
        outcomes: dict[int, RoutingOutcome] = {}
        try:
            await self._route_batch(deliveries, outcomes)
        except SwarmlogError:
            # The projection or the server did not answer: the offers not settled yet come
            # back after the retry delay, not after the queue's whole ack wait. (One whose
            # assignment was stored meanwhile is redelivered, so it is assigned conditionally:
            # at most once.)
            for i, delivery in enumerate(deliveries):
                if i not in outcomes:
                    with contextlib.suppress(SwarmlogError):
                        await delivery.nak(self.retry_delay)
            raise
        return [outcomes[i] for i in range(len(deliveries))]

    async def _route_batch(
        self, deliveries: Sequence[Delivery], outcomes: dict[int, RoutingOutcome]
    ) -> None:
        batch: list[tuple[int, Delivery, TaskAssignment, dict[str, Any]]] = []
        for i, delivery in enumerate(deliveries):
            decided = await self._decide(delivery)
            if isinstance(decided, RoutingOutcome):
                outcomes[i] = decided
                continue
            assignment, wf = decided
            if delivery.num_delivered > 1 or assignment.task_id in self._routed:
                outcomes[i] = await self._assign_once(delivery, assignment, wf)
            else:
                batch.append((i, delivery, assignment, wf))
        if batch:
            await self.publisher.publish_batch([(a, wf) for _, _, a, wf in batch])
            for i, delivery, assignment, _ in batch:
                self._routed[assignment.task_id] = None
                while len(self._routed) > _REMEMBERED:
                    self._routed.popitem(last=False)
                await delivery.ack()
                outcomes[i] = RoutingOutcome(assignment.task_id, "assigned", assignment.role)

    async def _decide(
        self, delivery: Delivery
    ) -> RoutingOutcome | tuple[TaskAssignment, dict[str, Any]]:
        """An assignment to publish, or the outcome of an offer settled here."""
        checked = check(delivery.message, self.namespace)
        envelope = checked.envelope
        if checked.rejection is not None or envelope is None:
            await delivery.term()  # never act on an event whose signature does not check out
            return RoutingOutcome("", "rejected")
        offer = envelope.payload
        if not isinstance(offer, TaskOffered) or offer.mode != "routed":
            await delivery.ack()
            return RoutingOutcome(getattr(offer, "task_id", ""), "not_routed")
        wf: dict[str, Any] = {
            "workflow_id": envelope.workflow_id,
            "correlation_id": envelope.correlation_id,
            "causation_id": envelope.id,
        }
        if offer.deadline_at is not None and self.clock() >= offer.deadline_at:
            await self.publisher.publish(
                TaskFailed(task_id=offer.task_id, reason="timed out before routing", final=True),
                **wf,
            )
            await delivery.ack()
            return RoutingOutcome(offer.task_id, "timed_out")
        chosen = routing.pick(offer, await self.candidates())
        if chosen is None:
            if delivery.num_delivered < self.give_up_after:
                await delivery.nak(self.retry_delay)  # an agent may register meanwhile
                return RoutingOutcome(offer.task_id, "waiting")
            reason = f"no live agent has capability {offer.capability!r}"
            await self.publisher.publish(TaskEscalated(task_id=offer.task_id, reason=reason), **wf)
            await delivery.term()
            return RoutingOutcome(offer.task_id, "escalated")
        self._assigned[chosen.role] += 1  # the rest of the batch sees this role busier
        for circuit in circuits(chosen.role, chosen.dependencies):
            breaker = self._breaker(circuit)
            if breaker.state != "closed":  # a probe: the breaker counts it
                admitted, why = send_through(breaker, now=self.clock(), policy=self.breaker_policy)
                await self._moved(circuit, breaker, admitted, why)
        assignment = TaskAssignment(
            task_id=offer.task_id,
            role=chosen.role,
            capability=offer.capability,
            priority=offer.priority,
            input=offer.input,
            deadline_at=offer.deadline_at,
            parent_task_id=offer.parent_task_id,
            internal_only=offer.internal_only,
        )
        return assignment, wf

    async def _assign_once(
        self, delivery: Delivery, assignment: TaskAssignment, wf: dict[str, Any]
    ) -> RoutingOutcome:
        task_filter = assignment_filter(self.namespace, assignment.task_id)
        expected = 0
        for _ in range(_MAX_FORGED):
            try:
                await self.publisher.publish(assignment, expect=(task_filter, expected), **wf)
            except ConcurrencyConflict:
                last = await self.log.last_message(task_filter)
                if last is None or self._by_an_assigner(last):
                    await delivery.ack()  # routed already (before a crash, or by another router)
                    return RoutingOutcome(assignment.task_id, "already_assigned")
                # Another agent put an assignment of this task under its own prefix: no reader
                # applies it (only a router assigns an offer), so it routes nothing.
                expected = last.seq
                continue
            await delivery.ack()
            return RoutingOutcome(assignment.task_id, "assigned", assignment.role)
        await delivery.nak(self.retry_delay)  # flooded with forged assignments: try again later
        return RoutingOutcome(assignment.task_id, "waiting")

    def _by_an_assigner(self, message: StoredMessage) -> bool:
        """Whether a stored assignment is one readers apply: from the operator or a router.

        A message that passes ``check`` is stored under its sender's own prefix, where only
        that sender's login may publish, so its sender is who it says; the projection (the
        snapshot) says which agents are routers.
        """
        checked = check(message, self.namespace)
        envelope = checked.envelope
        if checked.rejection is not None or envelope is None:
            return False
        if envelope.sender in (OPERATOR_ID, self.agent_id):
            return True
        routers = {a.agent_id for a in self._snapshot[0] if a.role == ROUTER_ROLE}
        return envelope.sender in routers
