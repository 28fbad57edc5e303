# Over 400 lines: the simulation's scheduler and every actor it plays, one seeded world.
"""The deterministic swarm simulation (``swarmlog sim``): the pure core under injected faults.

A seeded scheduler plays a small swarm over the in-memory bus with a virtual clock. The decisions
are the ones the daemons make, by the same functions (none is copied here):

- the router's: an offer goes to :func:`routing.pick <swarmlog.agents.policy.routing.pick>` of the
  :func:`~swarmlog.agents.policy.routing.role_candidates` whose circuits let work through
  (:func:`~swarmlog.agents.policy.routing.through_circuits`), and outcomes move the breakers of
  :func:`~swarmlog.agents.policy.routing.judged_circuits` (:mod:`swarmlog.agents.policy.breakers`);
- the runtime's: a delivery is screened by :func:`~swarmlog.agents.policy.screening.screen` (a
  duplicate is not run again), a failure settled by :func:`settle.after_failure
  <swarmlog.agents.policy.settle.after_failure>` with the agent's retry policy and fallback role
  (retry, hand over with :func:`~swarmlog.agents.policy.followups.follow_up`, or escalate), and
  swarm agents race for offers with the real claim protocol (:func:`~swarmlog.agents.claims.claim`);
- the watchdog's: pairs of agents ask each other questions until the deadlocks found in the
  projection's wait-for graph (:func:`~swarmlog.agents.roles.watchdog.deadlocks_in`) are acted on by
  :func:`deadlocks.response <swarmlog.agents.policy.deadlocks.response>`; replicas whose presence
  went stale are reported lost, and seen again when back
  (:func:`~swarmlog.agents.policy.liveness.changes`);
- presence: every replica puts its signed presence into the in-memory presence bucket (its
  :class:`~swarmlog.agents.presence.Beacon`, on the virtual clock, with the bucket's TTL) and the
  router and the watchdog read it through the real
  :class:`~swarmlog.agents.presence.PresenceReader`;
- the projector's: the log, read through the :class:`~swarmlog.bus.ports.EventLog` port, is
  checked by the real verifier and folded by :func:`~swarmlog.projections.fold.fold_checked`.

What is scripted is the world around them: when work is offered, how long a handler takes and
whether it fails, and the daemons' I/O loops (the sim calls their decisions directly, not the
``AgentRuntime``, ``Router`` and ``Watchdog`` shells). Every event is a real signed event; ids,
times and keys come from the seed, so **the same seed always gives the same log and the same
final state hash**. A test (``tests/property/test_sim_drift.py``) changes a real policy function
and shows the simulation's outcome change with it.

(Longer than the ~400 lines a module is held to: one scheduler whose actions all share its
state, the world it scripts; split apart, every part would need all of it.)

Faults (``--faults``, all by default):

``delay``      queues are served in a random order, not first come first served (reordering)
``duplicate``  a finished assignment is delivered to an agent again
``redeliver``  an agent crashes mid-task: the task comes back after the ack wait; the agent
               restarts later
``projector``  the projection is thrown away and rebuilt, from scratch or from a snapshot
``clock``      the clock jumps forward by minutes
``sick``       a role fails everything for a while (its breaker opens, then recovers)

After the steps, the simulation drains (no new work or faults) and checks its invariants: every
task offered is finished or escalated (no work silently lost); no task has two results; each
swarm task was claimed once; every deadlock made was detected and broken; no work was routed
through an open circuit; the live projection (crashed and rebuilt along the way) equals a full
refold of the log, and a snapshot plus its catch-up equals it too.
"""

from __future__ import annotations

import asyncio
import hashlib
import pickle
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec

from swarmlog.agents.claims import claim
from swarmlog.agents.policy import deadlocks, routing, screening, settle
from swarmlog.agents.policy.breakers import Breaker, BreakerPolicy, record, send_through
from swarmlog.agents.policy.followups import follow_up
from swarmlog.agents.policy.liveness import Lost, changes, with_presence
from swarmlog.agents.policy.retry import RetryPolicy
from swarmlog.agents.policy.routing import AgentView, agent_view
from swarmlog.agents.presence import Beacon, PresenceReader
from swarmlog.agents.publisher import Publisher
from swarmlog.agents.roles.watchdog import deadlocks_in
from swarmlog.bus.memory import MemoryLog
from swarmlog.bus.ports import StoredMessage
from swarmlog.projections.fold import fold_checked
from swarmlog.projections.state import State
from swarmlog.projections.statehash import state_hash
from swarmlog.projections.verify import Checked, check
from swarmlog.schemas.credentials import Credential
from swarmlog.schemas.payloads import (
    AgentLost,
    AgentRegistered,
    AgentSeen,
    ClarificationRequest,
    ClarificationResponse,
    DeadlockDetected,
    Error,
    Result,
    TaskAssignment,
    TaskEscalated,
    TaskOffered,
    TaskRetryScheduled,
    TaskStarted,
)
from swarmlog.schemas.presence import PRESENCE_EVERY
from swarmlog.schemas.signing import Identity, issue_credential

__all__ = ["FAULTS", "SimResult", "run_sim", "simulate"]

FAULTS = ("delay", "duplicate", "redeliver", "projector", "clock", "sick")
NAMESPACE = "sim"
_EPOCH = 1_800_000_000 * 10**9
_SECOND = 10**9
_ACK_WAIT = 30 * _SECOND
_STALE_AFTER = 15 * _SECOND
"""A replica not heard from for this long is not a routing candidate (the router's default)."""


@dataclass
class SimResult:
    seed: int
    steps: int
    faults: list[str]
    events: int
    state_hash: str
    tasks: dict[str, int]
    injected: dict[str, int]
    deadlocks: int
    circuit_changes: int
    routed: dict[str, int] = field(default_factory=dict)
    """Offers routed, by the role they went to."""
    handovers: int = 0
    """Tasks handed over to a fallback role after their last attempt."""
    lost: int = 0
    """Replicas the watchdog reported lost (each one that crashed and stayed down)."""
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


@dataclass
class _Agent:
    identity: Identity
    role: str
    publisher: Publisher
    busy: str | None = None
    """The task in hand."""
    done_at: int = 0
    alive: bool = True
    back_at: int = 0
    asked: str | None = None
    """The request this agent waits on (a deadlock pair), if any."""
    beacon: Beacon | None = None
    beat_at: int | None = None
    """When it last put its presence."""


@dataclass
class _Role:
    name: str
    capability: str
    tier: str
    queue: list[TaskAssignment] = field(default_factory=list)
    """Assignments waiting; with their not-before times in ``ready_at``."""
    ready_at: dict[str, int] = field(default_factory=dict)
    sick_until: int = 0
    fallback: str | None = None
    """The agent's ``fallback_role``: where its work goes after its last attempt."""


class _Sim:
    def __init__(
        self, seed: int, steps: int, faults: frozenset[str], *, every_step: bool = False
    ) -> None:
        self.every_step = every_step
        self._checked: dict[int, Checked] = {}
        self.rng = random.Random(seed)
        self.seed, self.steps, self.faults = seed, steps, faults
        self.now = _EPOCH
        self.log = MemoryLog(f"SWARMLOG_{NAMESPACE.upper()}", wall_clock=lambda: self.now)
        self.operator = self._identity("operator")
        self.ops = self._publisher(self.operator)
        self.roles = {
            "alpha": _Role("alpha", "work", "small", fallback="beta"),
            "beta": _Role("beta", "work", "large"),
            "swarmer": _Role("swarmer", "claim", "small"),
        }
        self.agents: list[_Agent] = []
        self.router = self._identity("router-1")
        self.router_pub = self._publisher(self.router)
        self.watchdog_pub = self._publisher(self._identity("watchdog-1"))
        self.presence = PresenceReader(self.log, NAMESPACE, clock=lambda: self.now)
        self.watched: dict[str, int] = {}
        """The replicas the watchdog watches (see :func:`changes`)."""
        self.crashed: set[str] = set()
        self.lost: set[tuple[str, int | None]] = set()
        """Losses the watchdog reported (agent, last heard from)."""
        self.policy = BreakerPolicy(consecutive_failures=3, cooldown=20.0)
        self.retry = RetryPolicy(initial_delay=1.0, max_delay=8.0, max_attempts=3)
        self.breakers: dict[str, Breaker] = {}
        self.offers: list[TaskOffered] = []
        self.swarm_offers: list[str] = []
        self.assigned: dict[str, TaskAssignment] = {}
        """Each routed task's last assignment (what a hand-over carries on)."""
        self.routed: Counter[str] = Counter()
        self.handovers = 0
        self.reported: set[str] = set()
        """Deadlocks acted on (by key), as the watchdog remembers them."""
        self.claimed_by: dict[str, str] = {}
        """Swarm tasks by the agent whose claim won them."""
        self.offered: list[str] = []
        self.attempts: Counter[str] = Counter()
        self.finished: set[str] = set()
        self.results: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self.violations: list[str] = []
        self.deadlocks_made = 0
        self.deadlocks_broken = 0
        self.circuit_changes = 0
        self.state = State()
        self.folded = 0
        self.snapshot: tuple[State, int] | None = None
        self.next_id = 0

    # --- set-up -----------------------------------------------------------------------------------

    def _identity(self, name: str) -> Identity:
        seed = hashlib.sha256(f"swarmlog-sim/{self.seed}/{name}".encode()).digest()
        return Identity.from_seed(name, seed)

    def _publisher(self, identity: Identity) -> Publisher:
        entropy = random.Random(f"{self.seed}/{identity.agent_id}")
        return Publisher(
            self.log,
            identity,
            NAMESPACE,
            clock=lambda: self.now,
            entropy=lambda n: entropy.randbytes(n),
        )

    async def setup(self) -> None:
        members = [("alpha", 2), ("beta", 1), ("swarmer", 2)]
        ids = [(f"{role}-{i}", role) for role, n in members for i in range(1, n + 1)]
        ids += [("router-1", "router"), ("watchdog-1", "watchdog")]
        for agent_id, role in ids:
            identity = self._identity(agent_id)
            capability = self.roles[role].capability if role in self.roles else ""
            credential = Credential(
                agent_id=agent_id,
                role=role,
                public_key=identity.public_key,
                issuer=self.operator.public_key,
                issued_at=self.now,
                capabilities=[capability] if capability else [],
            )
            await self.ops.publish(issue_credential(self.operator, credential))
            if role in self.roles:
                publisher = self._publisher(identity)
                run = hashlib.sha256(f"{self.seed}/{agent_id}/run".encode()).hexdigest()[:16]
                beacon = Beacon(self.log, publisher, role, clock=lambda: self.now, run=run)
                agent = _Agent(identity, role, publisher, beacon=beacon)
                self.agents.append(agent)
                await agent.publisher.publish(
                    AgentRegistered(
                        agent_id=agent_id,
                        role=role,
                        capabilities=[capability],
                        tier=self.roles[role].tier,
                    )
                )

    # --- the schedule -----------------------------------------------------------------------------

    def _tick(self, ns: int) -> None:
        self.now += ns

    async def _beats(self) -> None:
        """Every live replica puts its presence when a beat is due (a crashed one does not)."""
        for agent in self.agents:
            due = agent.beat_at is None or self.now - agent.beat_at >= PRESENCE_EVERY * _SECOND
            if agent.alive and due and agent.beacon is not None:
                held = [t for t in (agent.busy, agent.asked) if t]
                await agent.beacon.put(load=len(held), tasks=held)
                agent.beat_at = self.now

    def _pick(self, items: list[Any]) -> Any:
        """The next item of a queue: the oldest, or any one under the delay fault."""
        if "delay" in self.faults and len(items) > 1 and self.rng.random() < 0.5:
            self.injected["delay"] += 1
            return items.pop(self.rng.randrange(len(items)))
        return items.pop(0)

    async def run(self) -> None:
        await self.setup()
        for i in range(self.steps):
            await self.step(draining=False)
            if self.every_step:
                await self._compare(i)
        for _ in range(10 * self.steps + 200):  # drain: no new work, no faults
            if self.quiet():
                break
            await self.step(draining=True)
        await self.fold()

    def quiet(self) -> bool:
        return (
            not self.offers
            and not self.swarm_offers
            and all(not r.queue for r in self.roles.values())
            and all(a.busy is None and a.asked is None for a in self.agents)
        )

    async def step(self, *, draining: bool) -> None:
        self._tick(self.rng.randrange(50, 500) * 10**6)
        await self._beats()
        choices: list[tuple[str, float]] = [("route", 3), ("work", 4), ("finish", 4)]
        choices += [("watchdog", 1), ("fold", 1), ("claim", 2), ("revive", 1)]
        if not draining:
            choices += [("offer", 3), ("swarm_offer", 1), ("deadlock", 0.3)]
            choices += [(f, 0.4) for f in sorted(self.faults - {"delay"})]  # delay is in _pick
        names, weights = zip(*choices, strict=True)
        action = self.rng.choices(names, weights)[0]
        await getattr(self, f"do_{action}")()
        if draining:
            await self.do_finish()  # let time run on in-flight work
            self._tick(2 * _SECOND)

    # --- actions ----------------------------------------------------------------------------------

    def _task_id(self, prefix: str) -> str:
        self.next_id += 1
        return f"{prefix}{self.next_id}"

    async def do_offer(self) -> None:
        offer = TaskOffered(task_id=self._task_id("t"), capability="work", input=self.next_id)
        await self.ops.publish(offer)
        self.offers.append(offer)
        self.offered.append(offer.task_id)

    async def do_swarm_offer(self) -> None:
        offer = TaskOffered(task_id=self._task_id("s"), capability="claim", mode="swarm")
        await self.ops.publish(offer)
        self.swarm_offers.append(offer.task_id)
        self.offered.append(offer.task_id)

    def _breaker(self, circuit: str) -> Breaker:
        return self.breakers.get(circuit, Breaker())

    def _moved(self, circuit: str, before: Breaker, after: Breaker) -> None:
        self.breakers[circuit] = after
        if before.state != after.state:
            self.circuit_changes += 1

    async def do_route(self) -> None:
        """The router's decision on a snapshot of the agents, their queues and the circuits."""
        if not self.offers:
            return
        offer = self._pick(self.offers)
        views = [
            AgentView(
                a.identity.agent_id,
                a.role,
                frozenset({self.roles[a.role].capability}),
                "registered",
                _EPOCH,  # registered at the start; live and loaded as its presence says
                tier=self.roles[a.role].tier,
                public_key=a.identity.public_key,
            )
            for a in self.agents
        ]
        views = with_presence(views, await self.presence.read(views))
        pending = {r.name: len(r.queue) for r in self.roles.values()}
        candidates = routing.role_candidates(
            views, now=self.now, stale_after=_STALE_AFTER, pending=pending
        )
        open_ = routing.through_circuits(
            candidates, self.breakers, now=self.now, policy=self.policy
        )
        chosen = routing.pick(offer, open_)
        if chosen is None:
            self.offers.append(offer)  # waits for a live role, or a circuit to let work through
            return
        for circuit in routing.circuits(chosen.role, chosen.dependencies):
            breaker = self._breaker(circuit)
            if breaker.state != "closed":  # a probe: the breaker counts it
                after, _ = send_through(breaker, now=self.now, policy=self.policy)
                self._moved(circuit, breaker, after)
            if self._breaker(circuit).state == "open":
                self.violations.append(f"{offer.task_id} routed through the open {circuit}")
        assignment = TaskAssignment(
            task_id=offer.task_id, role=chosen.role, capability=offer.capability, input=offer.input
        )
        await self.router_pub.publish(assignment)
        self.assigned[offer.task_id] = assignment
        self.routed[chosen.role] += 1
        self.roles[chosen.role].queue.append(assignment)

    def _idle(self, role: str) -> list[_Agent]:
        return [a for a in self.agents if a.role == role and a.alive and not a.busy and not a.asked]

    def _takers(self, role: _Role, task: TaskAssignment) -> list[_Agent]:
        """Who may run ``task`` now: an idle replica of its role, or only the agent that won its
        claim (a claimed task is that agent's alone, as the verifier holds it)."""
        idle = self._idle(role.name)
        winner = self.claimed_by.get(task.task_id)
        return [a for a in idle if a.identity.agent_id == winner] if winner else idle

    async def do_work(self) -> None:
        ready = [
            r
            for r in self.roles.values()
            if any(self._due(r, t) and self._takers(r, t) for t in r.queue)
        ]
        if not ready:
            return
        role = self.rng.choice(ready)
        waiting = [t for t in role.queue if self._due(role, t) and self._takers(role, t)]
        task = self._pick(waiting)
        role.queue.remove(task)
        agent = self.rng.choice(self._takers(role, task))
        verdict = screening.screen(
            verified=True,  # every event here is signed by its sender
            killed=False,
            duplicate=task.task_id in self.finished,  # the runtime's idempotency by event id
            deadline_at=task.deadline_at,
            now=self.now,
            over_budget=False,
        )
        if verdict == "duplicate":
            return
        assert verdict == "run", verdict  # the sim sets no deadlines nor budgets
        self.attempts[task.task_id] += 1
        agent.busy = task.task_id
        agent.done_at = self.now + self.rng.randrange(1, 5) * _SECOND
        await agent.publisher.publish(
            TaskStarted(task_id=task.task_id, attempt=self.attempts[task.task_id])
        )

    def _due(self, role: _Role, task: TaskAssignment) -> bool:
        return role.ready_at.get(task.task_id, 0) <= self.now

    async def do_finish(self) -> None:
        due = [a for a in self.agents if a.busy and a.alive and a.done_at <= self.now]
        if not due:
            return
        agent = self.rng.choice(due)
        task_id, agent.busy = agent.busy, None
        assert task_id is not None
        role = self.roles[agent.role]
        swarm = task_id.startswith("s")
        failed = role.sick_until > self.now or self.rng.random() < 0.1
        if task_id in self.finished:
            return  # already answered (a duplicate delivery): nothing more to say
        if not failed:
            self.finished.add(task_id)
            self.results[task_id] += 1
            await agent.publisher.publish(Result(task_id=task_id, output={"by": agent.role}))
        else:
            await self._settle_failure(agent, role, task_id, swarm)
        if not swarm:
            for circuit in routing.judged_circuits(role.name, not failed, None, ()):
                before = self._breaker(circuit)
                after, _ = record(before, not failed, now=self.now, policy=self.policy)
                self._moved(circuit, before, after)

    async def _settle_failure(self, agent: _Agent, role: _Role, task_id: str, swarm: bool) -> None:
        """The runtime's settlement of a failed attempt, decided by the real policy."""
        attempt = self.attempts[task_id]
        decision = settle.after_failure(
            self.retry,
            attempt=attempt,
            retryable=True,
            draw=self.rng.random(),
            role=role.name,
            fallback_role=role.fallback,
            code="sim",
            swarm=swarm,
        )
        retryable = settle.says_retryable(decision, swarm=swarm)
        await agent.publisher.publish(
            Error(task_id=task_id, code="sim", message="failed", retryable=retryable)
        )
        match decision:
            case settle.Retry(attempt=next_attempt, delay=delay):
                await agent.publisher.publish(
                    TaskRetryScheduled(
                        task_id=task_id, attempt=next_attempt, delay_ms=int(delay * 1000)
                    )
                )
                role.ready_at[task_id] = self.now + int(delay * _SECOND)
                role.queue.append(TaskAssignment(task_id=task_id, role=role.name))
            case settle.HandOver(role=fallback):
                source = self.assigned.get(task_id, TaskAssignment(task_id=task_id, role=role.name))
                handed = follow_up(source, role=fallback, attempts=attempt)
                await agent.publisher.publish(handed)
                self.assigned[task_id] = handed
                self.attempts[task_id] = handed.attempt - 1  # the next start is its attempt
                self.roles[fallback].queue.append(handed)
                self.handovers += 1
            case settle.Escalate(reason=reason):
                self.finished.add(task_id)
                await agent.publisher.publish(TaskEscalated(task_id=task_id, reason=reason[:400]))
            case _:
                raise AssertionError(f"the sim sets no deadlines: {decision!r}")

    async def do_claim(self) -> None:
        if not self.swarm_offers:
            return
        task_id = self._pick(self.swarm_offers)
        racers = self._idle("swarmer")
        if not racers:
            self.swarm_offers.append(task_id)
            return
        self.rng.shuffle(racers)
        winners = [a for a in racers if (await claim(self.log, a.publisher, task_id)).won]
        if len(winners) != 1:
            self.violations.append(f"{task_id} claimed by {len(winners)} agents")
            return
        self.claimed_by[task_id] = winners[0].identity.agent_id
        self.roles["swarmer"].queue.append(TaskAssignment(task_id=task_id, role="swarmer"))

    async def do_deadlock(self) -> None:
        pair = [a for a in self._idle("alpha")][:2]
        if len(pair) < 2:
            return
        for asker, other in ((pair[0], pair[1]), (pair[1], pair[0])):
            request_id = self._task_id("q")
            asker.asked = request_id
            await asker.publisher.publish(
                ClarificationRequest(
                    request_id=request_id, to=other.identity.agent_id, question="you first?"
                ),
                recipient=other.identity.agent_id,
            )
        self.deadlocks_made += 1

    async def do_watchdog(self) -> None:
        """The watchdog's look: the deadlocks in the projection, and its response to each; and
        who is lost or back, from the projection's agents and their presence."""
        await self.fold()
        await self._liveness()
        await self._deadlocks()

    async def _liveness(self) -> None:
        views = [agent_view(row) for _, row in sorted(self.state.rows["agents"].items())]
        found, self.watched = changes(
            views,
            await self.presence.read(views),
            now=self.now,
            stale_after=_STALE_AFTER / _SECOND,
            watched=self.watched,
            exempt={"watchdog-1"},
        )
        for change in found:
            if isinstance(change, Lost):
                if (change.agent_id, change.last_seen_at) in self.lost:
                    continue  # reported, and not applied (the watchdog remembers it too)
                self.lost.add((change.agent_id, change.last_seen_at))
                lost = AgentLost(agent_id=change.agent_id, last_seen_at=change.last_seen_at)
                await self.watchdog_pub.publish(lost)
            else:
                seen = AgentSeen(agent_id=change.agent_id, seen_at=change.seen_at)
                await self.watchdog_pub.publish(seen)

    async def _deadlocks(self) -> None:
        for deadlock in deadlocks_in(self.state.rows["waits_for"].values()):
            if deadlock.key in self.reported:
                continue  # acted on, and not yet projected as broken
            self.reported.add(deadlock.key)
            notices = deadlocks.response(deadlock, "break")
            for notice in notices:
                await self.watchdog_pub.publish(notice.payload, recipient=notice.recipient)
            victim = deadlock.victim
            if not any(
                isinstance(n.payload, DeadlockDetected) and n.payload.victim == victim.ref
                for n in notices
            ):
                continue  # reported only: a human decides (and the sim has none)
            self.deadlocks_broken += 1
            # The victim gives its wait up and, free again, answers the other's question.
            freed = next(a for a in self.agents if a.identity.agent_id == victim.waiter)
            freed.asked = None
            for wait in deadlock.waits:
                if wait.waits_on == freed.identity.agent_id:
                    await freed.publisher.publish(
                        ClarificationResponse(
                            request_id=wait.ref, to=wait.waiter, answer="after you"
                        ),
                        recipient=wait.waiter,
                    )
                    other = next(a for a in self.agents if a.identity.agent_id == wait.waiter)
                    other.asked = None

    async def do_duplicate(self) -> None:
        settled = sorted(t for t in self.finished if t.startswith("t"))
        if settled:
            task_id = self.rng.choice(settled)
            self.roles["alpha"].queue.append(TaskAssignment(task_id=task_id, role="alpha"))
            self.injected["duplicate"] += 1

    async def do_redeliver(self) -> None:
        busy = [a for a in self.agents if a.busy and a.alive]
        if not busy:
            return
        agent = self.rng.choice(busy)
        task_id, agent.busy, agent.alive = agent.busy, None, False
        self.crashed.add(agent.identity.agent_id)
        assert task_id is not None
        agent.back_at = self.now + self.rng.randrange(5, 60) * _SECOND
        role = self.roles[agent.role]
        role.ready_at[task_id] = self.now + _ACK_WAIT  # the server redelivers after the ack wait
        role.queue.append(TaskAssignment(task_id=task_id, role=role.name))
        self.injected["redeliver"] += 1

    async def do_revive(self) -> None:
        for agent in self.agents:
            if not agent.alive and agent.back_at <= self.now:
                agent.alive = True

    async def do_projector(self) -> None:
        """The projector crashes: its state is gone; it restarts from a snapshot or from 0."""
        self.injected["projector"] += 1
        if self.snapshot is not None and self.rng.random() < 0.5:
            state, position = self.snapshot
            self.state, self.folded = _copy(state), position
        else:
            self.state, self.folded = State(), 0
        await self.fold()

    async def do_clock(self) -> None:
        self._tick(self.rng.randrange(1, 10) * 60 * _SECOND)
        self.injected["clock"] += 1

    async def do_sick(self) -> None:
        self.roles["alpha"].sick_until = self.now + self.rng.randrange(10, 60) * _SECOND
        self.injected["sick"] += 1

    async def do_fold(self) -> None:
        await self.fold()
        if self.rng.random() < 0.3:
            self.snapshot = (_copy(self.state), self.folded)

    async def _compare(self, step: int) -> None:
        """The live projection, folded up to now, against a refold of the whole log."""
        await self.fold()
        full = await self._refold(State(), 0)
        if state_hash(self.state) != state_hash(full):
            self.violations.append(f"after step {step} the projection differs from a refold")

    async def fold(self) -> None:
        """Fold what is new on the log into the live projection (the real verifier and fold)."""
        await self._refold(self.state, self.folded)
        self.folded = await self.log.last_seq()

    # --- the verdict ------------------------------------------------------------------------------

    async def verdict(self) -> SimResult:
        """Check the invariants on a full refold of the log, and sum the run up."""
        full = await self._refold(State(), 0)
        self.check(full)
        if self.snapshot is not None:
            state, position = self.snapshot
            caught_up = await self._refold(_copy(state), position)
            if state_hash(caught_up) != state_hash(full):
                self.violations.append("a snapshot plus its catch-up differs from a full refold")
        statuses = Counter(row["status"] for row in full.rows["tasks"].values())
        return SimResult(
            seed=self.seed,
            steps=self.steps,
            faults=sorted(self.faults),
            events=await self.log.last_seq(),
            state_hash=state_hash(full),
            tasks=dict(sorted(statuses.items())),
            injected=dict(sorted(self.injected.items())),
            deadlocks=self.deadlocks_broken,
            circuit_changes=self.circuit_changes,
            routed=dict(sorted(self.routed.items())),
            handovers=self.handovers,
            lost=sum(1 for r in full.rows["events"].values() if r["type"] == "agent_lost"),
            violations=self.violations,
        )

    def check(self, full: State) -> None:
        """The invariants, on ``full`` (a refold of the whole log)."""
        if state_hash(self.state) != state_hash(full):
            self.violations.append("the live projection differs from a full refold")
        if full.rows["quarantine"]:
            reasons = sorted({r["reason"] for r in full.rows["quarantine"].values()})
            self.violations.append(f"events quarantined: {reasons}")
        tasks = full.rows["tasks"]
        for task_id in self.offered:
            row = tasks.get((task_id,))
            status = row["status"] if row else "missing"
            if status not in ("succeeded", "failed", "cancelled", "escalated"):
                self.violations.append(f"{task_id} ended {status}: work silently lost")
        for task_id, n in self.results.items():
            if n > 1:
                self.violations.append(f"{task_id} completed {n} times")
        results = Counter(
            r["subject"].split(".")[-2]
            for r in full.rows["events"].values()
            if r["type"] == "result"
        )
        if any(n > 1 for n in results.values()):
            self.violations.append("a task has two results on the log")
        claims = Counter(
            r["subject"].split(".")[-2]
            for r in full.rows["events"].values()
            if r["type"] == "task_claimed"
        )
        for task_id in (t for t in self.offered if t.startswith("s")):
            if claims[task_id] != 1:
                self.violations.append(f"{task_id} claimed {claims[task_id]} times")
        for r in full.rows["events"].values():
            lost = r["type"] == "agent_lost"
            if lost and msgspec.json.decode(r["payload"])["agent_id"] not in self.crashed:
                self.violations.append(f"{r['payload']}: reported lost, never down")
        if self.deadlocks_broken != self.deadlocks_made or full.rows["waits_for"]:
            self.violations.append(
                f"{self.deadlocks_made} deadlocks made, {self.deadlocks_broken} broken,"
                f" {len(full.rows['waits_for'])} waits left"
            )

    async def _refold(self, state: State, after: int) -> State:
        """Fold the log's events after sequence ``after`` into ``state``: read through the port,
        checked by the verifier, folded by the projector's own loop.

        The stateless check (decoding, subject, signature) is a pure function of the stored
        message, so each message is checked once and its verdict reused by later refolds, as the
        real projector checks each message once; what depends on state (credentials, chains,
        permissions) is decided by the fold, again on every refold."""
        messages: list[StoredMessage] = []
        async for batch in self.log.read(after + 1):
            messages.extend(batch)
        fold_checked(state, (self._check(m) for m in messages), self.operator.public_key)
        state.clear_changes()
        return state

    def _check(self, message: StoredMessage) -> Checked:
        known = self._checked.get(message.seq)
        if known is None or known.message != message:
            known = self._checked[message.seq] = check(message, NAMESPACE)
        return known


def _copy(state: State) -> State:
    """A deep copy of a projection's state (rows are plain values; pickling is ~5x deepcopy)."""
    copied: State = pickle.loads(pickle.dumps(state, pickle.HIGHEST_PROTOCOL))
    return copied


async def simulate(
    seed: int, steps: int, faults: frozenset[str] | None = None, *, every_step: bool = False
) -> SimResult:
    """Run one simulation; its result lists any invariant it broke. ``every_step`` also compares
    the live projection with a refold of the whole log after every step (slow: quadratic)."""
    unknown = (faults or frozenset()) - set(FAULTS)
    if unknown:
        raise ValueError(f"unknown faults {sorted(unknown)}; choose from {', '.join(FAULTS)}")
    sim = _Sim(seed, steps, frozenset(FAULTS) if faults is None else faults, every_step=every_step)
    await sim.run()
    return await sim.verdict()


def run_sim(
    seed: int, steps: int, faults: frozenset[str] | None = None, *, every_step: bool = False
) -> SimResult:
    """:func:`simulate`, from synchronous code."""
    return asyncio.run(simulate(seed, steps, faults, every_step=every_step))
