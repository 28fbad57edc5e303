"""The router on the in-memory bus: routed offers become one assignment each, to a live capable
role, the least loaded first; offers nobody can take wait, then escalate."""

from __future__ import annotations

import hashlib

import msgspec
import pytest

from swarmlog.agents.policy.breakers import Breaker, BreakerPolicy
from swarmlog.agents.policy.killflags import KillFlag, flag_key
from swarmlog.agents.policy.routing import AgentView
from swarmlog.agents.presence import Beacon
from swarmlog.agents.publisher import Publisher
from swarmlog.agents.roles.router import BreakerOutcome, Router, RoutingOutcome
from swarmlog.bus.memory import MemoryLog
from swarmlog.errors import QueryTimeout
from swarmlog.schemas.codec import decode_envelope, decode_signed
from swarmlog.schemas.payloads import TaskAssignment, TaskOffered
from swarmlog.schemas.signing import Identity

NS = "rt"
NOW = 1_000 * 10**9


def identity(name: str) -> Identity:
    return Identity.from_seed(name, hashlib.sha256(name.encode()).digest())


def view(agent_id: str, role: str, caps: tuple[str, ...], **kw: object) -> AgentView:
    fields: dict[str, object] = {"status": "registered", "last_heartbeat_at": NOW} | kw
    return AgentView(agent_id, role, frozenset(caps), **fields)  # type: ignore[arg-type]


class Setup:
    def __init__(self, agents: list[AgentView], **options: object) -> None:
        self.log = MemoryLog("SWARMLOG_RT")
        self.ops = Publisher(self.log, identity("operator"), NS, clock=lambda: NOW)
        self.agents = agents

        async def source() -> list[AgentView]:
            return list(self.agents)

        publisher = Publisher(self.log, identity("router-1"), NS, clock=lambda: NOW)
        self.router = Router(self.log, publisher, source, clock=lambda: NOW, **options)  # type: ignore[arg-type]

    async def offer(
        self,
        task_id: str,
        capability: str,
        mode: str = "routed",
        avoid: tuple[str, ...] = (),
        internal_only: bool = False,
    ) -> None:
        await self.ops.publish(
            TaskOffered(
                task_id=task_id,
                capability=capability,
                mode=mode,  # type: ignore[arg-type]
                priority="high",
                avoid_roles=list(avoid),
                internal_only=internal_only,
            )
        )

    async def route(self) -> list[RoutingOutcome]:
        out: list[RoutingOutcome] = []
        for _ in range(5):
            out += await self.router.step(wait=0.01)
        return out

    def assignments(self) -> list[TaskAssignment]:
        found = []
        for m in self.log._messages:
            payload = decode_envelope(decode_signed(m.data).body).payload
            if isinstance(payload, TaskAssignment):
                found.append(payload)
        return found


async def test_an_offer_goes_to_the_capable_role_at_its_priority() -> None:
    s = Setup([view("w-1", "writer", ("write",)), view("c-1", "coder", ("code",))])
    await s.router.start()
    await s.offer("t1", "code")
    assert await s.route() == [RoutingOutcome("t1", "assigned", "coder")]
    (assignment,) = s.assignments()
    assert (assignment.role, assignment.priority, assignment.capability) == (
        "coder",
        "high",
        "code",
    )
    subjects = [m.subject for m in s.log._messages if ".work." in m.subject]
    assert subjects == [f"swarmlog.{NS}.router-1.work.coder.high.t1"]


async def test_load_spreads_work_over_roles_with_the_capability() -> None:
    s = Setup(
        [
            view("a-1", "alpha", ("x",)),
            view("b-1", "beta", ("x",)),
            view("b-2", "beta", ("x",)),
        ]
    )
    await s.router.start()
    for i in range(6):
        await s.offer(f"t{i}", "x")
    outcomes = await s.route()
    roles = [o.role for o in outcomes]
    # beta has twice the replicas, so twice the share while the snapshot lasts.
    assert sorted(roles) == ["alpha", "alpha", "beta", "beta", "beta", "beta"]


async def test_a_reassignment_passes_over_the_role_that_did_it_when_another_can() -> None:
    s = Setup([view("a-1", "alpha", ("x",)), view("b-1", "beta", ("x",), in_flight=5)])
    await s.router.start()
    await s.offer("t1", "x", avoid=("alpha",))  # alpha is idle, but it did this task before
    s.agents.append(view("g-1", "gamma", ("y",)))
    await s.offer("t3", "y", avoid=("gamma",))  # only gamma can: it gets it again
    outcomes = {o.task_id: o.role for o in await s.route()}
    assert outcomes["t1"] == "beta"
    assert outcomes["t3"] == "gamma"


async def test_internal_only_work_never_goes_to_a_role_with_an_external_replica() -> None:
    s = Setup(
        [
            view("in-1", "inside", ("x",), in_flight=9),  # busy, but trusted
            view("out-1", "mixed", ("x",)),
            view("out-2", "mixed", ("x",), trust_level="external"),
            view("web-1", "web", ("fetch",), trust_level="external"),
        ]
    )
    await s.router.start()
    await s.offer("t1", "x", internal_only=True)
    await s.offer("t2", "x")  # may go anywhere: the idle mixed role takes it
    await s.offer("t3", "fetch", internal_only=True)  # only an external role could: it waits
    outcomes = {o.task_id: (o.status, o.role) for o in await s.route()}
    assert outcomes["t1"] == ("assigned", "inside")
    assert outcomes["t2"] == ("assigned", "mixed")
    assert outcomes["t3"][0] == "waiting"
    (t1,) = [a for a in s.assignments() if a.task_id == "t1"]
    assert t1.internal_only  # and its subtasks inherit it


class Redelivered:
    """An offer delivered again (as after a router's crash before its ack)."""

    num_delivered = 2

    def __init__(self, log: MemoryLog) -> None:
        self.message = next(m for m in log._messages if m.subject.endswith("task_offered"))

    async def ack(self) -> None: ...
    async def term(self) -> None: ...
    async def nak(self, delay: float | None = None) -> None: ...
    async def in_progress(self) -> None: ...


class Held(Redelivered):
    """A first delivery of the offer that remembers how it was settled."""

    num_delivered = 1

    def __init__(self, log: MemoryLog) -> None:
        super().__init__(log)
        self.naked: list[float | None] = []

    async def nak(self, delay: float | None = None) -> None:
        self.naked.append(delay)


async def test_an_offer_comes_back_after_the_retry_delay_when_the_projection_does_not_answer() -> (
    None
):
    s = Setup([view("c-1", "coder", ("code",))], retry_delay=0.5)

    async def silent() -> list[AgentView]:
        raise QueryTimeout("no reply on rpc.query")

    s.router.agents = silent
    await s.offer("t1", "code")
    held = Held(s.log)
    with pytest.raises(QueryTimeout):
        await s.router.handle(held)
    # Not left for the queue's ack wait (30 s): back after the router's retry delay.
    assert held.naked == [0.5]
    assert s.assignments() == []


async def test_an_offer_is_assigned_once_even_when_routed_twice() -> None:
    # The projection knows the routers (they register): router-1's assignment counts.
    s = Setup([view("c-1", "coder", ("code",)), view("router-1", "router", ())])
    await s.router.start()
    await s.offer("t1", "code")
    await s.route()
    second = Router(
        s.log,
        Publisher(s.log, identity("router-2"), NS, clock=lambda: NOW),
        s.router.agents,
        clock=lambda: NOW,
    )
    assert (await second.handle(Redelivered(s.log))).status == "already_assigned"
    assert len(s.assignments()) == 1


async def test_a_forged_assignment_does_not_keep_a_redelivered_offer_from_its_role() -> None:
    s = Setup([view("c-1", "coder", ("code",)), view("w-1", "writer", ("write",))])
    await s.offer("t1", "code")
    # Another agent assigns the task to itself under its own prefix (readers refuse it: only
    # a router assigns an offer); the router's conditional assignment must not take it as done.
    forger = Publisher(s.log, identity("w-1"), NS, clock=lambda: NOW)
    await forger.publish(TaskAssignment(task_id="t1", role="writer"))
    await forger.publish(TaskAssignment(task_id="t1", role="writer", priority="low"))
    await s.router.start()
    outcome = await s.router.handle(Redelivered(s.log))
    assert outcome == RoutingOutcome("t1", "assigned", "coder")
    assert [a.role for a in s.assignments()] == ["writer", "writer", "coder"]


@pytest.mark.parametrize(
    "agents",
    [
        [],
        [view("c-1", "coder", ("other",))],
        [view("c-1", "coder", ("code",), status="killed")],
        [view("c-1", "coder", ("code",), last_heartbeat_at=NOW - 60 * 10**9)],
        [view("router-9", "router", ("code",))],
    ],
    ids=["none", "incapable", "killed", "silent", "builtin"],
)
async def test_with_no_live_capable_agent_an_offer_waits_then_escalates(
    agents: list[AgentView],
) -> None:
    s = Setup(agents, retry_delay=0.0, give_up_after=3)
    await s.router.start()
    await s.offer("t1", "code")
    statuses = [o.status for o in await s.route()]
    assert statuses == ["waiting", "waiting", "escalated"]
    assert s.assignments() == []


async def test_a_kill_flag_takes_a_role_out_before_the_projection_knows() -> None:
    s = Setup([view("a-1", "alpha", ("x",)), view("b-1", "beta", ("x",))])
    flags = await s.log.flags()
    await flags.put(flag_key(role="alpha"), msgspec.json.encode(KillFlag("bad")))
    await s.router.start()
    for i in range(3):
        await s.offer(f"t{i}", "x")
    assert {o.role for o in await s.route()} == {"beta"}


async def test_swarm_offers_are_left_to_the_claimants() -> None:
    s = Setup([view("c-1", "coder", ("code",))])
    await s.router.start()
    await s.offer("t1", "code", mode="swarm")
    assert [o.status for o in await s.route()] == ["not_routed"]
    assert s.assignments() == []


class Judged(Setup):
    """A router with a virtual clock that judges the outcomes the test appends."""

    def __init__(self, agents: list[AgentView], policy: BreakerPolicy) -> None:
        super().__init__(agents)
        self.clock = [NOW]
        self.outcomes: list[BreakerOutcome] = []

        async def source(after: int | None) -> tuple[list[BreakerOutcome], int]:
            start = 0 if after is None else after
            return [o for o in self.outcomes if o[0] > start], len(self.outcomes)

        self.router = Router(
            self.log,
            Publisher(self.log, identity("router-1"), NS, clock=lambda: self.clock[0]),
            self.router.agents,
            clock=lambda: self.clock[0],
            refresh=0.0,
            outcomes=source,
            breaker_policy=policy,
        )

    async def route_one(self, task_id: str) -> str:
        await self.offer(task_id, "x")
        (outcome,) = await self.route()
        return outcome.role


async def test_a_failing_role_opens_its_circuit_work_goes_to_the_fallback_then_it_recovers() -> (
    None
):
    s = Judged(
        [view("a-1", "alpha", ("x",), tier="small"), view("b-1", "beta", ("x",), tier="large")],
        BreakerPolicy(consecutive_failures=3, cooldown=2.0),
    )
    await s.router.start()
    clock, outcomes, route = s.clock, s.outcomes, s.route_one

    def fail(role: str, n: int) -> None:
        for _ in range(n):
            outcomes.append((len(outcomes) + 1, role, False, None))

    assert await route("t1") == "alpha"  # the cheaper tier
    fail("alpha", 3)
    assert await route("t2") == "beta"  # alpha's circuit is open: the fallback takes it
    clock[0] += 3 * 10**9  # past the cool-down
    assert await route("t3") == "alpha"  # the probe
    assert await route("t4") == "beta"  # one probe at a time
    outcomes.append((len(outcomes) + 1, "alpha", True, None))
    assert await route("t5") == "alpha"  # closed again
    changes = [
        (m.subject.rsplit(".", 1)[-1], decode_envelope(decode_signed(m.data).body).payload)
        for m in s.log._messages
        if ".sys.circuit_" in m.subject
    ]
    assert [kind for kind, _ in changes] == [
        "circuit_opened",
        "circuit_half_opened",
        "circuit_closed",
    ]
    assert {p.circuit for _, p in changes} == {"role:alpha"}  # type: ignore[attr-defined]
    assert changes[0][1].reason == "3 failures in a row"  # type: ignore[attr-defined]


async def test_bad_inputs_do_not_open_a_roles_circuit_but_crashes_do() -> None:
    s = Judged(
        [view("a-1", "alpha", ("x",), tier="small"), view("b-1", "beta", ("x",), tier="large")],
        BreakerPolicy(consecutive_failures=3, cooldown=2.0),
    )
    await s.router.start()
    outcomes, route = s.outcomes, s.route_one
    for _ in range(10):  # ten permanent failures (ValueError on bad input): alpha is healthy
        outcomes.append((len(outcomes) + 1, "alpha", None, None))
    assert await route("t1") == "alpha"
    assert s.router.breakers.get("role:alpha", Breaker()).state == "closed"
    for _ in range(3):  # three crashes that a retry might cure: alpha is not
        outcomes.append((len(outcomes) + 1, "alpha", False, None))
    assert await route("t2") == "beta"
    assert s.router.breakers["role:alpha"].state == "open"


async def test_a_failing_dependency_opens_its_own_circuit_not_the_roles() -> None:
    agents = [
        view("a-1", "alpha", ("x",), tier="small", dependencies=frozenset({"search"})),
        view("b-1", "beta", ("x",), tier="large"),
    ]
    s = Judged(agents, BreakerPolicy(consecutive_failures=2, cooldown=2.0))
    await s.router.start()
    clock, outcomes, route = s.clock, s.outcomes, s.route_one

    assert await route("t1") == "alpha"
    for _ in range(2):  # the search service fails alpha's work
        outcomes.append((len(outcomes) + 1, "alpha", False, "search"))
    assert await route("t2") == "beta"  # alpha depends on search, whose circuit is open
    assert s.router.breakers["dep:search"].state == "open"
    assert s.router.breakers.get("role:alpha") is None  # alpha itself is not to blame
    clock[0] += 3 * 10**9
    assert await route("t3") == "alpha"  # the probe of the search circuit
    outcomes.append((len(outcomes) + 1, "alpha", True, None))
    assert await route("t4") == "alpha"
    assert s.router.breakers["dep:search"].state == "closed"
    circuits = [
        decode_envelope(decode_signed(m.data).body).payload
        for m in s.log._messages
        if ".sys.circuit_" in m.subject
    ]
    assert {c.circuit for c in circuits} == {"dep:search"}  # type: ignore[attr-defined]


async def put_presence(log: MemoryLog, agent_id: str, role: str, **fields: object) -> None:
    publisher = Publisher(log, identity(agent_id), NS)
    await Beacon(log, publisher, role, clock=lambda: NOW).put(**fields)  # type: ignore[arg-type]


async def test_liveness_and_load_come_from_presence_not_the_log() -> None:
    long_ago = NOW - 600 * 10**9  # registered ten minutes ago: the log says nothing since
    agents = [
        view(a, role, ("code",), last_heartbeat_at=long_ago, public_key=identity(a).public_key)
        for a, role in (("a-1", "alpha"), ("b-1", "beta"), ("c-1", "gamma"), ("d-1", "delta"))
    ]
    s = Setup(agents)
    await put_presence(s.log, "a-1", "alpha", load=3, tasks=["x", "y", "z"])  # live, busy
    await put_presence(s.log, "b-1", "beta")  # live, idle
    await put_presence(s.log, "d-1", "delta", load=0)
    # A forgery under d-1's key (a-1's genuine value, copied): refused, d-1 is not live.
    presence = await s.log.presence()
    await presence.put("d-1", (await presence.get("a-1")) or b"")
    await s.router.start()
    candidates = {c.role: c.in_flight for c in await s.router.candidates()}
    assert candidates == {"alpha": 3, "beta": 0}  # gamma never put one; delta's is forged
    await s.offer("t1", "code")
    assert [a.role for a in s.assignments()] == []
    await s.route()
    assert [a.role for a in s.assignments()] == ["beta"]  # the idle one
