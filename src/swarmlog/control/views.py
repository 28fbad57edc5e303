"""The views over the projections: what ``swarmlog workflows``, ``tasks``, ``agents``,
``budgets``, ``show``, ``escalations`` and ``query`` print, as typed records.

One place for the rows of those commands: :class:`~swarmlog.control.client.Client` returns these
records and the CLI prints them (``--json`` is :func:`msgspec.to_builtins` of them), so the two
cannot drift. Field names are the CLI's JSON keys, in the same order. Columns that the projection
keeps as JSON text (a workflow's ``input``, ``result`` and ``plan``, a task's ``input`` and
``output``, an agent's ``capabilities``) are decoded: a record holds the value, not its text.

Every reader takes a :data:`~swarmlog.projections.client.Query` (read-only SQL, rows as dicts), so
the views run against the live projector, the projection file or a test's stand-in alike. Ids are
checked as :data:`~swarmlog.schemas.types.Name` before they go into SQL as literals.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec

from swarmlog.agents.policy.planning import PlanError, decode_plan
from swarmlog.errors import ConfigError
from swarmlog.projections.client import Query
from swarmlog.projections.query import QueryResult
from swarmlog.schemas.types import EventId, Json, Name

__all__ = [
    "ESCALATION_OPTIONS",
    "TASK_STATUSES",
    "AgentRow",
    "BudgetRow",
    "EscalationDetail",
    "EscalationInfo",
    "EscalationRow",
    "GraphNode",
    "HistoryEntry",
    "QueryRows",
    "TaskDetail",
    "TaskRow",
    "TaskView",
    "WorkflowDetail",
    "WorkflowRow",
    "WorkflowView",
    "agents",
    "budgets",
    "check_name",
    "escalation",
    "escalations",
    "query_rows",
    "show",
    "task",
    "tasks",
    "workflow",
    "workflows",
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


class _Record(msgspec.Struct, frozen=True, kw_only=True):
    """A row of a view."""


class WorkflowRow(_Record, frozen=True):
    """A line of ``swarmlog workflows``."""

    workflow_id: str
    pattern: str | None
    status: str | None
    plan_version: int | None
    submitted_by: str | None
    submitted_at: int | None
    """Nanoseconds since the Unix epoch, like every time here."""
    completed_at: int | None


class WorkflowView(_Record, frozen=True):
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


class TaskRow(_Record, frozen=True):
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


class TaskView(_Record, frozen=True):
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


class HistoryEntry(_Record, frozen=True):
    """One event of a task's history."""

    seq: int
    type: str
    sender: str | None
    occurred_at: int | None


class GraphNode(_Record, frozen=True):
    """A step of a workflow's graph (a plan step, or a task when there is no plan)."""

    id: str
    capability: str | None
    status: str
    """The step's task's state; ``pending`` while it has none."""


class WorkflowDetail(_Record, frozen=True):
    """``show WF``: the workflow and its graph of steps (``edges``: ``[from, to]``)."""

    workflow: WorkflowView
    nodes: list[GraphNode]
    edges: list[tuple[str, str]]


class TaskDetail(_Record, frozen=True):
    """``show TASK``: the task and its whole history on the log."""

    task: TaskView
    history: list[HistoryEntry]


class AgentRow(_Record, frozen=True):
    """A line of ``swarmlog agents``."""

    agent_id: str
    role: str | None
    capabilities: list[str]
    tier: str | None
    trust_level: str | None
    status: str | None
    """``registered``, ``issued`` (never started), ``killed``."""
    in_flight: int | None
    last_heartbeat_at: int | None


class BudgetRow(_Record, frozen=True):
    """A line of ``swarmlog budgets``; ``exceeded`` is ``hard``, ``soft`` or ``""``."""

    scope: str
    scope_id: str
    used_tokens: int | None
    budget_tokens: int | None
    exceeded: str
    workflow_status: str | None


class EscalationRow(_Record, frozen=True):
    """A line of ``swarmlog escalations list``."""

    escalation_id: str
    task_id: str | None
    workflow_id: str | None
    role: str | None
    status: str | None
    reason: str | None
    error: str | None


class EscalationInfo(_Record, frozen=True):
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


class EscalationDetail(_Record, frozen=True):
    """``escalations show ID``: the escalation with its task's state, and how it can be
    resolved (empty once it is)."""

    escalation: EscalationInfo
    options: dict[str, str]


class QueryRows(_Record, frozen=True):
    """``query SQL --json``: rows by column name (a repeated name gets ``_2``, ``_3``...)."""

    columns: list[str]
    rows: list[dict[str, Any]]
    truncated: bool
    """Only the first rows came back: add a LIMIT or narrow the query."""


R = TypeVar("R", bound=_Record)

_JSON_COLUMNS = frozenset({"input", "result", "plan", "output", "capabilities"})


def _record(kind: type[R], row: Mapping[str, Any]) -> R:
    """``row`` as a ``kind``, its JSON text columns decoded."""
    values = {k: _decoded(v) if k in _JSON_COLUMNS else v for k, v in row.items()}
    if "capabilities" in values and values["capabilities"] is None:
        values["capabilities"] = []
    return msgspec.convert(values, kind)


def _decoded(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:  # the fold writes JSON; anything else is shown as it is
        return text


def check_name(value: str, what: str, parameter: str | None = None) -> str:
    """``value`` checked as an id (so it can go into SQL as a literal)."""
    try:
        return msgspec.convert(value, Name)
    except msgspec.ValidationError:
        raise ConfigError(
            f"{value!r} is not a valid {what} (lowercase letters, digits, - and _)",
            parameter=parameter,
        ) from None


# Every column, named: a column added to a table is added here, to its record, on purpose.
_WORKFLOW_COLUMNS = ", ".join(WorkflowView.__struct_fields__)
_TASK_COLUMNS = ", ".join(TaskView.__struct_fields__)


async def workflows(query: Query) -> list[WorkflowRow]:
    """Workflows, newest first."""
    rows = await query(
        "SELECT workflow_id, pattern, status, plan_version, submitted_by, submitted_at,"
        " completed_at FROM workflows ORDER BY submitted_at DESC NULLS LAST, workflow_id"
    )
    return [_record(WorkflowRow, r) for r in rows]


async def workflow(query: Query, workflow_id: str) -> WorkflowView | None:
    """One workflow, ``None`` when the projection has none of that id."""
    wf = check_name(workflow_id, "workflow id", "workflow_id")
    rows = await query(f"SELECT {_WORKFLOW_COLUMNS} FROM workflows WHERE workflow_id = '{wf}'")
    return _record(WorkflowView, rows[0]) if rows else None


async def task(query: Query, task_id: str) -> TaskView | None:
    """One task, ``None`` when the projection has none of that id."""
    tid = check_name(task_id, "task id", "task_id")
    rows = await query(f"SELECT {_TASK_COLUMNS} FROM tasks WHERE task_id = '{tid}'")
    return _record(TaskView, rows[0]) if rows else None


async def tasks(
    query: Query, *, workflow_id: str | None = None, status: str | None = None, limit: int = 50
) -> list[TaskRow]:
    """Tasks, most recently changed first (of one workflow, in one state, at most ``limit``)."""
    where = []
    if workflow_id is not None:
        where.append(f"workflow_id = '{check_name(workflow_id, 'workflow id', 'workflow_id')}'")
    if status is not None:
        if status not in TASK_STATUSES:
            raise ConfigError(
                f"status {status!r} is not a task state; use one of {', '.join(TASK_STATUSES)}",
                parameter="status",
            )
        where.append(f"status = '{status}'")
    if not 1 <= limit <= 10_000:
        raise ConfigError(f"limit {limit} is not in 1..10000", parameter="limit")
    rows = await query(
        "SELECT task_id, workflow_id, role, capability, priority, status, attempt,"
        " coalesce(completed_by, claimed_by) AS agent, error FROM tasks"
        + (" WHERE " + " AND ".join(where) if where else "")
        + f" ORDER BY updated_seq DESC LIMIT {int(limit)}"
    )
    return [_record(TaskRow, r) for r in rows]


async def agents(query: Query) -> list[AgentRow]:
    """Agents known to the projection: credential, registration, liveness, load."""
    rows = await query(
        "SELECT agent_id, role, capabilities, tier, trust_level, status, in_flight,"
        " last_heartbeat_at FROM agents ORDER BY role, agent_id"
    )
    return [_record(AgentRow, r) for r in rows]


async def budgets(query: Query) -> list[BudgetRow]:
    """Token budgets: what each agent and workflow spent, its budget, the limits crossed."""
    rows = await query(
        "SELECT b.scope, b.scope_id, b.used_tokens, w.budget_tokens,"
        " CASE WHEN b.hard_exceeded THEN 'hard' WHEN b.soft_exceeded THEN 'soft' ELSE '' END"
        " AS exceeded, w.status AS workflow_status FROM budgets b"
        " LEFT JOIN workflows w ON b.scope = 'workflow' AND w.workflow_id = b.scope_id"
        " ORDER BY b.scope, b.used_tokens DESC, b.scope_id"
    )
    return [_record(BudgetRow, r) for r in rows]


async def escalations(
    query: Query, *, include_resolved: bool = False, workflow_id: str | None = None
) -> list[EscalationRow]:
    """Escalations (open ones only, unless ``include_resolved``), oldest first."""
    where = [] if include_resolved else ["e.status = 'open'"]
    if workflow_id is not None:
        where.append(f"e.workflow_id = '{check_name(workflow_id, 'workflow id', 'workflow_id')}'")
    rows = await query(
        "SELECT e.escalation_id, e.task_id, e.workflow_id, t.role, e.status, e.reason, t.error"
        " FROM escalations e LEFT JOIN tasks t USING (task_id)"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY e.created_at"
    )
    return [_record(EscalationRow, r) for r in rows]


async def escalation(query: Query, escalation_id: str) -> EscalationDetail:
    """One escalation with its task's state and the options left; :class:`ConfigError` when
    there is none of that id."""
    try:
        msgspec.convert(escalation_id, EventId)
    except msgspec.ValidationError:
        raise ConfigError(
            f"{escalation_id!r} is not an escalation id; `swarmlog escalations list` shows them",
            parameter="escalation_id",
        ) from None
    rows = await query(
        "SELECT e.escalation_id, e.task_id, e.workflow_id, e.reason, e.status, e.created_at,"
        " e.resolution, t.role, t.capability, t.priority, t.attempt, t.status AS task_status,"
        " t.error, t.input FROM escalations e LEFT JOIN tasks t USING (task_id)"
        f" WHERE e.escalation_id = '{escalation_id}'"
    )
    if not rows:
        raise ConfigError(
            f"no escalation {escalation_id}; `swarmlog escalations list` shows them",
            parameter="escalation_id",
        )
    info = _record(EscalationInfo, rows[0])
    options = dict(ESCALATION_OPTIONS) if info.status == "open" else {}
    return EscalationDetail(escalation=info, options=options)


async def show(query: Query, item_id: str) -> WorkflowDetail | TaskDetail:
    """A workflow (its plan as a graph of steps, each with its task's state) or a task (its
    history); :class:`ConfigError` when there is neither of that id."""
    item_id = check_name(item_id, "workflow or task id", "item_id")
    found = await workflow(query, item_id)
    if found is not None:
        nodes, edges = await _graph(query, found)
        return WorkflowDetail(workflow=found, nodes=nodes, edges=edges)
    one = await task(query, item_id)
    if one is None:
        raise ConfigError(
            f"no workflow or task {item_id}; `swarmlog workflows` lists them", parameter="item_id"
        )
    history = await query(
        "SELECT seq, type, sender, occurred_at FROM events"
        f" WHERE subject LIKE '%.task.{item_id}.%' OR subject LIKE '%.work.%.{item_id}'"
        " ORDER BY seq"
    )
    return TaskDetail(task=one, history=[_record(HistoryEntry, h) for h in history])


async def _graph(
    query: Query, found: WorkflowView
) -> tuple[list[GraphNode], list[tuple[str, str]]]:
    """Nodes (plan steps, or the workflow's tasks) with their states, and dependency edges."""
    wf = found.workflow_id
    rows = await query(
        "SELECT task_id, capability, status, parent_task_id FROM tasks"
        f" WHERE workflow_id = '{wf}' ORDER BY created_at"
    )
    status = {r["task_id"]: r["status"] for r in rows}
    try:
        plan = decode_plan(found.plan) if found.plan else None
    except PlanError:
        plan = None
    if plan is not None:
        nodes = [
            GraphNode(
                id=s.id,
                capability=s.capability,
                # A step's task is the step id itself, or the workflow's id plus the step id.
                status=status.get(s.id) or status.get(f"{wf}-{s.id}") or "pending",
            )
            for s in plan.steps
        ]
        return nodes, [(d, s.id) for s in plan.steps for d in s.depends_on]
    nodes = [
        GraphNode(id=r["task_id"], capability=r["capability"], status=r["status"] or "pending")
        for r in rows
    ]
    edges = [(r["parent_task_id"], r["task_id"]) for r in rows if r["parent_task_id"] in status]
    return nodes, edges


def query_rows(result: QueryResult) -> QueryRows:
    """A query's result as rows by column name, a repeated name made unique (``a``, ``a_2``)
    so no value is lost."""
    seen: dict[str, int] = {}
    names = []
    for name in result.columns:
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    rows = [dict(zip(names, r, strict=True)) for r in result.rows]
    return QueryRows(columns=names, rows=rows, truncated=result.truncated)
