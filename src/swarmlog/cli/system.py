"""``up``, ``down``, ``status`` and the projector daemon."""

from __future__ import annotations

import logging
from typing import Any

import click

from swarmlog.agents.host.bringup import SystemUp, bring_down, bring_up
from swarmlog.agents.presence import PresenceReader
from swarmlog.bus.subjects import stream_subjects
from swarmlog.cli.app import CliContext, emit_json, pass_ctx, print_table, run
from swarmlog.cli.options import json_option
from swarmlog.config import Settings
from swarmlog.control.system import (
    console_url,
    open_log,
    open_projections,
    resolve_url,
    run_projector,
)
from swarmlog.errors import BusError, SwarmlogError

__all__ = ["down", "keeper", "projector", "status", "up"]


@click.command()
@click.option("--detach", is_flag=True, help="Run in the background and return.")
@click.option(
    "--sync",
    envvar="SWARMLOG_SYNC",
    help="The embedded server's JetStream sync policy: 'always' (fsync every write) or a"
    " period such as 2m (the server's default). See docs/operations.md.",
)
@click.option(
    "--replicas",
    envvar="SWARMLOG_STREAM_REPLICAS",
    default=1,
    show_default=True,
    type=click.IntRange(1, 5),
    help="Copies of the stream and buckets when they are created (3 on a cluster).",
)
@click.option(
    "--console/--no-console",
    default=True,
    show_default=True,
    help="Run the web console too (detached; on 127.0.0.1:8470, or any free port).",
)
@pass_ctx
def up(ctx: CliContext, detach: bool, sync: str | None, replicas: int, console: bool) -> None:
    """Start the embedded server (if no URL), provision the stream, the operator key and the
    projector. Idempotent."""

    def started(done: SystemUp) -> None:
        if not detach:
            ctx.say(f"swarmlog is up: {done.url}  stream {done.stream}  (Ctrl-C to stop)")
            return
        pids = "  ".join(f"{role} pid {pid}" for role, pid in done.roles.items())
        ctx.say(
            f"swarmlog is up: {done.url}  stream {done.stream}  projector pid"
            f" {done.projector_pid} at seq {done.position}  {pids}"
        )
        if done.console_url is not None:
            ctx.say(
                f"console at {done.console_url} (log in with the link `swarmlog console --url`"
                " prints)"
            )

    run(
        bring_up(
            ctx.settings,
            detach=detach,
            sync=sync,
            replicas=replicas,
            console=console and detach,
            keeper=detach,
            notice=ctx.warn,
            on_up=started,
        )
    )


@click.command()
@pass_ctx
def down(ctx: CliContext) -> None:
    """Stop every daemon of the data dir and the embedded server they share. Idempotent."""
    stopped = bring_down(ctx.settings)
    ctx.say("stopped " + ", ".join(stopped) if stopped else "nothing was running")


@click.command()
@json_option
@pass_ctx
def status(ctx: CliContext, as_json: bool) -> None:
    """The server, stream, projector position and agents."""
    settings = ctx.settings
    settings.require_data_dir()
    url = resolve_url(settings)
    console = console_url(settings)

    async def gather() -> dict[str, Any]:
        async with open_log(settings) as log_:
            last = await log_.last_seq()
            stream = log_.stream
        async with open_projections(settings) as projections:
            try:
                projector_seq = await projections.position()
            except BusError:
                projector_seq = None  # there but not answering: reported as not running
            projector_running = projector_seq is not None
            agents: list[dict[str, Any]] = []
            try:
                agents = await projections.query(
                    "SELECT agent_id, role, status, trust_level, last_heartbeat_at FROM agents"
                    " ORDER BY agent_id"
                )
                heard = await _presence_heard(settings)
                for a in agents:  # last heard from: presence, else its registration
                    a["last_heartbeat_at"] = (
                        max(heard.get(a["agent_id"], 0), a["last_heartbeat_at"] or 0) or None
                    )
                if projector_seq is None:
                    pos = await projections.rows("SELECT max(seq) FROM projector_position")
                    projector_seq = pos.rows[0][0] if pos.rows else None
            except SwarmlogError:
                pass  # no projection yet
        return {
            "nats_url": url,
            "namespace": settings.namespace,
            "stream": stream,
            "subjects": stream_subjects(settings.namespace),
            "stream_last_seq": last,
            "projector_seq": projector_seq,
            "projector_running": projector_running,
            "console_url": console,
            "metrics_url": f"{console}metrics" if console else None,
            "agents": agents,
        }

    data = run(gather())
    if as_json:
        emit_json(data)
        return
    rows = [(k, v) for k, v in data.items() if k != "agents"]
    print_table(ctx.console, "swarmlog status", ["field", "value"], rows)
    if data["agents"]:
        cols = list(data["agents"][0])
        print_table(ctx.console, "agents", cols, [list(a.values()) for a in data["agents"]])


async def _presence_heard(settings: Settings) -> dict[str, int]:
    """When each agent's presence was put, for those whose presence verifies (none when the
    server or the bucket cannot be read)."""
    try:
        async with open_log(settings) as log_, open_projections(settings) as projections:
            keys = await projections.query(
                "SELECT a.agent_id, CASE WHEN c.revoked THEN NULL ELSE a.public_key END AS key"
                " FROM agents a LEFT JOIN credentials c ON c.public_key = a.public_key"
            )
            reader = PresenceReader(log_, settings.namespace)
            seen = await reader.read_keys({k["agent_id"]: k["key"] for k in keys})
    except Exception:  # an overlay: the log's view is shown without it
        return {}
    return {agent_id: p.at for agent_id, p in seen.items()}


@click.group(hidden=True)
def projector() -> None:
    """The projector process (started by `swarmlog up`)."""


@projector.command("run")
@pass_ctx
def projector_run(ctx: CliContext) -> None:
    """Run the projector in the foreground until SIGTERM."""
    if not ctx.debug:  # a daemon's log file records every quarantined event
        logging.getLogger("swarmlog").setLevel(logging.INFO)
    position = run(run_projector(ctx.settings))
    ctx.warn(f"projector stopped at seq {position}")


@click.group(hidden=True)
def keeper() -> None:
    """The keeper process (started by `swarmlog up --detach`)."""


@keeper.command("run")
@pass_ctx
def keeper_run(ctx: CliContext) -> None:
    """Start again every kept daemon that exits without being stopped, until SIGTERM."""
    from swarmlog.agents.host.lifecycle import stop_on_signals
    from swarmlog.control.keeper import keep

    if not ctx.debug:  # its log records every restart
        logging.getLogger("swarmlog").setLevel(logging.INFO)

    async def go() -> int:
        return await keep(ctx.settings, stop_on_signals())

    restarts = run(go())
    ctx.warn(f"keeper stopped after {restarts} restarts")
