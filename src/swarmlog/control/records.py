"""The records of the views (what :class:`~swarmlog.control.client.Client` returns and the CLI
prints: ``--json`` is :func:`msgspec.to_builtins` of them): frozen structs whose field names are
the CLI's JSON keys, in the same order. Times are nanoseconds since the Unix epoch.
"""

from __future__ import annotations

from typing import Any

import msgspec

from swarmlog.schemas.types import Json

__all__ = [
    "ESCALATION_OPTIONS",
    "MAX_ROWS",
    "TASK_STATUSES",
    "AgentRow",
    "BudgetRow",
    "Crash",
    "EscalationDetail",
    "EscalationInfo",
    "EscalationRow",
    "GraphNode",
    "HistoryEntry",
    "QueryRows",
    "Record",
    "Submitted",
    "TaskDetail",
    "TaskRow",
    "TaskSubmitted",
    "TaskView",
    "WorkflowDetail",
    "WorkflowRow",
    "WorkflowView",
]

TASK_STATUSES = (
    "offered",
    "assigned",
    "claimed",
    "running",
    "errored",
    "retry_scheduled",
    "succeeded",
    "failed",
    "escalated",
    "cancelled",
)
"""Every state a task can be in (``tasks --status``)."""

ESCALATION_OPTIONS = {
    "retry": "run it again on the same role (--retry)",
    "reassign": "hand it to another role (--reassign ROLE)",
    "answer": "give the output yourself (--answer TEXT)",
    "cancel": "give up on it; its workflow fails (--cancel)",
}
"""What an open escalation can be resolved with (``escalations resolve``)."""

MAX_ROWS = 10_000
"""The most rows a listing returns at once (``tasks --limit``, ``calls --limit``)."""


class Record(msgspec.Struct, frozen=True, kw_only=True):
    """A record of a view."""


class WorkflowRow(Record, frozen=True):
    """A line of ``swarmlog workflows``."""

    workflow_id: str
    pattern: str | None
    status: str | None
    plan_version: int | None
    submitted_by: str | None
    submitted_at: int | None
    """Nanoseconds since the Unix epoch, like every time here."""
    completed_at: int | None


class WorkflowView(Record, frozen=True):
    """A workflow, whole: what :meth:`Client.wait` returns and ``show WF --json`` prints as
    ``workflow``. ``status`` is ``running``, ``succeeded``, ``failed`` or ``cancelled``."""

    workflow_id: str
    pattern: str | None
    status: str | None
    input: Json
    """The pattern's settings as submitted (``submit --input`` with the other options)."""
    result: Json
    """The outcome, once it ended (the error's details when it failed)."""
    plan: Json
    plan_version: int | None
    budget_tokens: int | None
    submitted_by: str | None
    submitted_at: int | None
    completed_at: int | None
    updated_seq: int | None


class TaskRow(Record, frozen=True):
    """A line of ``swarmlog tasks``; ``agent`` is who completed it, else who claimed it."""

    task_id: str
    workflow_id: str | None
    role: str | None
    capability: str | None
    priority: str | None
    status: str | None
    attempt: int | None
    agent: str | None
    error: str | None


class TaskView(Record, frozen=True):
    """A task, whole (``show TASK --json`` prints it as ``task``)."""

    task_id: str
    workflow_id: str | None
    role: str | None
    capability: str | None
    priority: str | None
    mode: str | None
    status: str | None
    attempt: int | None
    assigned_by: str | None
    claimed_by: str | None
    completed_by: str | None
    parent_task_id: str | None
    input: Json
    output: Json
    error: str | None
    cached: bool | None
    created_at: int | None
    updated_at: int | None
    updated_seq: int | None


class HistoryEntry(Record, frozen=True):
    """One event of a task's history."""

    seq: int
    type: str
    sender: str | None
    occurred_at: int | None


class GraphNode(Record, frozen=True):
    """A task of a workflow's graph (see :mod:`swarmlog.control.graph`): every task of the
    workflow, and each step of its plan that has no task yet."""

    id: str
    """The task id (of a step not yet run: the id its task will have)."""
    capability: str | None
    status: str
    """The task's state; ``pending`` while a step has no task."""
    kind: str = "task"
    """What the task is to the workflow: ``plan`` (a request to the planner), ``step`` (a plan
    step's first attempt), ``retry``, ``review``, ``synthesis``, ``subtask`` or ``task``."""
    step: str | None = None
    """The plan step it is an attempt or a review of."""


class WorkflowDetail(Record, frozen=True):
    """``show WF``: the workflow and its graph of tasks (``edges``: ``[from, to]``)."""

    workflow: WorkflowView
    nodes: list[GraphNode]
    edges: list[tuple[str, str]]
    blocked: list[str] = []
    """While it runs: what holds it up that will not clear by itself (an open escalation, a
    capability no live agent has, no live conductor, a killed role...); empty when nothing."""


class Crash(Record, frozen=True):
    """The last crash of a task's handler: its ``error`` event with a traceback."""

    seq: int
    """The stream sequence of that ``error`` event."""
    attempt: int | None
    """The task's attempt it ended (``None`` when its ``task_started`` is not in the log)."""
    error: str
    """``code: message``, as the task's ``error`` column keeps it."""
    traceback: str
    """Its last frames and the exception (see :data:`~swarmlog.schemas.payloads.MAX_TRACEBACK`;
    the whole traceback is in the agent's log)."""


class TaskDetail(Record, frozen=True):
    """``show TASK``: the task, its whole history on the log, and the last crash of its handler
    (``None`` when it never crashed; a ``TaskError`` the handler raised is no crash)."""

    task: TaskView
    history: list[HistoryEntry]
    crash: Crash | None = None
    blocked: list[str] = []
    """While it is open: what holds it up that will not clear by itself; empty when nothing."""


class AgentRow(Record, frozen=True):
    """A line of ``swarmlog agents``."""

    agent_id: str
    role: str | None
    capabilities: list[str]
    tier: str | None
    trust_level: str | None
    status: str | None
    """From the log: ``registered`` (live), ``issued`` (never started), ``stopped``, ``lost``
    (the watchdog found no presence of it), ``killed``."""
    in_flight: int | None
    """Tasks in hand, as its presence says (the projection's without one)."""
    last_heartbeat_at: int | None
    """When it was last heard from: its presence, or its registration."""
    capacity: int | None = None
    """Tasks it takes at once, as its presence says."""
    presence: str = ""
    """Its value in the presence bucket now: ``fresh``, ``stale``, ``""`` (none) or
    ``refused: REASON`` (it does not verify, so it counts as none)."""


class BudgetRow(Record, frozen=True):
    """A line of ``swarmlog budgets``; ``exceeded`` is ``hard``, ``soft`` or ``""``."""

    scope: str
    scope_id: str
    used_tokens: int | None
    reserved_tokens: int
    """Tokens of the workflow's budget that its model calls in flight hold (0 for agents)."""
    budget_tokens: int | None
    exceeded: str
    workflow_status: str | None


class EscalationRow(Record, frozen=True):
    """A line of ``swarmlog escalations list``."""

    escalation_id: str
    task_id: str | None
    workflow_id: str | None
    role: str | None
    status: str | None
    reason: str | None
    error: str | None


class EscalationInfo(Record, frozen=True):
    """An escalation and the state of its task (``escalations show ID --json``: ``escalation``)."""

    escalation_id: str
    task_id: str | None
    workflow_id: str | None
    reason: str | None
    status: str | None
    created_at: int | None
    resolution: str | None
    role: str | None
    capability: str | None
    priority: str | None
    attempt: int | None
    task_status: str | None
    error: str | None
    input: Json


class EscalationDetail(Record, frozen=True):
    """``escalations show ID``: the escalation with its task's state, and how it can be
    resolved (empty once it is)."""

    escalation: EscalationInfo
    options: dict[str, str]


class QueryRows(Record, frozen=True):
    """``query SQL --json``: rows by column name (a repeated name gets ``_2``, ``_3``...)."""

    columns: list[str]
    rows: list[dict[str, Any]]
    truncated: bool
    """Only the first rows came back: add a LIMIT or narrow the query."""


class Submitted(Record, frozen=True):
    """A workflow on the log (``submit --json``): its id and the stream sequence of its
    ``workflow_submitted``."""

    workflow_id: str
    seq: int


class TaskSubmitted(Record, frozen=True):
    """A task on the log: its id and the stream sequence of its ``task_offered``."""

    task_id: str
    seq: int
