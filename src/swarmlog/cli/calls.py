"""``calls``: every journaled model and tool call, from ``model_calls`` and ``tool_calls``;
``watch TASK``: a task's model calls' text as it comes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import click

from swarmlog.cli.app import CliContext, emit_listing, pass_ctx, projection_rows, run
from swarmlog.cli.options import rows_options
from swarmlog.config import Settings
from swarmlog.control.checks import check_name

if TYPE_CHECKING:
    from swarmlog.control.client import Client

__all__ = ["CALL_FIELDS", "calls", "watch"]

CALL_FIELDS = (
    "kind",
    "task_id",
    "workflow_id",
    "agent_id",
    "call_index",
    "call_id",
    "model",
    "tool",
    "server",
    "status",
    "prompt_tokens",
    "completion_tokens",
    "duration_ms",
    "requested_seq",
    "completed_seq",
    "error",
)
"""The fields of each call in ``calls --json`` (docs/operations.md describes them)."""

_SELECT = """
SELECT 'model' AS kind, task_id, workflow_id, agent_id, call_index, call_id, model,
       NULL AS tool, NULL AS server, status, prompt_tokens, completion_tokens, duration_ms,
       requested_seq, completed_seq, error
FROM model_calls {where}
UNION ALL
SELECT 'tool' AS kind, task_id, workflow_id, agent_id, call_index, call_id, NULL AS model,
       tool, server, status, NULL AS prompt_tokens, NULL AS completion_tokens, duration_ms,
       requested_seq, completed_seq, error
FROM tool_calls {where}
ORDER BY coalesce(requested_seq, completed_seq), kind, task_id, call_index
LIMIT {limit}
"""


@click.command()
@click.option("--task", "task_id", help="Only the calls of this task.")
@click.option("--workflow", "workflow_id", help="Only the calls of this workflow's tasks.")
@rows_options(1000)
@pass_ctx
def calls(
    ctx: CliContext, task_id: str | None, workflow_id: str | None, limit: int, as_json: bool
) -> None:
    """Model and tool calls in the order they were made: what each asked, how it ended, its
    tokens and time, and the stream sequences of its request and answer."""
    where = []
    if task_id is not None:
        where.append(f"task_id = '{check_name(task_id, 'task id')}'")
    if workflow_id is not None:
        where.append(f"workflow_id = '{check_name(workflow_id, 'workflow id')}'")
    clause = "WHERE " + " AND ".join(where) if where else ""
    rows = projection_rows(ctx.settings, _SELECT.format(where=clause, limit=limit))
    found = [{f: row[f] for f in CALL_FIELDS} for row in rows]
    emit_listing(ctx, "calls", found, as_json, (_COLUMNS, _cells))


_COLUMNS = ["kind", "task", "#", "model / tool", "status", "tokens", "ms", "seqs", "error"]


def _cells(row: Mapping[str, Any]) -> list[Any]:
    """A call's cells under :data:`_COLUMNS`."""
    tokens = ""
    if row["kind"] == "model" and row["prompt_tokens"] is not None:
        tokens = f"{row['prompt_tokens']}+{row['completion_tokens']}"
    seqs = f"{row['requested_seq'] or '-'}→{row['completed_seq'] or '-'}"
    return [
        row["kind"],
        row["task_id"],
        row["call_index"],
        row["model"] or row["tool"],
        row["status"],
        tokens,
        row["duration_ms"],
        seqs,
        (row["error"] or "")[:80],
    ]


_ENDED = ("succeeded", "failed", "cancelled", "escalated")
"""A task in one of these has no model call left to watch."""


@click.command()
@click.argument("task_id", metavar="TASK")
@click.option(
    "--timeout",
    default=600.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Stop after this many seconds even if the task goes on.",
)
@pass_ctx
def watch(ctx: CliContext, task_id: str, timeout: float) -> None:
    """Print the text of TASK's model calls as the model writes it, until the task ends: a
    preview, announced outside the log (the answer itself is journaled: `show TASK`)."""
    ended = run(_watch(ctx, ctx.settings, check_name(task_id, "task id", "task_id"), timeout))
    ctx.warn(f"{task_id} {ended}")


async def _watch(ctx: CliContext, settings: Settings, task_id: str, timeout: float) -> str:
    from swarmlog.control.client import Client  # the command's cost only

    async with await Client.connect(settings, require_server=True) as client:
        follow = asyncio.create_task(_print_previews(ctx, client, task_id))
        try:
            async with asyncio.timeout(timeout):
                while True:
                    task = await client.task(task_id)
                    if task is not None and task.status in _ENDED:
                        return str(task.status)
                    await asyncio.sleep(0.5)  # polling the projection, not waiting on a race
        except TimeoutError:
            return f"still running after {timeout:g} s"
        finally:
            follow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follow


async def _print_previews(ctx: CliContext, client: Client, task_id: str) -> None:
    call = None
    async with client.previews(task_id) as pieces:
        async for piece in pieces:
            if piece.call_index != call:
                call = piece.call_index
                ctx.console.print(f"\n[bold]{piece.agent_id} call {call}[/bold]", highlight=False)
            ctx.console.print(piece.text, end="", markup=False, highlight=False)
