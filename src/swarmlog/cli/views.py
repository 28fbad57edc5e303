"""``tasks``, ``workflows``, ``agents``, ``budgets`` and ``show ID``: views over the projections,
the records :class:`~swarmlog.control.client.Client` reads (``--json`` prints them as they are);
``show TASK`` adds the task's conversation, from its call journal. Tables print times for
people (see :func:`~swarmlog.rendering.console.print_table`); ``--json`` keeps nanoseconds."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import msgspec
from rich.text import Text

from swarmlog.cli.app import (
    CliContext,
    emit_json,
    emit_listing,
    pass_ctx,
    print_table,
    with_client,
)
from swarmlog.cli.options import json_option, rows_options
from swarmlog.control.records import TASK_STATUSES, TaskDetail, WorkflowDetail
from swarmlog.rendering.conversation import conversation, turn_text
from swarmlog.rendering.svg import graph_svg

if TYPE_CHECKING:
    from swarmlog.control.client import Client

__all__ = ["agents", "budgets", "show", "tasks", "to_mermaid", "workflows"]


def _emit(ctx: CliContext, key: str, records: Sequence[msgspec.Struct], as_json: bool) -> None:
    """Records of a view as a listing: a table of their fields, or (``--json``) ``{key:
    [record, ...]}``."""
    emit_listing(ctx, key, [msgspec.to_builtins(r) for r in records], as_json)


@click.command()
@click.option("--workflow", "workflow_id", help="Only the tasks of this workflow.")
@click.option("--status", type=click.Choice(TASK_STATUSES), help="Only tasks in this state.")
@rows_options(50)
@pass_ctx
def tasks(
    ctx: CliContext, workflow_id: str | None, status: str | None, limit: int, as_json: bool
) -> None:
    """Tasks, most recently changed first."""
    found = with_client(
        ctx.settings, lambda c: c.tasks(workflow_id=workflow_id, status=status, limit=limit)
    )
    _emit(ctx, "tasks", found, as_json)


def _view(
    key: str, doc: str, read: Callable[[Client], Awaitable[Sequence[msgspec.Struct]]]
) -> click.Command:
    """The command ``key``: the records ``read`` gets, as a table or ``--json``."""

    @click.command(key, help=doc)
    @json_option
    @pass_ctx
    def command(ctx: CliContext, as_json: bool) -> None:
        _emit(ctx, key, with_client(ctx.settings, read), as_json)

    return command


workflows = _view("workflows", "Workflows, newest first.", lambda c: c.workflows())
budgets = _view(
    "budgets",
    "Token budgets: what each agent and workflow spent, what calls in flight hold of it, its"
    " budget, the limits crossed.",
    lambda c: c.budgets(),
)
agents = _view(
    "agents",
    "Agents known to the projection: credential, registration, liveness, load.",
    lambda c: c.agents(),
)


@click.command()
@click.argument("item_id", metavar="ID")
@click.option("--mermaid", is_flag=True, help="Print the task graph as a Mermaid flowchart.")
@click.option(
    "--svg", "svg_path", type=click.Path(dir_okay=False), help="Write the task graph as SVG."
)
@json_option
@pass_ctx
def show(ctx: CliContext, item_id: str, mermaid: bool, svg_path: str | None, as_json: bool) -> None:
    """A workflow (every task of it, plan steps, reviews, retries, synthesis, as a graph with
    each task's state) or a task (its history, and the traceback of its last crash)."""
    found = with_client(ctx.settings, lambda c: c.show(item_id))
    if isinstance(found, WorkflowDetail):
        nodes: list[dict[str, Any]] = msgspec.to_builtins(found.nodes)
        edges = [list(e) for e in found.edges]
        if svg_path is not None:
            Path(svg_path).write_text(graph_svg(nodes, edges))
            ctx.warn(f"wrote {svg_path}")
        if mermaid:
            click.echo(to_mermaid(nodes, edges))
        elif as_json:
            emit_json(msgspec.to_builtins(found))
        else:
            wf = found.workflow
            ctx.say(f"workflow {wf.workflow_id}: {wf.pattern} {wf.status}")
            rows = [[n.id, n.kind, n.capability, n.status] for n in found.nodes]
            print_table(ctx.console, "tasks", ["id", "kind", "capability", "status"], rows)
            _blocked(ctx, found.blocked)
        return
    assert isinstance(found, TaskDetail)
    task = found.task
    if mermaid:
        node = {"id": task.task_id, "capability": task.capability, "status": task.status}
        click.echo(to_mermaid([node], []))
        return
    turns = _conversation(ctx, task.task_id)
    if as_json:
        emit_json({**msgspec.to_builtins(found), "conversation": turns})
        return
    ctx.say(f"task {task.task_id}: {task.status} (attempt {task.attempt})")
    columns = ["seq", "type", "sender", "occurred_at"]
    rows = [[getattr(h, c) for c in columns] for h in found.history]
    print_table(ctx.console, "history", columns, rows)
    if found.crash is not None:
        crash = found.crash
        attempt = f", attempt {crash.attempt}" if crash.attempt is not None else ""
        ctx.console.print(Text(f"the handler crashed (seq {crash.seq}{attempt}):", style="bold"))
        ctx.console.print(Text(crash.traceback), soft_wrap=True)
    _blocked(ctx, found.blocked)
    if turns:
        ctx.console.print(Text("conversation", style="bold"))
    for turn in turns:
        label, text = turn_text(turn)
        ctx.console.print(Text.assemble((f"{label}: ", "bold"), text))


def _blocked(ctx: CliContext, reasons: list[str]) -> None:
    """The "blocked:" section: what holds an open item up that will not clear by itself."""
    if reasons:
        ctx.console.print(Text("blocked:", style="bold red"))
    for reason in reasons:
        # Text: a reason's brackets are not markup; not wrapped, so its command copies whole
        ctx.console.print(Text(f"  - {reason}"), soft_wrap=True)


def _conversation(ctx: CliContext, task_id: str) -> list[dict[str, Any]]:
    """The task's conversation, from its call journal (see ``rendering.conversation``)."""
    return conversation(with_client(ctx.settings, lambda c: c.journal(task_id)))


_STYLE = {
    "succeeded": "fill:#d4edda",
    "failed": "fill:#f8d7da",
    "escalated": "fill:#fff3cd",
    "running": "fill:#d1ecf1",
}


def to_mermaid(nodes: list[dict[str, Any]], edges: list[list[str]]) -> str:
    """A Mermaid flowchart of tasks (``id[id, capability: status]``) and the edges between
    them. Nodes are named by their place (``t0``, ``t1``...): a task id's ``-`` and ``--`` mean
    something to Mermaid, and ``a-b`` and ``a_b`` must not become one node."""
    lines = ["flowchart TD"]
    names = {str(n["id"]): f"t{i}" for i, n in enumerate(nodes)}
    for n in nodes:
        label = f"{n['id']}<br/>{n['capability'] or ''}: {n['status']}"
        lines.append(f'    {names[str(n["id"])]}["{label}"]')
    lines.extend(f"    {names[a]} --> {names[b]}" for a, b in edges if a in names and b in names)
    for n in nodes:
        style = _STYLE.get(str(n["status"]))
        if style:
            lines.append(f"    style {names[str(n['id'])]} {style}")
    return "\n".join(lines)
