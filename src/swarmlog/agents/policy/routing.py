"""Routing decisions (pure): which agent takes a task, and in which order tasks go.

The router feeds these functions a snapshot of the projections (agents, their capabilities, kill
status) with their liveness and load from the presence bucket
(:func:`~swarmlog.agents.policy.liveness.with_presence`); they decide without I/O, so the decision
can be property-tested and replayed in the simulation. The router and the simulation both route an
offer with :func:`pick` over :func:`role_candidates`, keep out what an open circuit guards
(:func:`through_circuits`), and feed outcomes to the breakers of :func:`judged_circuits`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from swarmlog.agents.policy.breakers import Breaker, BreakerPolicy, routable
from swarmlog.agents.policy.values import Value
from swarmlog.schemas.payloads import TaskOffered
from swarmlog.schemas.signing import CONDUCTOR_ROLE, ROUTER_ROLE, WATCHDOG_ROLE
from swarmlog.schemas.types import PRIORITIES

__all__ = [
    "AGENTS_SQL",
    "BUILTIN_ROLES",
    "TIER_COSTS",
    "AgentView",
    "Candidate",
    "QueuedTask",
    "agent_view",
    "choose",
    "circuits",
    "eligible",
    "external_roles",
    "judged_circuits",
    "pick",
    "priority_order",
    "role_candidates",
    "takes_work",
    "through_circuits",
    "tier_cost",
]

BUILTIN_ROLES = frozenset({ROUTER_ROLE, CONDUCTOR_ROLE, WATCHDOG_ROLE})
"""Roles that coordinate and never take routed work."""

TIER_COSTS: Mapping[str, int] = {"small": 0, "medium": 1, "large": 2}
"""Relative cost of the model tiers agents declare; an unknown or empty tier counts as medium."""


def tier_cost(tier: str | None) -> int:
    return TIER_COSTS.get(tier or "", 1)


class Candidate(Value):
    """An agent as the router sees it."""

    agent_id: str
    role: str
    capabilities: frozenset[str]
    in_flight: int = 0
    capacity: int = 1
    """Tasks it takes at once; at ``in_flight >= capacity`` it is full."""
    alive: bool = True
    """Heard from within its deadline (judged by the caller with its clock)."""
    killed: bool = False
    tier_cost: int = 0
    """Relative cost of its model tier: cheaper tiers are preferred."""
    dependencies: frozenset[str] = frozenset()
    """External services its work calls (each has a circuit breaker)."""
    external: bool = False
    """Some replica, live or not, faces the outside world (an ``external`` credential; see
    :func:`external_roles`): internal-only work is never routed to it."""

    @property
    def load(self) -> float:
        return self.in_flight / max(self.capacity, 1)

    @property
    def full(self) -> bool:
        return self.in_flight >= self.capacity


class QueuedTask(Value):
    task_id: str
    priority: str
    seq: int
    """Stream sequence of its submission: first come, first served within a priority."""


def eligible(candidates: Iterable[Candidate], capability: str) -> list[Candidate]:
    """Agents that may take work needing ``capability``: alive, not killed, capable."""
    return [
        c
        for c in candidates
        if c.alive and not c.killed and (not capability or capability in c.capabilities)
    ]


def choose(candidates: Iterable[Candidate], capability: str) -> Candidate | None:
    """The agent to take a task, or ``None`` when no agent may.

    Among eligible agents, those with room come first; then the cheapest tier, then the lightest
    load, then the agent id (so equal snapshots give equal decisions). When every eligible agent
    is full, the least loaded still gets it: its queue holds the task until it has room.
    """
    able = eligible(candidates, capability)
    if not able:
        return None
    with_room = [c for c in able if not c.full]
    pool = with_room or able
    # A total order (every field breaks ties): equal snapshots give equal decisions whatever
    # order the candidates come in.
    return min(
        pool,
        key=lambda c: (
            c.tier_cost,
            c.load,
            c.agent_id,
            c.role,
            sorted(c.capabilities),
            c.in_flight,
            c.capacity,
        ),
    )


def priority_order(tasks: Sequence[QueuedTask]) -> list[QueuedTask]:
    """Tasks in the order they are taken: most urgent priority first, then oldest first."""
    rank: dict[str, int] = {p: i for i, p in enumerate(PRIORITIES)}
    return sorted(tasks, key=lambda t: (rank.get(t.priority, len(rank)), t.seq))


class AgentView(Value):
    """One replica as the projection shows it."""

    agent_id: str
    role: str
    capabilities: frozenset[str]
    status: str
    """``registered`` (live, as far as the log says), ``issued`` (never started), ``stopped``,
    ``lost``, ``killed``."""
    last_heartbeat_at: int | None
    """When it was last heard from: its registration (or an old log's heartbeat) in the
    projection; its presence, once the shell has merged it in
    (:func:`~swarmlog.agents.policy.liveness.with_presence`)."""
    in_flight: int = 0
    """Tasks in hand: what its presence reports, once merged in."""
    tier: str = ""
    dependencies: frozenset[str] = frozenset()
    trust_level: str = "internal"
    public_key: str | None = None
    """The key its presence must be signed with (its credential's, ``None`` when revoked)."""


def takes_work(agent: AgentView) -> bool:
    """Whether work may be routed to ``agent`` at all (a registered replica of a role that
    takes work; the built-in roles take none), live or not."""
    return agent.role not in BUILTIN_ROLES and agent.status == "registered"


AGENTS_SQL = (
    "SELECT a.agent_id, a.role, a.capabilities, a.status, a.last_heartbeat_at, a.in_flight,"
    " a.tier, a.dependencies, a.trust_level,"
    " CASE WHEN c.revoked THEN NULL ELSE a.public_key END AS public_key"
    " FROM agents a LEFT JOIN credentials c ON c.public_key = a.public_key"
)
"""The projection query the agents are read with, each row then made an :func:`agent_view`."""


def agent_view(row: Mapping[str, Any]) -> AgentView:
    """One row of :data:`AGENTS_SQL` (column name to value) as an :class:`AgentView`."""
    return AgentView(
        agent_id=str(row["agent_id"]),
        role=str(row["role"] or ""),
        capabilities=_names(row["capabilities"]),
        status=str(row["status"] or ""),
        last_heartbeat_at=row["last_heartbeat_at"],
        in_flight=int(row["in_flight"] or 0),
        tier=str(row["tier"] or ""),
        dependencies=_names(row["dependencies"]),
        # A missing level is read as internal, as the credential's own default is.
        trust_level=str(row["trust_level"] or "internal"),
        public_key=row.get("public_key") or None,
    )


def _names(text: str | None) -> frozenset[str]:
    """A JSON list of names from the projection (empty when missing or malformed)."""
    try:
        return frozenset(str(c) for c in json.loads(text or "[]"))
    except (ValueError, TypeError):
        return frozenset()


def external_roles(agents: Iterable[AgentView]) -> frozenset[str]:
    """Roles that must never get internal-only work: those with a replica holding an
    ``external`` credential.

    Every replica the projection knows counts, live or not (registered, issued and never
    started, killed): a role's work sits in a queue all its replicas share, so one that is down
    now may take it when it comes back. The router, the runtime's hand-over to a fallback role,
    a swarm claim and the escalation desk all decide with this one rule.
    """
    return frozenset(a.role for a in agents if a.trust_level == "external")


def role_candidates(
    agents: Iterable[AgentView],
    *,
    now: int,
    stale_after: int,
    pending: Mapping[str, int],
    assigned: Mapping[str, int] | None = None,
) -> list[Candidate]:
    """Roles as routing candidates: work goes to a role's shared queue, so a role's load is its
    replicas' in-flight work plus its queue's lag (``pending``) plus what was assigned since the
    snapshot (``assigned``), over its live replicas.

    A replica is live when registered, not killed and heard from within ``stale_after`` ns of
    ``now``. A role with no live replica is not a candidate (its work would wait forever).
    """
    assigned = assigned or {}
    agents = list(agents)
    external = external_roles(agents)
    live: dict[str, list[AgentView]] = {}
    for agent in agents:
        if not takes_work(agent):
            continue
        if agent.last_heartbeat_at is None or now - agent.last_heartbeat_at > stale_after:
            continue
        live.setdefault(agent.role, []).append(agent)
    out = []
    for role, replicas in sorted(live.items()):
        out.append(
            Candidate(
                agent_id=role,
                role=role,
                capabilities=frozenset().union(*(r.capabilities for r in replicas)),
                in_flight=sum(r.in_flight for r in replicas)
                + pending.get(role, 0)
                + assigned.get(role, 0),
                capacity=len(replicas),
                tier_cost=min(tier_cost(r.tier) for r in replicas),
                dependencies=frozenset().union(*(r.dependencies for r in replicas)),
                external=role in external,
            )
        )
    return out


def pick(offer: TaskOffered, candidates: Sequence[Candidate]) -> Candidate | None:
    """The role an offer goes to (:func:`choose`), or ``None`` while no role may take it.

    Internal-only work never goes to a role with an external replica; a reassignment passes
    over the roles in the offer's ``avoid_roles`` when another role can do it.
    """
    if offer.internal_only:
        candidates = [c for c in candidates if not c.external]
    others = [c for c in candidates if c.role not in offer.avoid_roles]
    return choose(others, offer.capability) or choose(candidates, offer.capability)


def circuits(role: str, dependencies: Iterable[str]) -> list[str]:
    """The circuits work for ``role`` goes through: its own and one per declared dependency."""
    return [f"role:{role}", *(f"dep:{d}" for d in sorted(dependencies))]


_CLOSED = Breaker()


def through_circuits(
    candidates: Iterable[Candidate],
    breakers: Mapping[str, Breaker],
    *,
    now: int,
    policy: BreakerPolicy,
) -> list[Candidate]:
    """The candidates whose every circuit lets work through now: an open circuit takes its role
    out (its own, or one of a dependency it declares), so the work goes to other roles with the
    capability (the fallback), or waits. A circuit with no breaker yet is closed."""
    return [
        c
        for c in candidates
        if all(
            routable(breakers.get(k, _CLOSED), now=now, policy=policy)
            for k in circuits(c.role, c.dependencies)
        )
    ]


def judged_circuits(
    role: str, ok: bool | None, dependency: str | None, declared: Iterable[str]
) -> list[str]:
    """The circuits an outcome of ``role``'s work counts for: a result (``ok``) for the role and
    every dependency it declares; an error naming a dependency against that dependency alone;
    any other error against the role. A permanent error (``ok`` is ``None``) goes to the same
    circuits as a result does, where it counts for nothing but frees the probe it may have been
    (see :func:`~swarmlog.agents.policy.breakers.record`)."""
    if ok is None or ok:
        return circuits(role, declared)
    return [f"dep:{dependency}"] if dependency else [f"role:{role}"]
