"""Routing decisions (pure): which agent takes a task, and in which order tasks go.

The router feeds these functions a snapshot of the projections (agents, their capabilities,
liveness, kill status and load); they decide without I/O, so the decision can be property-tested
and replayed in the simulation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from swarmlog.schemas.types import PRIORITIES

__all__ = [
    "BUILTIN_ROLES",
    "TIER_COSTS",
    "AgentView",
    "Candidate",
    "QueuedTask",
    "choose",
    "eligible",
    "priority_order",
    "role_candidates",
    "tier_cost",
]

BUILTIN_ROLES = frozenset({"router", "conductor", "watchdog"})
"""Roles that coordinate and never take routed work."""

TIER_COSTS: Mapping[str, int] = {"small": 0, "medium": 1, "large": 2}
"""Relative cost of the model tiers agents declare; an unknown or empty tier counts as medium."""


def tier_cost(tier: str | None) -> int:
    return TIER_COSTS.get(tier or "", 1)


@dataclass(frozen=True)
class Candidate:
    """An agent as the router sees it."""

    agent_id: str
    role: str
    capabilities: frozenset[str]
    in_flight: int = 0
    capacity: int = 1
    """Tasks it takes at once; at ``in_flight >= capacity`` it is full."""
    alive: bool = True
    """Heartbeat within its deadline (judged by the caller with its clock)."""
    killed: bool = False
    tier_cost: int = 0
    """Relative cost of its model tier: cheaper tiers are preferred."""
    dependencies: frozenset[str] = frozenset()
    """External services its work calls (each has a circuit breaker)."""
    external: bool = False
    """Some replica faces the outside world (an ``external`` credential): internal-only work
    is never routed to it."""

    @property
    def load(self) -> float:
        return self.in_flight / max(self.capacity, 1)

    @property
    def full(self) -> bool:
        return self.in_flight >= self.capacity


@dataclass(frozen=True)
class QueuedTask:
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


@dataclass(frozen=True)
class AgentView:
    """One replica as the projection shows it."""

    agent_id: str
    role: str
    capabilities: frozenset[str]
    status: str
    """``registered``, ``killed``, ``issued`` (never started) ..."""
    last_heartbeat_at: int | None
    in_flight: int = 0
    tier: str = ""
    dependencies: frozenset[str] = frozenset()
    trust_level: str = "internal"


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
    live: dict[str, list[AgentView]] = {}
    for agent in agents:
        if agent.role in BUILTIN_ROLES or agent.status != "registered":
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
                external=any(r.trust_level == "external" for r in replicas),
            )
        )
    return out
