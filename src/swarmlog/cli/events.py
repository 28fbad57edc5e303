"""``events publish|tail|types``: raw access to the log."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import click
import msgspec

from swarmlog.agents.publisher import Published, Publisher
from swarmlog.bus.ports import StoredMessage
from swarmlog.cli.app import CliContext, emit_json, pass_ctx, print_table, run
from swarmlog.control.broker import refresh_broker
from swarmlog.control.keystore import KeyStore
from swarmlog.control.system import open_log
from swarmlog.errors import SchemaError
from swarmlog.projections.verify import check
from swarmlog.schemas.codec import payload_from_json
from swarmlog.schemas.envelope import Ref
from swarmlog.schemas.payloads import PAYLOAD_TYPES, CredentialRevoked
from swarmlog.schemas.signing import OPERATOR_ID
from swarmlog.schemas.types import AgentId, Name

__all__ = ["events"]


@click.group()
def events() -> None:
    """Read and write raw events."""


@events.command("types")
@click.option("--json", "as_json", is_flag=True, help="Every type with its JSON Schema.")
@pass_ctx
def events_types(ctx: CliContext, as_json: bool) -> None:
    """Every event type (the payload union) and its wire schema."""
    if as_json:
        emit_json(
            {
                "types": [
                    {"type": tag, "schema": msgspec.json.schema(cls)}
                    for tag, cls in PAYLOAD_TYPES.items()
                ]
            }
        )
        return
    rows = []
    for tag, cls in PAYLOAD_TYPES.items():
        doc = (cls.__doc__ or "").strip().splitlines()
        rows.append((tag, ", ".join(cls.__struct_fields__), doc[0] if doc else ""))
    print_table(ctx.console, "event types", ["type", "fields", "about"], rows)


@events.command("publish")
@click.argument("type_", metavar="TYPE")
@click.option("--payload", default="{}", show_default=True, help="The payload as JSON.")
@click.option("--as", "as_agent", help="Sign with this agent's key (default: the operator).")
@click.option("--workflow-id")
@click.option("--correlation-id")
@click.option("--causation-id")
@click.option("--recipient")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@pass_ctx
def events_publish(
    ctx: CliContext,
    type_: str,
    payload: str,
    as_agent: str | None,
    workflow_id: str | None,
    correlation_id: str | None,
    causation_id: str | None,
    recipient: str | None,
    as_json: bool,
) -> None:
    """Sign and publish one event of TYPE."""
    settings = ctx.settings
    settings.require_data_dir()
    body = payload_from_json(type_, payload)
    store = KeyStore(settings.keys_dir)
    identity = store.operator() if as_agent in (None, OPERATOR_ID) else store.agent(as_agent)[0]
    fields: dict[str, Any] = {
        k: v
        for k, v in {
            "workflow_id": workflow_id,
            "correlation_id": correlation_id,
            "causation_id": causation_id,
            "recipient": recipient,
        }.items()
        if v is not None
    }
    _check_fields(fields)
    if type_.startswith("workflow_") and workflow_id is None:
        raise SchemaError(f"a {type_} event needs a workflow: pass --workflow-id ID")

    async def go() -> Published:
        async with open_log(settings) as log_:
            done = await Publisher(log_, identity, settings.namespace).publish(body, **fields)
        if isinstance(body, CredentialRevoked) and identity.agent_id == OPERATOR_ID:
            await refresh_broker(settings)  # a revoked key is refused at the broker, for good
        return done

    published = run(go())
    if as_json:
        emit_json(dataclasses.asdict(published))
        return
    ctx.console.print(f"published {published.type} {published.event_id} at seq {published.seq}")


_FIELD_TYPES: dict[str, Any] = {
    "workflow_id": Name,
    "correlation_id": Ref,
    "causation_id": Ref,
    "recipient": AgentId,
}


def _check_fields(fields: dict[str, Any]) -> None:
    """Validate envelope options with the envelope's own constraints."""
    for name, value in fields.items():
        try:
            msgspec.convert(value, _FIELD_TYPES[name])
        except msgspec.ValidationError as exc:
            raise SchemaError(f"--{name.replace('_', '-')}: {exc}") from None


def _describe(message: StoredMessage, namespace: str) -> dict[str, Any]:
    checked = check(message, namespace)
    env = checked.envelope
    return {
        "seq": message.seq,
        "subject": message.subject,
        "type": env.type if env else None,
        "id": env.id if env else None,
        "sender": env.sender if env else None,
        "workflow_id": env.workflow_id if env else None,
        "intact": checked.rejection is None,
        "problem": checked.rejection.reason if checked.rejection else None,
        "payload": msgspec.to_builtins(env.payload) if env else None,
    }


@events.command("tail")
@click.option("-n", "--lines", "count", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events (JSON lines).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def events_tail(ctx: CliContext, count: int, follow: bool, as_json: bool) -> None:
    """The last events, straight from the log. `intact`: decodes, sits on its own subject and
    its signature matches the key it names (whether that key is trusted: `audit verify`)."""
    settings = ctx.settings
    settings.require_data_dir()

    async def go() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        async with open_log(settings) as log_:
            last = await log_.last_seq()
            start = max(1, last - count + 1)
            if not follow:
                async for batch in log_.read(start, until_seq=last):
                    out += [_describe(m, settings.namespace) for m in batch]
                return out
            async for batch in log_.read(start, follow=True):
                for m in batch:
                    row = _describe(m, settings.namespace)
                    if as_json:
                        click.echo(msgspec.json.encode(row))
                    else:
                        _print_rows(ctx, [row], title=None)
        return out

    try:
        rows = run(go())
    except (KeyboardInterrupt, asyncio.CancelledError):
        return
    if as_json:
        emit_json(rows)
    else:
        _print_rows(ctx, rows, title="events")


def _print_rows(ctx: CliContext, rows: list[dict[str, Any]], title: str | None) -> None:
    columns = ["seq", "type", "sender", "workflow_id", "id", "intact", "problem"]
    print_table(ctx.console, title, columns, [[r[c] for c in columns] for r in rows])
