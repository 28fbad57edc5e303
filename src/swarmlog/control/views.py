"""The views over the projections: what ``swarmlog workflows``, ``tasks``, ``agents``,
``budgets``, ``show``, ``escalations`` and ``query`` print, as typed records.

One place for the rows of those commands: :class:`~swarmlog.control.client.Client` returns these
records (:mod:`swarmlog.control.records`) and the CLI prints them, so the two cannot drift.
Columns that the projection keeps as JSON text (a workflow's ``input``, ``result`` and ``plan``,
a task's ``input`` and ``output``, an agent's ``capabilities``) are decoded: a record holds the
value, not its text.

Every reader takes a :data:`~swarmlog.projections.client.Query` (read-only SQL, rows as dicts), so
the views run against the live projector, the projection file or a test's stand-in alike. Ids are
checked as :data:`~swarmlog.schemas.types.Name` before they go into SQL as literals.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec

from swarmlog.agents.policy.planning import PlanError, decode_plan
from swarmlog.agents.presence import PresenceReader
from swarmlog.control.checks import check_name, conform
from swarmlog.control.graph import workflow_graph
from swarmlog.control.records import (
    ESCALATION_OPTIONS,
    MAX_ROWS,
    TASK_STATUSES,
    AgentRow,
    BudgetRow,
    Crash,
    EscalationDetail,
    EscalationInfo,
    EscalationRow,
    GraphNode,
    HistoryEntry,
    QueryRows,
    Record,
    TaskDetail,
    TaskRow,
    TaskView,
    WorkflowDetail,
    WorkflowRow,
    WorkflowView,
)
from swarmlog.errors import ConfigError
from swarmlog.projections.client import Query
from swarmlog.projections.query import QueryResult
from swarmlog.schemas.presence import fresh
from swarmlog.schemas.types import EventId

__all__ = [
    "agents",
    "budgets",
    "escalation",
    "escalations",
    "query_rows",
    "show",
    "task",
    "tasks",
    "workflow",
    "workflows",
]

R = TypeVar("R", bound=Record)

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
    if not 1 <= limit <= MAX_ROWS:
        raise ConfigError(f"limit {limit} is not in 1..{MAX_ROWS}", parameter="limit")
    rows = await query(
        "SELECT task_id, workflow_id, role, capability, priority, status, attempt,"
        " coalesce(completed_by, claimed_by) AS agent, error FROM tasks"
        + (" WHERE " + " AND ".join(where) if where else "")
        + f" ORDER BY updated_seq DESC LIMIT {int(limit)}"
    )
    return [_record(TaskRow, r) for r in rows]


async def agents(
    query: Query, presence: PresenceReader | None = None, *, now: int | None = None
) -> list[AgentRow]:
    """Agents known to the projection: credential, registration, status; with a ``presence``
    reader, their liveness and load as their presence says now (``last_heartbeat_at`` is then
    the last time each was heard from, ``in_flight`` what it holds, ``presence`` whether its
    value is fresh, stale, missing or refused). The bucket unreadable, the projection's alone."""
    rows = await query(
        "SELECT a.agent_id, a.role, a.capabilities, a.tier, a.trust_level, a.status,"
        " a.in_flight, a.last_heartbeat_at,"
        " CASE WHEN c.revoked THEN NULL ELSE a.public_key END AS public_key"
        " FROM agents a LEFT JOIN credentials c ON c.public_key = a.public_key"
        " ORDER BY a.role, a.agent_id"
    )
    if presence is None:
        return [_record(AgentRow, r) for r in rows]
    now = time.time_ns() if now is None else now
    live = presence.stale_after
    try:
        seen = await presence.read_keys({r["agent_id"]: r["public_key"] for r in rows})
    except Exception:  # an overlay: without the bucket, what the log says is still shown
        return [_record(AgentRow, r) for r in rows]
    out = []
    for r in rows:
        agent_id = r["agent_id"]
        found, refused = seen.get(agent_id), presence.refusals.get(agent_id)
        extra: dict[str, Any] = {
            "presence": "" if refused is None else f"refused: {refused.reason}"
        }
        if found is not None:
            heard = max(found.at, r["last_heartbeat_at"] or 0)
            extra = {
                "last_heartbeat_at": heard,
                "in_flight": found.load,
                "capacity": found.capacity,
                "presence": "fresh" if fresh(found, now=now, stale_after=live) else "stale",
            }
        out.append(_record(AgentRow, r | extra))
    return out


async def budgets(query: Query) -> list[BudgetRow]:
    """Token budgets: what each agent and workflow spent, what model calls in flight hold of
    it, its budget, the limits crossed."""
    rows = await query(
        "SELECT b.scope, b.scope_id, b.used_tokens, coalesce(b.reserved_tokens, 0)"
        " AS reserved_tokens, w.budget_tokens,"
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
    conform(
        escalation_id,
        EventId,
        f"{escalation_id!r} is not an escalation id; `swarmlog escalations list` shows them",
        "escalation_id",
    )
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
    return TaskDetail(
        task=one,
        history=[_record(HistoryEntry, h) for h in history],
        crash=await _last_crash(query, item_id),
    )


async def _last_crash(query: Query, task_id: str) -> Crash | None:
    """The task's last ``error`` event that carries a traceback, read from the applied events
    (so only a verified one is shown), with the attempt it ended."""
    of_task = f"subject LIKE '%.task.{task_id}.%'"
    rows = await query(
        "SELECT e.seq, e.payload, (SELECT max(TRY_CAST(json_extract_string(s.payload,"
        f" '$.attempt') AS BIGINT)) FROM events s WHERE s.type = 'task_started' AND s.{of_task}"
        f" AND s.seq < e.seq) AS attempt FROM events e WHERE e.type = 'error' AND e.{of_task}"
        " AND json_extract_string(e.payload, '$.traceback') IS NOT NULL"
        " ORDER BY e.seq DESC LIMIT 1"
    )
    payload = _decoded(rows[0]["payload"]) if rows else None
    if not isinstance(payload, dict):
        return None
    return Crash(
        seq=rows[0]["seq"],
        attempt=rows[0]["attempt"],
        error=f"{payload.get('code')}: {payload.get('message', '')}",
        traceback=str(payload["traceback"]),
    )


async def _graph(
    query: Query, found: WorkflowView
) -> tuple[list[GraphNode], list[tuple[str, str]]]:
    """Every task of the workflow (and the plan's steps not yet run) with its state, and what
    each came from (see :func:`~swarmlog.control.graph.workflow_graph`)."""
    rows = await query(
        "SELECT task_id, capability, status, parent_task_id FROM tasks"
        f" WHERE workflow_id = '{found.workflow_id}' ORDER BY created_at, task_id"
    )
    try:
        plan = decode_plan(found.plan) if found.plan else None
    except PlanError:
        plan = None
    return workflow_graph(found.workflow_id, plan, rows)


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
