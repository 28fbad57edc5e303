"""Routing decisions (pure): which agent takes a task, and in which order tasks go.

The router feeds these functions a snapshot of the projections (agents, their capabilities,
liveness, kill status and load); they decide without I/O, so the decision can be property-tested
and replayed in the simulation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from swarmlog.schemas.types import PRIORITIES

__all__ = ["Candidate", "QueuedTask", "choose", "eligible", "priority_order"]


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
    return min(pool, key=lambda c: (c.tier_cost, c.load, c.agent_id))


def priority_order(tasks: Sequence[QueuedTask]) -> list[QueuedTask]:
    """Tasks in the order they are taken: most urgent priority first, then oldest first."""
    rank: dict[str, int] = {p: i for i, p in enumerate(PRIORITIES)}
    return sorted(tasks, key=lambda t: (rank.get(t.priority, len(rank)), t.seq))
