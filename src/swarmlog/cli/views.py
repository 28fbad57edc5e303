"""``tasks``, ``workflows``, ``agents``, ``budgets`` and ``show ID``: views over the projections
(``show TASK`` with the task's conversation, from its call journal)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import msgspec
from rich.text import Text

from swarmlog.agents.policy.planning import PlanError, decode_plan
from swarmlog.cli.app import CliContext, emit_json, pass_ctx, print_table, projection_rows
from swarmlog.errors import ConfigError
from swarmlog.rendering.conversation import JOURNAL_TYPES, conversation, turn_text
from swarmlog.rendering.svg import graph_svg
from swarmlog.schemas.types import Name

__all__ = ["agents", "budgets", "checked_name", "show", "tasks", "workflows"]

_STATUSES = [
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
]


def checked_name(value: str, what: str) -> str:
    """``value`` checked as an id (so it can go into SQL as a literal)."""
    try:
        return msgspec.convert(value, Name)
    except msgspec.ValidationError:
        raise ConfigError(
            f"{value!r} is not a valid {what} (lowercase letters, digits, - and _)"
        ) from None


def _emit(ctx: CliContext, key: str, rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        emit_json({key: rows})
        return
    columns = list(rows[0]) if rows else []
    print_table(ctx.console, key, columns, [[r[c] for c in columns] for r in rows])
    if not rows:
        ctx.err.print(f"no {key} yet")


@click.command()
@click.option("--workflow", "workflow_id", help="Only the tasks of this workflow.")
@click.option("--status", type=click.Choice(_STATUSES), help="Only tasks in this state.")
@click.option("--limit", "-n", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@pass_ctx
def tasks(
    ctx: CliContext, workflow_id: str | None, status: str | None, limit: int, as_json: bool
) -> None:
    """Tasks, most recently changed first."""
    where = []
    if workflow_id is not None:
        where.append(f"workflow_id = '{checked_name(workflow_id, 'workflow id')}'")
    if status is not None:
        where.append(f"status = '{status}'")  # one of _STATUSES
    sql = (
        "SELECT task_id, workflow_id, role, capability, priority, status, attempt,"
        " coalesce(completed_by, claimed_by) AS agent, error FROM tasks"
        + (" WHERE " + " AND ".join(where) if where else "")
        + f" ORDER BY updated_seq DESC LIMIT {limit}"
    )
    _emit(ctx, "tasks", projection_rows(ctx.settings, sql), as_json)


def _listing(name: str, summary: str, sql: str) -> click.Command:
    """The command ``name``: the rows of one fixed query over the projections, as a table or
    (``--json``) one JSON document."""

    @click.command(name=name, help=summary)
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
    @pass_ctx
    def listing(ctx: CliContext, as_json: bool) -> None:
        _emit(ctx, name, projection_rows(ctx.settings, sql), as_json)

    return listing


workflows = _listing(
    "workflows",
    "Workflows, newest first.",
    "SELECT workflow_id, pattern, status, plan_version, submitted_by, submitted_at,"
    " completed_at FROM workflows ORDER BY submitted_at DESC NULLS LAST, workflow_id",
)
budgets = _listing(
    "budgets",
    "Token budgets: what each agent and workflow spent, its budget, the limits crossed.",
    "SELECT b.scope, b.scope_id, b.used_tokens, w.budget_tokens,"
    " CASE WHEN b.hard_exceeded THEN 'hard' WHEN b.soft_exceeded THEN 'soft' ELSE '' END"
    " AS exceeded, w.status AS workflow_status FROM budgets b"
    " LEFT JOIN workflows w ON b.scope = 'workflow' AND w.workflow_id = b.scope_id"
    " ORDER BY b.scope, b.used_tokens DESC, b.scope_id",
)
agents = _listing(
    "agents",
    "Agents known to the projection: credential, registration, liveness, load.",
    "SELECT agent_id, role, capabilities, tier, trust_level, status, in_flight,"
    " last_heartbeat_at FROM agents ORDER BY role, agent_id",
)


@click.command()
@click.argument("item_id", metavar="ID")
@click.option("--mermaid", is_flag=True, help="Print the task graph as a Mermaid flowchart.")
@click.option(
    "--svg", "svg_path", type=click.Path(dir_okay=False), help="Write the task graph as SVG."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@pass_ctx
def show(ctx: CliContext, item_id: str, mermaid: bool, svg_path: str | None, as_json: bool) -> None:
    """A workflow (its plan as a graph of tasks, each with its state) or a task (its history)."""
    item_id = checked_name(item_id, "workflow or task id")
    found = projection_rows(
        ctx.settings, f"SELECT * FROM workflows WHERE workflow_id = '{item_id}'"
    )
    if found:
        graph = _workflow_graph(ctx, found[0])
        if svg_path is not None:
            Path(svg_path).write_text(graph_svg(graph["nodes"], graph["edges"]))
            ctx.err.print(f"wrote {svg_path}")
        if mermaid:
            click.echo(to_mermaid(graph["nodes"], graph["edges"]))
        elif as_json:
            emit_json({"workflow": found[0], **graph})
        else:
            ctx.console.print(f"workflow {item_id}: {found[0]['pattern']} {found[0]['status']}")
            rows = [[n["id"], n["capability"], n["status"]] for n in graph["nodes"]]
            print_table(ctx.console, "tasks", ["id", "capability", "status"], rows)
        return
    task = projection_rows(ctx.settings, f"SELECT * FROM tasks WHERE task_id = '{item_id}'")
    if not task:
        raise ConfigError(f"no workflow or task {item_id}; `swarmlog workflows` lists them")
    history = projection_rows(
        ctx.settings,
        "SELECT seq, type, sender, occurred_at FROM events"
        f" WHERE subject LIKE '%.task.{item_id}.%' OR subject LIKE '%.work.%.{item_id}'"
        " ORDER BY seq",
    )
    if mermaid:
        node = {"id": item_id, "capability": task[0]["capability"], "status": task[0]["status"]}
        click.echo(to_mermaid([node], []))
        return
    turns = _conversation(ctx, item_id)
    if as_json:
        emit_json({"task": task[0], "history": history, "conversation": turns})
        return
    ctx.console.print(f"task {item_id}: {task[0]['status']} (attempt {task[0]['attempt']})")
    columns = ["seq", "type", "sender", "occurred_at"]
    print_table(ctx.console, "history", columns, [[h[c] for c in columns] for h in history])
    if turns:
        ctx.console.print(Text("conversation", style="bold"))
    for turn in turns:
        label, text = turn_text(turn)
        ctx.console.print(Text.assemble((f"{label}: ", "bold"), text))


def _conversation(ctx: CliContext, task_id: str) -> list[dict[str, Any]]:
    """The task's conversation, from its call journal (see ``rendering.conversation``)."""
    types = ", ".join(f"'{t}'" for t in JOURNAL_TYPES)
    rows = projection_rows(
        ctx.settings,
        f"SELECT seq, type, payload FROM events WHERE type IN ({types})"
        f" AND subject LIKE '%.task.{task_id}.%'"
        f" AND json_extract_string(payload, '$.task_id') = '{task_id}' ORDER BY seq",
    )
    events = [{**row, "payload": json.loads(row["payload"])} for row in rows]
    return conversation(events)


def _workflow_graph(ctx: CliContext, workflow: dict[str, Any]) -> dict[str, Any]:
    """Nodes (plan steps, or the workflow's tasks) with their states, and dependency edges."""
    wf = workflow["workflow_id"]
    rows = projection_rows(
        ctx.settings,
        "SELECT task_id, capability, status, parent_task_id FROM tasks"
        f" WHERE workflow_id = '{wf}' ORDER BY created_at",
    )
    status = {r["task_id"]: r["status"] for r in rows}
    try:
        plan = decode_plan(json.loads(workflow["plan"])) if workflow.get("plan") else None
    except (PlanError, ValueError):
        plan = None
    if plan is not None:
        nodes = [
            {
                "id": s.id,
                "capability": s.capability,
                # A step's task is the step id itself, or the workflow's id plus the step id.
                "status": status.get(s.id) or status.get(f"{wf}-{s.id}") or "pending",
            }
            for s in plan.steps
        ]
        edges = [[d, s.id] for s in plan.steps for d in s.depends_on]
        return {"nodes": nodes, "edges": edges}
    nodes = [
        {"id": r["task_id"], "capability": r["capability"], "status": r["status"]} for r in rows
    ]
    edges = [[r["parent_task_id"], r["task_id"]] for r in rows if r["parent_task_id"] in status]
    return {"nodes": nodes, "edges": edges}


_STYLE = {
    "succeeded": "fill:#d4edda",
    "failed": "fill:#f8d7da",
    "escalated": "fill:#fff3cd",
    "running": "fill:#d1ecf1",
}


def to_mermaid(nodes: list[dict[str, Any]], edges: list[list[str]]) -> str:
    """A Mermaid flowchart of tasks (``id[capability: status]``) and their dependencies."""
    lines = ["flowchart TD"]
    for n in nodes:
        label = f"{n['id']}<br/>{n['capability'] or ''}: {n['status']}"
        lines.append(f'    {n["id"].replace("-", "_")}["{label}"]')
    for a, b in edges:
        lines.append(f"    {a.replace('-', '_')} --> {b.replace('-', '_')}")
    for n in nodes:
        style = _STYLE.get(str(n["status"]))
        if style:
            lines.append(f"    style {n['id'].replace('-', '_')} {style}")
    return "\n".join(lines)
