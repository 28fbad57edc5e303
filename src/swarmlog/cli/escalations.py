"""``escalations list|show|resolve``: the human escalation desk."""

from __future__ import annotations

from typing import Any

import click
import msgspec

from swarmlog.cli.app import CliContext, emit_json, pass_ctx, print_table, with_client
from swarmlog.cli.options import json_option
from swarmlog.control.escalations import choose
from swarmlog.control.records import ESCALATION_OPTIONS

__all__ = ["escalations"]

OPTIONS = ESCALATION_OPTIONS


@click.group()
def escalations() -> None:
    """Work handed to a human: see it, then retry, reassign, answer or cancel it."""


@escalations.command("list")
@click.option("--all", "everything", is_flag=True, help="Resolved and closed ones too.")
@json_option
@pass_ctx
def escalations_list(ctx: CliContext, everything: bool, as_json: bool) -> None:
    """Open escalations (oldest first): what failed, where, and why."""
    found = with_client(ctx.settings, lambda c: c.escalations(include_resolved=everything))
    rows: list[dict[str, Any]] = msgspec.to_builtins(found)
    if as_json:
        emit_json({"escalations": rows})
        return
    columns = ["escalation_id", "task_id", "workflow_id", "role", "status", "reason", "error"]
    print_table(ctx.console, "escalations", columns, [[r[c] for c in columns] for r in rows])
    if not rows:
        ctx.warn("no open escalations")


@escalations.command("show")
@click.argument("escalation_id")
@json_option
@pass_ctx
def escalations_show(ctx: CliContext, escalation_id: str, as_json: bool) -> None:
    """One escalation: the task's state, what failed and why, and the options."""
    found = with_client(ctx.settings, lambda c: c.escalation(escalation_id))
    if as_json:
        emit_json(msgspec.to_builtins(found))
        return
    for key, value in msgspec.to_builtins(found.escalation).items():
        ctx.say(f"{key:>14}: {value}")
    for name, what in found.options.items():
        ctx.say(f"  {name:>8}: {what}")


@escalations.command("resolve")
@click.argument("escalation_id")
@click.option("--retry", "action", flag_value="retry", help=OPTIONS["retry"])
@click.option("--reassign", "role", help=OPTIONS["reassign"])
@click.option("--answer", help=OPTIONS["answer"])
@click.option("--cancel", "action", flag_value="cancel", help=OPTIONS["cancel"])
@click.option("--note", default="", help="Why (recorded in the signed event).")
@json_option
@pass_ctx
def escalations_resolve(
    ctx: CliContext,
    escalation_id: str,
    action: str | None,
    role: str | None,
    answer: str | None,
    note: str,
    as_json: bool,
) -> None:
    """Resolve an escalation; the operator-signed resolution is what the work continues from."""
    choose(action, role, answer)  # before anything is read or connected to
    ctx.settings.require_data_dir()
    done = with_client(
        ctx.settings,
        lambda c: c.resolve_escalation(
            escalation_id, action=action, role=role, answer=answer, note=note
        ),
        require_server=True,
    )
    action, seqs = done.action, done.seqs
    if as_json:
        emit_json({"escalation_id": escalation_id, "action": action, "seqs": seqs})
    else:
        ctx.say(f"resolved {escalation_id} ({action}) at seq {seqs[0]}")
