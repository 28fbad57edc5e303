"""``up``, ``down``, ``status`` and the projector daemon."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from swarmlog.agents.process import run_conductor, run_router, run_watchdog, stop_on_signals
from swarmlog.agents.session import AgentSession
from swarmlog.brokerauth import refresh_broker, remember_namespace, write_authorization
from swarmlog.bus.server import EmbeddedServer
from swarmlog.bus.subjects import stream_subjects
from swarmlog.cli.agent import issue_replicas, start_builtin
from swarmlog.cli.app import Context, emit_json, pass_ctx, print_table, run
from swarmlog.daemons import find_daemon, list_daemons, start_daemon, stop_daemons
from swarmlog.errors import BusError, ServerError, SwarmlogError
from swarmlog.files import write_atomic
from swarmlog.keystore import KeyStore
from swarmlog.system import (
    ask_projector,
    open_log,
    projector_argv,
    projector_name,
    read_projection,
    resolve_url,
    run_projector,
)

__all__ = ["down", "projector", "status", "up"]

_READY_TIMEOUT = 20.0


def _ensure_operator(ctx: Context) -> str:
    store = KeyStore(ctx.settings.keys_dir)
    if not store.has_operator():
        identity = store.init_operator(os.urandom(32))
        ctx.err.print(f"created operator key {identity.public_key[:16]}… in {store.dir}")
    return store.operator_public_key()


async def _wait_projector(ctx: Context, deadline: float) -> int:
    while time.monotonic() < deadline:
        try:
            reply = await ask_projector(ctx.settings, "position", {}, 1.0)
        except BusError:
            reply = None  # busy starting up: ask again
        if isinstance(reply, dict) and "position" in reply:
            return int(reply["position"])
        info = find_daemon(
            ctx.settings.run_dir, ctx.settings.logs_dir, projector_name(ctx.settings)
        )
        if info is None:
            log = ctx.settings.logs_dir / f"{projector_name(ctx.settings)}.log"
            tail = log.read_text().strip().splitlines()[-1:] if log.exists() else []
            raise ServerError(
                f"the projector exited at start: {' '.join(tail) or 'see ' + str(log)}"
            )
        await asyncio.sleep(0.1)
    raise ServerError("the projector did not answer in time; see `swarmlog --debug status`")


def _start_server(store: Path, detach: bool, sync: str | None) -> tuple[EmbeddedServer, str]:
    """Start the embedded server, on the port it had last time when that port is free, so
    daemons that outlived a restart of the server reconnect by themselves."""
    port_file = store / "port"
    try:
        port = int(port_file.read_text())
    except (OSError, ValueError):
        port = 0
    server = EmbeddedServer(store, port=port, sync=sync, authorization=True)
    try:
        url = server.start(detach=detach)
    except ServerError:
        if port == 0:
            raise
        # The old port is taken: any free one.
        server = EmbeddedServer(store, sync=sync, authorization=True)
        url = server.start(detach=detach)
    write_atomic(port_file, f"{urlsplit(url).port}\n", mode=0o644)
    return server, url


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
@pass_ctx
def up(ctx: Context, detach: bool, sync: str | None, replicas: int) -> None:
    """Start the embedded server (if no URL), provision the stream, the operator key and the
    projector. Idempotent."""
    settings = ctx.settings
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    _ensure_operator(ctx)
    remember_namespace(settings)
    server: EmbeddedServer | None = None
    if settings.nats_url is None:
        running = EmbeddedServer.running(settings.server_dir)
        if running is not None and sync is not None:
            ctx.err.print("the server runs already: --sync takes effect when it starts (down, up)")
        if running is not None and not running.authorization:
            ctx.err.print(
                "the server runs without broker permissions: `swarmlog down`, then `up`, to"
                " enforce them"
            )
        if running is None:
            write_authorization(settings)  # the logins it admits from the first moment
            server, url = _start_server(settings.server_dir, detach, sync)
            ctx.err.print(f"nats-server started at {url}")
            if detach:
                server = None  # it outlives us; `down` stops it
    url = resolve_url(settings)

    async def provision() -> str:
        async with open_log(settings, provision=True, replicas=replicas) as log_:
            return log_.stream

    stream = run(provision())
    run(refresh_broker(settings))  # the kill switches, read now that the buckets can be
    if detach:
        name = projector_name(settings)
        info = find_daemon(settings.run_dir, settings.logs_dir, name)
        if info is None:
            info = start_daemon(settings.run_dir, settings.logs_dir, name, projector_argv(settings))
        position = run(_wait_projector(ctx, time.monotonic() + _READY_TIMEOUT))
        router = start_builtin(settings, "router")
        conductor = start_builtin(settings, "conductor")
        watchdog = start_builtin(settings, "watchdog")
        ctx.console.print(
            f"swarmlog is up: {url}  stream {stream}  projector pid {info.pid} at seq {position}"
            f"  router pid {router.pid}  conductor pid {conductor.pid}"
            f"  watchdog pid {watchdog.pid}"
        )
        return
    ctx.console.print(f"swarmlog is up: {url}  stream {stream}  (Ctrl-C to stop)")
    (router_id,) = issue_replicas(settings, "router", None, 1)
    (conductor_id,) = issue_replicas(settings, "conductor", None, 1)
    (watchdog_id,) = issue_replicas(settings, "watchdog", None, 1)

    async def foreground() -> None:
        stop = stop_on_signals()
        await asyncio.gather(
            run_projector(settings, stop=stop),
            # Built-in roles beside the projector, in the operator's process: each still logs
            # in as itself (`up --detach` runs them as confined processes of their own).
            run_router(AgentSession.load(settings, router_id), stop),
            run_conductor(AgentSession.load(settings, conductor_id), stop),
            run_watchdog(AgentSession.load(settings, watchdog_id), stop),
        )

    try:
        run(foreground())
    finally:
        if server is not None:
            server.stop()


@click.command()
@pass_ctx
def down(ctx: Context) -> None:
    """Stop every daemon of the data dir and the embedded server they share. Idempotent."""
    settings = ctx.settings
    stopped = []
    if settings.data_dir.is_dir():
        names = [d.name for d in list_daemons(settings.run_dir, settings.logs_dir)]
        stopped += stop_daemons(settings.run_dir, settings.logs_dir, names)
        running = EmbeddedServer.running(settings.server_dir)
        if running is not None and settings.nats_url is None:
            running.stop()
            stopped.append("nats-server")
    ctx.console.print("stopped " + ", ".join(stopped) if stopped else "nothing was running")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@pass_ctx
def status(ctx: Context, as_json: bool) -> None:
    """The server, stream, projector position and agents."""
    settings = ctx.settings
    settings.require_data_dir()
    url = resolve_url(settings)

    async def gather() -> dict[str, Any]:
        async with open_log(settings) as log_:
            last = await log_.last_seq()
            stream = log_.stream
        try:
            reply = await ask_projector(settings, "position", {})
        except BusError:
            reply = None  # there but not answering: reported as not running
        projector_seq = reply.get("position") if isinstance(reply, dict) else None
        agents: list[dict[str, Any]] = []
        try:
            result = await read_projection(
                settings,
                "SELECT agent_id, role, status, trust_level, last_heartbeat_at FROM agents"
                " ORDER BY agent_id",
            )
            agents = [dict(zip(result.columns, row, strict=True)) for row in result.rows]
            if projector_seq is None:
                pos = await read_projection(settings, "SELECT max(seq) FROM projector_position")
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
            "projector_running": isinstance(reply, dict),
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


@click.group(hidden=True)
def projector() -> None:
    """The projector process (started by `swarmlog up`)."""


@projector.command("run")
@pass_ctx
def projector_run(ctx: Context) -> None:
    """Run the projector in the foreground until SIGTERM."""
    if not ctx.debug:  # a daemon's log file records every quarantined event
        logging.getLogger("swarmlog").setLevel(logging.INFO)
    position = run(run_projector(ctx.settings))
    ctx.err.print(f"projector stopped at seq {position}")
