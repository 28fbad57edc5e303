"""A running workflow as the workflow decisions see it, and the actions they answer with (pure).

Shared by :mod:`swarmlog.agents.policy.workflows` (every pattern) and
:mod:`swarmlog.agents.policy.supervision` (the supervisor pattern), which build on it and never on
each other's internals; the conductor turns each action into an event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from typing import Any

from swarmlog.agents.policy.planning import Plan
from swarmlog.agents.policy.values import Value

__all__ = [
    "Action",
    "BudgetAlert",
    "Complete",
    "Offer",
    "Revise",
    "SetPlan",
    "StepState",
    "WorkflowView",
]


class StepState(Value):
    """What the projection says about one step's task."""

    status: str
    output: Any = None
    error: str | None = None
    role: str | None = None
    """The role that did (or does) it."""


class WorkflowView(Value):
    workflow_id: str
    pattern: str
    input: Any
    plan: Plan | None = None
    tasks: Mapping[str, StepState] = field(default_factory=dict)
    """By task id."""
    budget_tokens: int | None = None
    used_tokens: int = 0
    alerted: frozenset[str] = frozenset()
    """Budget alerts already on the log (``soft``, ``hard``)."""
    capabilities: frozenset[str] | None = None
    """What registered agents can do (``None``: unknown, plans are not checked against it)."""


class SetPlan(Value):
    plan: Plan


class Revise(Value):
    """A new plan version (completed steps kept)."""

    plan: Plan
    reason: str


class Offer(Value):
    task_id: str
    capability: str
    input: Any
    mode: str = "routed"
    avoid_roles: tuple[str, ...] = ()
    """Roles the router should pass over when another can do it (a reassignment)."""
    internal_only: bool = False
    """Routed only to roles with no external replica."""


class BudgetAlert(Value):
    limit: str  # "soft" | "hard"
    used_tokens: int
    budget_tokens: int


class Complete(Value):
    status: str  # "succeeded" | "failed"
    result: Any


Action = SetPlan | Revise | Offer | Complete | BudgetAlert
