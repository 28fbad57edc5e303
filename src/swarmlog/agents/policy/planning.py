"""Plans as dependency DAGs (pure): validation, what is ready to run, revision.

A plan is a list of steps, each an atomic subtask needing one capability, with the ids of the
steps whose outputs it needs. A plan is used only once :func:`validate` accepts it: ids unique,
dependencies known, no cycle, every capability one the swarm has, and bounded in size. Ready steps
(every dependency done) run in parallel; when a step fails for good, the planner proposes new
steps and :func:`revise` keeps what is done and swaps in the rest, as a new version.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

import msgspec

from swarmlog.errors import PlanError
from swarmlog.schemas.types import Capability, Json, Name

__all__ = [
    "MAX_STEPS",
    "Plan",
    "PlanError",
    "PlanStep",
    "decode_plan",
    "find_cycle",
    "ready",
    "revise",
    "topological_order",
    "validate",
]

MAX_STEPS = 200
"""The largest plan accepted by default: a planner that returns more is wrong, not ambitious."""


class PlanStep(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One atomic subtask of a plan."""

    id: Name
    capability: Capability
    input: Json = None
    depends_on: list[Name] = msgspec.field(default_factory=list)
    description: str = ""
    internal_only: bool = False
    """Its input must not reach an external agent (see ``TaskOffered.internal_only``)."""


class Plan(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A versioned DAG of steps."""

    steps: list[PlanStep]
    version: int = 1
    planned_by: str = ""
    """The planner task whose answer this plan is (supervisor workflows)."""

    def step(self, step_id: str) -> PlanStep:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)


def decode_plan(raw: Any) -> Plan:
    """A :class:`Plan` from JSON-like data (what a planner returned), or :class:`PlanError`."""
    try:
        return msgspec.convert(raw, Plan)
    except msgspec.ValidationError as exc:
        raise PlanError("malformed", f"the plan is malformed: {exc}") from None


def find_cycle(edges: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A cycle in the graph ``node -> nodes it depends on``, as ``[a, b, ..., a]``, or ``None``.

    Iterative depth-first search (no recursion limit on deep plans); nodes are visited in sorted
    order so the same graph always reports the same cycle.
    """
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(edges, white)
    for root in sorted(edges):
        if colour[root] != white:
            continue
        path: list[str] = [root]
        stack = [iter(sorted(edges[root]))]
        colour[root] = grey
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                colour[path.pop()] = black
                stack.pop()
                continue
            state = colour.get(nxt, black)  # an unknown node has no edges: never on a cycle
            if state == grey:
                return [*path[path.index(nxt) :], nxt]
            if state == white:
                colour[nxt] = grey
                path.append(nxt)
                stack.append(iter(sorted(edges[nxt])))
    return None


def validate(
    plan: Plan,
    capabilities: Collection[str] | None = None,
    *,
    max_steps: int = MAX_STEPS,
) -> None:
    """Raise :class:`PlanError` unless ``plan`` may be used.

    ``capabilities`` are those the swarm has (``None``: do not check them).
    """
    if not plan.steps:
        raise PlanError("empty", "the plan has no steps")
    if len(plan.steps) > max_steps:
        raise PlanError(
            "too_large", f"the plan has {len(plan.steps)} steps; at most {max_steps} are accepted"
        )
    ids: set[str] = set()
    for step in plan.steps:
        if step.id in ids:
            raise PlanError("duplicate_step", f"step id {step.id!r} is used twice")
        ids.add(step.id)
    for step in plan.steps:
        for dep in step.depends_on:
            if dep not in ids:
                raise PlanError(
                    "unknown_dependency",
                    f"step {step.id!r} depends on {dep!r}, which is not a step",
                )
        if capabilities is not None and step.capability not in capabilities:
            raise PlanError(
                "unknown_capability",
                f"step {step.id!r} needs capability {step.capability!r}, which no agent has",
            )
    cycle = find_cycle({s.id: s.depends_on for s in plan.steps})
    if cycle is not None:
        raise PlanError("cycle", "the plan has a cycle: " + " -> ".join(cycle))


def topological_order(plan: Plan) -> list[str]:
    """Step ids, every step after its dependencies (ties in plan order). Assumes a valid plan."""
    order: list[str] = []
    done: set[str] = set()
    remaining = list(plan.steps)
    while remaining:
        progressed = [s for s in remaining if set(s.depends_on) <= done]
        if not progressed:
            raise PlanError("cycle", "the plan has a cycle")
        for s in progressed:
            order.append(s.id)
            done.add(s.id)
        remaining = [s for s in remaining if s.id not in done]
    return order


def ready(plan: Plan, done: Collection[str], started: Collection[str]) -> list[PlanStep]:
    """Steps that may start now: not started or done, every dependency done (plan order)."""
    return [
        s
        for s in plan.steps
        if s.id not in done and s.id not in started and all(d in done for d in s.depends_on)
    ]


def revise(
    plan: Plan,
    done: Collection[str],
    replacement: Iterable[PlanStep],
    capabilities: Collection[str] | None = None,
) -> Plan:
    """The next version: the steps in ``done`` kept as they were, every other step replaced by
    ``replacement`` (which may depend on kept steps). Validated before it is returned."""
    kept = [s for s in plan.steps if s.id in done]
    revised = Plan(steps=[*kept, *replacement], version=plan.version + 1)
    validate(revised, capabilities)
    return revised
