"""Resolving an escalation: the operator's decision, checked, then two operator-signed events.

What ``swarmlog escalations resolve`` and the console's escalation desk both run. A resolution
is ``escalation_resolved`` (what the human decided and why) followed by what the work continues
from: the task's assignment again (``retry``, or ``reassign`` to another role), its ``result``
(``answer``), or its cancellation (``cancel``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from swarmlog.agents.policy.followups import follow_up, refusal
from swarmlog.agents.policy.routing import AGENTS_SQL, agent_view
from swarmlog.control import views
from swarmlog.control.checks import conform
from swarmlog.errors import ConfigError
from swarmlog.projections.client import Query
from swarmlog.schemas.payloads import (
    EscalationResolved,
    Payload,
    Result,
    TaskAssignment,
    TaskCancelled,
    TaskOffered,
)
from swarmlog.schemas.types import Name, Role

__all__ = ["ACTIONS", "Action", "Resolution", "choose", "resolve"]

Action = Literal["retry", "reassign", "answer", "cancel"]
ACTIONS: tuple[Action, ...] = ("retry", "reassign", "answer", "cancel")

Publish = Callable[..., Awaitable[int]]
"""Signs ``payload`` as the operator with the envelope fields given and returns its seq."""

_Source = TaskAssignment | TaskOffered
"""What a task was last run from: its assignment, or its offer (a swarm claim, an unrouted one)."""


@dataclass(frozen=True)
class Resolution:
    """A resolved escalation: the action taken and the seqs of the two events."""

    escalation_id: str
    action: Action
    seqs: list[int]


def choose(action: str | None, role: str | None, answer: str | None) -> Action:
    """The one action that ``action`` (retry, cancel), ``role`` (reassign) and ``answer``
    name together; :class:`~swarmlog.errors.ConfigError` unless exactly one is given."""
    chosen = [a for a, given in (("reassign", role), ("answer", answer)) if given is not None]
    if action is not None:
        chosen.append(action)
    if len(chosen) != 1 or chosen[0] not in ACTIONS:
        raise ConfigError("give exactly one of --retry, --reassign ROLE, --answer TEXT, --cancel")
    return chosen[0]


async def _assignment_again(query: Query, found: dict[str, Any], role: str | None) -> Payload:
    """The assignment a retry (``role`` None: the same role) or a reassignment publishes: the
    task's last assignment (or its offer) carried on by :func:`follow_up`, refused when it would
    take internal-only work to a role with an external replica."""
    task_id = msgspec.convert(found["task_id"], Name)  # a subject token: safe in the SQL below
    rows = await query(
        "SELECT payload FROM events WHERE type IN ('task_assignment', 'task_offered')"
        f" AND json_extract_string(payload, '$.task_id') = '{task_id}' ORDER BY seq"
    )
    sources = [msgspec.json.decode(r["payload"], type=_Source) for r in rows]
    if not sources:
        raise ConfigError(f"task {task_id} was never offered or assigned; nothing to run again")
    source = sources[-1]
    if any(s.internal_only for s in sources):
        # Once internal, always: a later event of the task cannot take the flag off.
        source = msgspec.structs.replace(source, internal_only=True)
    role = role or (source.role if isinstance(source, TaskAssignment) else found["role"])
    if not role:
        raise ConfigError(f"task {task_id} never had a role; give one with --reassign ROLE")
    assignment = follow_up(source, role=role, attempts=int(found["attempt"] or 1))
    agents = [agent_view(r) for r in await query(AGENTS_SQL)]
    refused = refusal(assignment, agents)
    if refused is not None:
        raise ConfigError(f"{refused}; reassign it to a role with internal replicas only")
    return assignment


async def resolve(
    query: Query,
    publish: Publish,
    escalation_id: str,
    *,
    action: str | None = None,
    role: str | None = None,
    answer: str | None = None,
    note: str = "",
) -> Resolution:
    """Resolve ``escalation_id`` with exactly one of ``action="retry"``/``"cancel"``, ``role``
    (reassign) or ``answer``; :class:`~swarmlog.errors.ConfigError` (nothing published) when
    the choice is not one, the escalation is not open, or the work cannot go where it would."""
    chosen = choose(action, role, answer)
    detail = await views.escalation(query, escalation_id)
    found: dict[str, Any] = msgspec.to_builtins(detail.escalation)
    if found["status"] != "open":
        raise ConfigError(f"escalation {escalation_id} is {found['status']} already")
    if role is not None:
        conform(role, Role, f"--reassign {role!r}: a role is lowercase letters, digits, - _")
    task_id = found["task_id"]
    then: Payload
    if chosen in ("retry", "reassign"):
        then = await _assignment_again(query, found, role)
    elif chosen == "answer":
        then = Result(task_id=task_id, output=answer)
    else:
        then = TaskCancelled(task_id=task_id, reason=note or "cancelled by the operator")
    resolution = EscalationResolved(
        escalation_id=escalation_id,
        task_id=task_id,
        action=chosen,
        role=role,
        answer=answer or "",
        note=note,
    )
    fields = {"workflow_id": found["workflow_id"], "causation_id": escalation_id}
    seqs = [await publish(p, **fields) for p in (resolution, then)]
    return Resolution(escalation_id, chosen, seqs)
