"""``events publish|tail|types``: raw access to the log."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import deque
from typing import Any

import click
import msgspec

from swarmlog.agents.publisher import Published, Publisher
from swarmlog.cli.app import (
    CliContext,
    emit_json,
    pass_ctx,
    print_table,
    run,
    with_client,
)
from swarmlog.cli.options import json_option
from swarmlog.control.broker import refresh_broker
from swarmlog.control.client import Client
from swarmlog.control.eventstream import Event
from swarmlog.control.keystore import KeyStore
from swarmlog.control.system import open_log
from swarmlog.errors import SchemaError
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
@json_option
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
    ctx.say(f"published {published.type} {published.event_id} at seq {published.seq}")


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


@events.command("tail")
@click.option("-n", "--lines", "count", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events (JSON lines).")
@click.option("--workflow", "workflow_id", help="Only the events of this workflow.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def events_tail(
    ctx: CliContext, count: int, follow: bool, workflow_id: str | None, as_json: bool
) -> None:
    """The last events, straight from the log. `intact`: decodes, sits on its own subject and
    its signature matches the key it names; `verified`: the projector applied it (false:
    quarantined, `problem` says why; empty: not folded yet)."""
    settings = ctx.settings
    settings.require_data_dir()

    async def go(client: Client) -> list[Event]:
        # With a workflow, its own last events: the stream's last few may be others'.
        stream = client.events(workflow_id=workflow_id, follow=follow)
        if workflow_id is None:
            stream = client.events(last=count, follow=follow)
        out: deque[Event] = deque(maxlen=count)
        async for event in stream:
            if not follow:
                out.append(event)
            elif as_json:
                click.echo(msgspec.json.encode(event))
            else:
                _print_rows(ctx, [event], title=None)
        return list(out)

    try:
        found = with_client(settings, go, require_server=True)
    except (KeyboardInterrupt, asyncio.CancelledError):
        return
    if as_json:
        emit_json(msgspec.to_builtins(found))
    else:
        _print_rows(ctx, found, title="events")


_COLUMNS = ("seq", "type", "sender", "workflow_id", "id", "intact", "verified", "problem")


def _print_rows(ctx: CliContext, events: list[Event], title: str | None) -> None:
    rows = [[getattr(e, c) for c in _COLUMNS] for e in events]
    print_table(ctx.console, title, list(_COLUMNS), rows)
