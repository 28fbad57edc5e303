"""Follow-up assignments (pure): the ``task_assignment`` that carries a task on.

A task is assigned again, to a role, in three places: a swarm agent that won the claim on an
offer runs it (the offer becomes its assignment), an agent out of attempts hands it to its
``fallback_role`` (a reassignment), and the operator resolves an escalation with ``retry`` or
``reassign``. Each derives the new assignment with :func:`follow_up`, so what must survive the
move (above all ``internal_only``, and the deadline, priority, parent, expected output) is
carried in one place, never rebuilt field by field.

Who may receive it is decided by :func:`refusal`, with the router's own rule
(:func:`~swarmlog.agents.policy.routing.external_roles`): internal-only work never goes to a role
that has an external replica.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from swarmlog.agents.policy.routing import AgentView, external_roles
from swarmlog.schemas.payloads import TaskAssignment, TaskOffered

__all__ = ["MAX_ATTEMPT", "follow_up", "refusal"]

MAX_ATTEMPT = 1000
"""The highest attempt number an assignment may carry (the schema's bound)."""

_SET_HERE = frozenset({"role", "attempt"})
_CARRIED = tuple(f.name for f in msgspec.structs.fields(TaskAssignment) if f.name not in _SET_HERE)
"""Every other field of an assignment: taken from the source wherever the source has it.

By name, so that a field added later to both ``TaskOffered`` and ``TaskAssignment`` is carried
without anyone remembering to."""


def follow_up(
    source: TaskAssignment | TaskOffered, *, role: str, attempts: int = 0
) -> TaskAssignment:
    """The assignment that carries ``source`` on with ``role``, after ``attempts`` attempts.

    - a claimed swarm offer: ``follow_up(offer, role=my_role)`` (the first attempt);
    - a hand-over to a fallback role: ``follow_up(task, role=fallback, attempts=attempt)``;
    - an escalation resolved with retry or reassign: ``follow_up(last, role=role,
      attempts=recorded)``, ``last`` being the task's last assignment (or its offer).

    Every field of ``TaskAssignment`` the source has is carried as it is; an offer's routing
    fields (``mode``, ``avoid_roles``) are not an assignment's and stay behind. The attempt
    counts on from the source's own and from ``attempts`` (so a reassigned task resumes from
    its last checkpoint, see ``TaskCheckpointed``), up to :data:`MAX_ATTEMPT`.
    """
    carried = {name: getattr(source, name) for name in _CARRIED if hasattr(source, name)}
    before = source.attempt if isinstance(source, TaskAssignment) else 0
    attempt = min(max(before, attempts) + 1, MAX_ATTEMPT)
    return TaskAssignment(role=role, attempt=attempt, **carried)


def refusal(task: TaskAssignment, agents: Iterable[AgentView]) -> str | None:
    """Why ``task`` must not go to its ``role``, or ``None`` when it may.

    ``agents`` are every agent the projection knows: internal-only work never goes to a role
    with an external replica, live or not (the router's rule)."""
    if task.internal_only and task.role in external_roles(agents):
        return f"task {task.task_id} is internal-only and role {task.role} has an external replica"
    return None
