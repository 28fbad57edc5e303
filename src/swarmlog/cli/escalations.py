"""``escalations list|show|resolve``: the human escalation desk."""

from __future__ import annotations

from typing import Any

import click
import msgspec

from swarmlog.agents.policy.followups import follow_up, refusal
from swarmlog.agents.policy.routing import AGENTS_SQL, agent_view
from swarmlog.agents.publisher import Publisher
from swarmlog.cli.app import (
    CliContext,
    emit_json,
    pass_ctx,
    print_table,
    projection_rows,
    run,
    with_client,
)
from swarmlog.cli.options import json_option
from swarmlog.config import Settings
from swarmlog.control.checks import conform
from swarmlog.control.keystore import KeyStore
from swarmlog.control.records import ESCALATION_OPTIONS
from swarmlog.control.system import open_log
from swarmlog.errors import ConfigError
from swarmlog.schemas.payloads import (
    EscalationResolved,
    Payload,
    Result,
    TaskAssignment,
    TaskCancelled,
    TaskOffered,
)
from swarmlog.schemas.types import Name, Role

__all__ = ["escalations"]

OPTIONS = ESCALATION_OPTIONS


def _escalation(settings: Settings, escalation_id: str) -> dict[str, Any]:
    """The escalation with its task's state, by column name (what ``show --json`` prints)."""
    found = with_client(settings, lambda c: c.escalation(escalation_id))
    info: dict[str, Any] = msgspec.to_builtins(found.escalation)
    return info


_Source = TaskAssignment | TaskOffered
"""What a task was last run from: its assignment, or its offer (a swarm claim, an unrouted one)."""


def _assignment_again(settings: Settings, found: dict[str, Any], role: str | None) -> Payload:
    """The assignment a retry (``role`` None: the same role) or a reassignment publishes: the
    task's last assignment (or its offer) carried on by :func:`follow_up`, refused when it would
    take internal-only work to a role with an external replica."""
    task_id = msgspec.convert(found["task_id"], Name)  # a subject token: safe in the SQL below
    rows = projection_rows(
        settings,
        "SELECT payload FROM events WHERE type IN ('task_assignment', 'task_offered')"
        f" AND json_extract_string(payload, '$.task_id') = '{task_id}' ORDER BY seq",
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
    agents = [agent_view(r) for r in projection_rows(settings, AGENTS_SQL)]
    refused = refusal(assignment, agents)
    if refused is not None:
        raise ConfigError(f"{refused}; reassign it to a role with internal replicas only")
    return assignment


@click.group()
def escalations() -> None:
    """Work handed to a human: see it, then retry, reassign, answer or cancel it."""


@escalations.command("list")
@click.option("--all", "everything", is_flag=True, help="Resolved ones too.")
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
        ctx.err.print("no open escalations")


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
        ctx.console.print(f"{key:>14}: {value}")
    for name, what in found.options.items():
        ctx.console.print(f"  {name:>8}: {what}")


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
    chosen = [a for a, given in (("reassign", role), ("answer", answer)) if given is not None]
    if action is not None:
        chosen.append(action)
    if len(chosen) != 1:
        raise ConfigError("give exactly one of --retry, --reassign ROLE, --answer TEXT, --cancel")
    action = chosen[0]
    settings = ctx.settings
    settings.require_data_dir()
    found = _escalation(settings, escalation_id)
    if found["status"] != "open":
        raise ConfigError(f"escalation {escalation_id} is {found['status']} already")
    if role is not None:
        conform(role, Role, f"--reassign {role!r}: a role is lowercase letters, digits, - _")
    task_id = found["task_id"]
    follow_up: Payload
    if action in ("retry", "reassign"):
        follow_up = _assignment_again(settings, found, role)
    elif action == "answer":
        follow_up = Result(task_id=task_id, output=answer)
    else:
        follow_up = TaskCancelled(task_id=task_id, reason=note or "cancelled by the operator")
    resolution = EscalationResolved(
        escalation_id=escalation_id,
        task_id=task_id,
        action=action,  # type: ignore[arg-type]
        role=role,
        answer=answer or "",
        note=note,
    )

    async def publish() -> list[int]:
        operator = KeyStore(settings.keys_dir).operator()
        async with open_log(settings) as log:
            publisher = Publisher(log, operator, settings.namespace)
            fields = {"workflow_id": found["workflow_id"], "causation_id": escalation_id}
            return [(await publisher.publish(p, **fields)).seq for p in (resolution, follow_up)]

    seqs = run(publish())
    if as_json:
        emit_json({"escalation_id": escalation_id, "action": action, "seqs": seqs})
    else:
        ctx.console.print(f"resolved {escalation_id} ({action}) at seq {seqs[0]}")
