"""``traces export|follow``: OpenTelemetry traces from the log, sent to an OTLP/HTTP receiver
(see :mod:`swarmlog.observability.traces`)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import click

from swarmlog.cli.app import CliContext, emit_json, option_for, pass_ctx, with_client
from swarmlog.cli.options import json_option
from swarmlog.control.checks import check_name
from swarmlog.control.client import Client
from swarmlog.errors import ConfigError

__all__ = ["traces"]

T = TypeVar("T")


@click.group()
def traces() -> None:
    """OpenTelemetry traces from the log: a trace per workflow, a span per task, per attempt
    and per model or tool call, with ids derived from the events (sent twice, a span is the
    same span)."""


def _endpoint(command: Callable[..., T]) -> Callable[..., T]:
    return click.option(
        "--otlp",
        "endpoint",
        required=True,
        metavar="URL",
        help="The OTLP/HTTP receiver: http://HOST:4318 (an OpenTelemetry Collector, Jaeger,"
        " Tempo) or its full traces URL. OTEL_EXPORTER_OTLP_HEADERS and the other OTEL_"
        " settings apply.",
    )(command)


_timeout = click.option(
    "--timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.1, 300),
    help="Seconds to keep trying one request (the exporter retries what it may).",
)


@contextmanager
def _options_named() -> Iterator[None]:
    """A library error about an argument names the option that gives it."""
    try:
        yield
    except ConfigError as exc:
        option = option_for(exc.parameter)
        if option is None:
            raise
        raise ConfigError(f"{exc.message} (see {option})", parameter=exc.parameter) from None


@contextmanager
def _quiet_exporter(debug: bool) -> Iterator[None]:
    """The exporter logs every failure itself; the command says it once, with the reason."""
    logger = logging.getLogger("opentelemetry.exporter.otlp")
    level = logger.level
    if not debug:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


@traces.command("export")
@_endpoint
@click.option("--workflow", "workflow_id", help="Only this workflow's trace.")
@_timeout
@json_option
@pass_ctx
def traces_export(
    ctx: CliContext, endpoint: str, workflow_id: str | None, timeout: float, as_json: bool
) -> None:
    """Send the spans of the log (or of one workflow) that are complete. JSON: `spans`,
    `traces`, `workflows`, `pending` (started, not complete), `position`, `endpoint`,
    `unjudged`."""
    from swarmlog.observability.otlp import OTLPTraces  # the SDK: this command's cost only
    from swarmlog.observability.traces import Exported, export_traces

    settings = ctx.settings
    settings.require_data_dir()
    with _options_named(), _quiet_exporter(ctx.debug):
        if workflow_id is not None:
            workflow_id = check_name(workflow_id, "workflow id", "workflow_id")
        sink = OTLPTraces(endpoint, settings.namespace, timeout=timeout)

        async def go(client: Client) -> Exported:
            return await export_traces(client, sink, workflow_id=workflow_id)

        try:
            done = with_client(settings, go, require_server=True)
        finally:
            sink.close()
    if as_json:
        emit_json(dataclasses.asdict(done))
        return
    ctx.say(
        f"exported {done.spans} spans of {done.traces} traces ({done.workflows} workflows)"
        f" to {done.endpoint}"
    )
    if done.pending:
        ctx.warn(f"{done.pending} spans not complete yet: a later export sends them")
    if done.unjudged is not None:
        ctx.warn(
            f"the projector has not judged seq {done.unjudged} yet: spans from there on wait"
            " for a later export"
        )


@traces.command("follow")
@_endpoint
@click.option(
    "--interval",
    "-i",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0.05, 60),
    help="Seconds a complete span waits at most before it is sent (with the others).",
)
@_timeout
@pass_ctx
def traces_follow(ctx: CliContext, endpoint: str, interval: float, timeout: float) -> None:
    """Follow the log and send each span as it completes, until Ctrl-C or SIGTERM. Where it
    got to is kept under the data dir (traces/), so a restart sends nothing twice."""
    import asyncio
    import signal

    from swarmlog.observability.otlp import OTLPTraces  # the SDK: this command's cost only
    from swarmlog.observability.traces import FollowState, follow_traces, state_path

    settings = ctx.settings
    settings.require_data_dir()
    with _options_named(), _quiet_exporter(ctx.debug):
        sink = OTLPTraces(endpoint, settings.namespace, timeout=timeout)
        state = FollowState(state_path(settings, sink.endpoint))

        async def go(client: Client) -> int:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            return await follow_traces(
                client, sink, state, stop=stop, notice=_say, interval=interval
            )

        try:
            sent = with_client(settings, go, require_server=True)
        finally:
            sink.close()
    _say(f"stopped: sent {sent} spans to {sink.endpoint}")


def _say(line: str) -> None:
    """A daemon's line on stderr, as it is (a log reader wants it unwrapped)."""
    click.echo(line, err=True)
