"""Deadlocks in the wait-for graph (pure): the cycles, the waits in them, and the victim.

The wait-for graph has an edge ``waiter -> waits_on`` for every open wait: an agent waiting for
the answer to its clarification request (``agent -> agent``), a task waiting for a subtask it
delegated (``task -> task``). Nobody on a cycle can move until someone on it gives up, so a cycle
is a deadlock. :func:`on_cycles` is the reference detector (Tarjan's strongly connected
components, iterative); the projection answers the same question in SQL (:data:`ON_CYCLES_SQL`)
and a property test holds the two to agreement. :func:`find_deadlocks` names, for each
deadlock, one cycle through it, the waits on that cycle, and the **victim**: the youngest wait
(the last to start, then the greatest reference), the one whose breaking undoes the least.
:func:`response` is what the watchdog does about one, by its policy: the events it publishes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise
from typing import Literal

from swarmlog.agents.policy.values import Value
from swarmlog.schemas.payloads import DeadlockDetected, Payload, TaskEscalated

__all__ = [
    "ON_CYCLES_SQL",
    "Deadlock",
    "Notice",
    "Policy",
    "Wait",
    "find_deadlocks",
    "on_cycles",
    "response",
]

Policy = Literal["break", "escalate"]
"""What the watchdog does about a deadlock: break it (the victim gives its wait up) or escalate
it (report it, and give the victim's task to a human)."""

ON_CYCLES_SQL = """
WITH RECURSIVE reach(src, dst) AS (
    SELECT waiter, waits_on FROM {edges}
    UNION
    SELECT r.src, e.waits_on FROM reach r JOIN {edges} e ON e.waiter = r.dst
)
SELECT DISTINCT src AS node FROM reach WHERE src = dst ORDER BY node
"""
"""The nodes on some cycle of the graph in table ``{edges}`` (columns ``waiter``, ``waits_on``):
those that reach themselves. ``UNION`` (not ``UNION ALL``) stops the recursion at pairs already
found, so it ends on cyclic graphs; the cost grows with the pairs reachable, which a wait-for
graph (each waiter waits on one or two others) keeps small."""


class Wait(Value):
    """One open wait (a ``waits_for`` row)."""

    ref: str
    """What the wait is about: a clarification's request id, a subtask's id."""
    waiter: str
    waits_on: str
    since: int
    kind: str = "clarification"
    task_id: str | None = None
    workflow_id: str | None = None


class Deadlock(Value):
    cycle: tuple[str, ...]
    """The nodes of one cycle, the first repeated at the end: ``(a, b, a)``."""
    waits: tuple[Wait, ...]
    """The waits along that cycle, in its order."""
    victim: Wait
    """The wait to break (the youngest on the cycle)."""

    @property
    def key(self) -> str:
        """The same for the same deadlock however often it is seen: its waits' references."""
        return ",".join(sorted(w.ref for w in self.waits))


def _components(graph: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Strongly connected components (Tarjan's algorithm without recursion, sorted order)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            nexts = graph.get(node, ())
            if i < len(nexts):
                work.append((node, i + 1))
                nxt = nexts[i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                found.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return found


def _graph(edges: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    return {node: sorted(nexts) for node, nexts in graph.items()}


def on_cycles(edges: Iterable[tuple[str, str]]) -> set[str]:
    """The nodes that lie on some cycle of the graph ``waiter -> waits_on`` (self-waits too)."""
    graph = _graph(edges)
    nodes: set[str] = set()
    for component in _components(graph):
        if len(component) > 1 or component[0] in graph[component[0]]:
            nodes.update(component)
    return nodes


def _cycle_through(start: str, members: set[str], graph: Mapping[str, Sequence[str]]) -> list[str]:
    """A shortest cycle from ``start`` back to it inside one component (breadth first)."""
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in graph[node]:
                if nxt not in members:
                    continue
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [*reversed(path), start]
                if nxt not in parents:
                    parents[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError("a strongly connected component always has a cycle")


def find_deadlocks(waits: Iterable[Wait]) -> list[Deadlock]:
    """One :class:`Deadlock` per group of waits stuck on each other, in a stable order."""
    waits = list(waits)
    graph = _graph((w.waiter, w.waits_on) for w in waits)
    by_edge: dict[tuple[str, str], Wait] = {}
    for w in sorted(waits, key=lambda w: (w.since, w.ref)):
        by_edge[(w.waiter, w.waits_on)] = w  # the youngest of parallel waits stands for them
    found = []
    for component in _components(graph):
        start = component[0]
        if len(component) == 1 and start not in graph[start]:
            continue
        cycle = _cycle_through(start, set(component), graph)
        along = tuple(by_edge[edge] for edge in pairwise(cycle))
        victim = max(along, key=lambda w: (w.since, w.ref))
        found.append(Deadlock(tuple(cycle), along, victim))
    return sorted(found, key=lambda d: d.cycle)


class Notice(Value):
    """One event the watchdog publishes about a deadlock, with its recipient (``None``: none)."""

    payload: Payload
    recipient: str | None = None


def response(deadlock: Deadlock, policy: Policy) -> list[Notice]:
    """The events that act on ``deadlock`` by ``policy``, in the order they are published.

    Only a clarification wait can be given up (its asker's handler sees a retryable
    ``deadlock`` error): breaking it is a ``deadlock_detected`` addressed to the victim's waiter.
    Any other deadlock, or any deadlock under ``escalate``, is reported only, and the victim's
    task (when it has one) escalated to a human.
    """
    victim = deadlock.victim
    cycle = list(deadlock.cycle)
    if policy == "break" and victim.kind == "clarification":
        detected = DeadlockDetected(
            cycle=cycle, victim=victim.ref, to=victim.waiter, task_id=victim.task_id
        )
        return [Notice(detected, victim.waiter)]
    notices = [Notice(DeadlockDetected(cycle=cycle, task_id=victim.task_id))]
    if victim.task_id:
        reason = f"deadlock {' -> '.join(cycle)}: a human decides who gives up"
        notices.append(Notice(TaskEscalated(task_id=victim.task_id, reason=reason[:400])))
    return notices
