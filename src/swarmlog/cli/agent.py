"""``agent start|run|ps|stop|restart|logs``: agents as daemons."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import click
import msgspec

from swarmlog.agents.host.lifecycle import ready_line, stop_on_signals
from swarmlog.cli.app import CliContext, emit_json, pass_ctx, print_table, run, with_client
from swarmlog.cli.options import json_option, seconds_option
from swarmlog.config import Settings
from swarmlog.control.daemons import (
    DaemonInfo,
    daemons_down,
    find_daemon,
    list_daemons,
    log_size,
    start_daemon,
    stop_daemons,
    wait_for_output,
)
from swarmlog.control.issuing import issue_replicas
from swarmlog.control.system import AGENT_DAEMON_PREFIX, agent_argv, open_projections
from swarmlog.errors import ConfigError, SwarmlogError

__all__ = ["agent"]

_PREFIX = AGENT_DAEMON_PREFIX


@click.group()
def agent() -> None:
    """Run agents as daemons."""


_TRUST = click.option(
    "--trust",
    type=click.Choice(["internal", "external"]),
    default="internal",
    show_default=True,
    help="Trust level of replicas issued now: external agents face the outside world and get"
    " least of all (their own NATS account; no work creation, no projection queries).",
)

_ACK_WAIT = click.option(
    "--ack-wait",
    default=30.0,
    show_default=True,
    type=click.FloatRange(0.5, 86_400),
    help="Seconds before unacknowledged work goes to another replica (set by the first replica"
    " of a role); long work is kept alive meanwhile.",
)


@agent.command("start")
@click.argument("target")
@click.option("--replicas", "-r", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--detach", is_flag=True, help="Run as daemons and return.")
@click.option("--name", help="Replica ids are NAME-1..NAME-N (default: the role).")
@seconds_option("--timeout", 60.0, "With --detach: seconds to wait for each replica to come up.")
@_ACK_WAIT
@_TRUST
@pass_ctx
def agent_start(
    ctx: CliContext,
    target: str,
    replicas: int,
    detach: bool,
    name: str | None,
    timeout: float,
    ack_wait: float,
    trust: str,
) -> None:
    """Start TARGET (module:Class, or a built-in role: router) with N replicas, each with its
    own key and credential."""
    settings = ctx.settings
    settings.require_data_dir()
    ids = run(issue_replicas(settings, target, name, replicas, ack_wait, trust))
    if detach:
        started: list[tuple[str, DaemonInfo, int]] = []
        for i, agent_id in enumerate(ids, 1):
            running = find_daemon(settings.run_dir, settings.logs_dir, _PREFIX + agent_id)
            if running is not None:  # starting a set again tops it up
                ctx.say(f"{agent_id} already runs (pid {running.pid})")
                continue
            offset = log_size(settings.logs_dir, _PREFIX + agent_id)
            info = start_daemon(
                settings.run_dir,
                settings.logs_dir,
                _PREFIX + agent_id,
                agent_argv(settings, target, agent_id, i, ack_wait),
                keep=True,
            )
            started.append((agent_id, info, offset))
        # Return only once every replica takes work: what is submitted next is not missed.
        for agent_id, info, offset in started:
            wait_for_output(info, ready_line(agent_id), offset, timeout)
            ctx.say(f"started {agent_id} (pid {info.pid}), log {info.log_path}")
        return

    async def together() -> int:
        # A process per replica, as detached: each holds its own key only and is confined
        # before it loads TARGET, which this process (it can read the operator key) never runs.
        stop = stop_on_signals()
        procs = [
            await asyncio.create_subprocess_exec(*agent_argv(settings, target, a, i, ack_wait))
            for i, a in enumerate(ids, 1)
        ]
        exited = asyncio.ensure_future(asyncio.gather(*(p.wait() for p in procs)))
        stopping = asyncio.ensure_future(stop.wait())
        either: list[asyncio.Future[Any]] = [exited, stopping]
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if stop.is_set():
            for proc in procs:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()  # each finishes the task in hand first
        codes = await exited
        return max((c if c > 0 else 1 for c in codes if c), default=0)

    ctx.warn(f"running {', '.join(ids)} (Ctrl-C to stop)")
    code = run(together())
    if code:
        raise SystemExit(code)


@agent.command("provision")
@click.argument("target")
@click.option("--replicas", "-r", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--name", help="Replica ids are NAME-1..NAME-N (default: the role).")
@_ACK_WAIT
@_TRUST
@json_option
@pass_ctx
def agent_provision(
    ctx: CliContext,
    target: str,
    replicas: int,
    name: str | None,
    ack_wait: float,
    trust: str,
    as_json: bool,
) -> None:
    """Issue keys for TARGET's replicas and create their queues without starting them: for
    replicas that run elsewhere (Kubernetes, other machines) with `agent run`."""
    settings = ctx.settings
    settings.require_data_dir()
    ids = run(issue_replicas(settings, target, name, replicas, ack_wait, trust))
    if as_json:
        emit_json({"target": target, "agents": ids})
        return
    ctx.say(f"provisioned {', '.join(ids)}; keys in {settings.keys_dir / 'agents'}")


@agent.command("run", hidden=True)
@click.argument("target")
@click.option("--agent-id", required=True)
@click.option("--replica", default="")
@_ACK_WAIT
@pass_ctx
def agent_run(ctx: CliContext, target: str, agent_id: str, replica: str, ack_wait: float) -> None:
    """One replica in the foreground (what `agent start --detach` launches)."""
    if not ctx.debug:  # the daemon's log records what it refused, and whether it is confined
        logging.getLogger("swarmlog").setLevel(logging.WARNING)

    async def one() -> None:
        # The runtime is imported by the command that runs it, not by those that start,
        # list or stop daemons.
        from swarmlog.agents.host.entrypoints import run_agent

        await run_agent(
            ctx.settings, target, agent_id, replica, stop_on_signals(), ack_wait=ack_wait
        )

    run(one())


def _agents(settings: Settings) -> list[DaemonInfo]:
    return [
        d for d in list_daemons(settings.run_dir, settings.logs_dir) if d.name.startswith(_PREFIX)
    ]


@agent.command("ps")
@json_option
@pass_ctx
def agent_ps(ctx: CliContext, as_json: bool) -> None:
    """Agent daemons of this data dir, with their projected state."""
    settings = ctx.settings
    settings.require_data_dir()
    projected: dict[str, dict[str, Any]] = {}
    with contextlib.suppress(SwarmlogError):  # no projection to join: pids only
        # Status from the log, liveness and load from presence: `swarmlog agents`' rows.
        found = with_client(settings, lambda c: c.agents())
        projected = {r.agent_id: msgspec.to_builtins(r) for r in found}
    rows = []
    live = _agents(settings)
    # A kept replica whose process is gone is listed too: the keeper is starting it again.
    gone = [
        d for d in daemons_down(settings.run_dir, settings.logs_dir) if d.name.startswith(_PREFIX)
    ]
    for d, alive in [*((d, True) for d in live), *((d, False) for d in gone)]:
        agent_id = d.name.removeprefix(_PREFIX)
        seen = projected.get(agent_id, {})
        rows.append(
            {
                "name": agent_id,
                "pid": d.pid,
                "alive": alive,
                "role": seen.get("role"),
                "status": seen.get("status") if alive else ("down" if d.held else "restarting"),
                "last_heartbeat_at": seen.get("last_heartbeat_at"),
                "in_flight": seen.get("in_flight"),
                "started_at": d.started_at,
                "restarts": d.restarts,
            }
        )
    rows.sort(key=lambda r: str(r["name"]))
    if as_json:
        emit_json({"agents": rows})
        return
    now = time.time_ns()
    for r in rows:
        beat = r["last_heartbeat_at"]
        assert beat is None or isinstance(beat, int)
        r["last_heartbeat"] = f"{(now - beat) / 1e9:.0f} s ago" if beat else "never"
    columns = [
        "name",
        "pid",
        "role",
        "status",
        "in_flight",
        "last_heartbeat",
        "started_at",
        "restarts",
    ]
    print_table(ctx.console, "agents", columns, [[r[c] for c in columns] for r in rows])


@agent.command("stop")
@click.argument("name", required=False)
@click.option("--all", "everything", is_flag=True, help="Stop every agent daemon.")
@click.option("--timeout", default=10.0, show_default=True, help="Seconds before SIGKILL.")
@pass_ctx
def agent_stop(ctx: CliContext, name: str | None, everything: bool, timeout: float) -> None:
    """Stop NAME (an agent id, or the name given to `start` for all its replicas), or --all."""
    settings = ctx.settings
    settings.require_data_dir()
    if not name and not everything:
        raise ConfigError("name an agent to stop, or pass --all")
    chosen = [
        d
        for d in _agents(settings)
        if everything or d.name in (_PREFIX + str(name),) or d.name.startswith(f"{_PREFIX}{name}-")
    ]
    if not chosen and not everything:
        raise ConfigError(f"no running agent named {name}; `swarmlog agent ps` lists them")
    names = [d.name for d in chosen]
    stopped = set(stop_daemons(settings.run_dir, settings.logs_dir, names, timeout))
    for d in chosen:
        if d.name in stopped:
            ctx.say(f"stopped {d.name.removeprefix(_PREFIX)} (pid {d.pid})")


def _projected_roles(settings: Settings) -> dict[str, str]:
    """Each known agent's role, from the projection (empty when there is none to ask)."""

    async def read() -> list[dict[str, Any]]:
        async with open_projections(settings) as projections:
            return await projections.query("SELECT agent_id, role FROM agents")

    with contextlib.suppress(SwarmlogError):
        return {str(r["agent_id"]): str(r["role"]) for r in run(read())}
    return {}


@agent.command("restart")
@click.argument("name")
@seconds_option(
    "--timeout",
    60.0,
    "Seconds each replica gets to finish the task in hand (then SIGKILL), and to come up.",
)
@pass_ctx
def agent_restart(ctx: CliContext, name: str, timeout: float) -> None:
    """Stop NAME's replicas (an agent id, the name given to `start`, or a role) and start them
    again with the same command line: each registers anew, its tools pinned afresh."""
    settings = ctx.settings
    settings.require_data_dir()
    roles = _projected_roles(settings)
    chosen = [
        d
        for d in _agents(settings)
        if d.name == _PREFIX + name
        or d.name.startswith(f"{_PREFIX}{name}-")
        or roles.get(d.name.removeprefix(_PREFIX)) == name
    ]
    if not chosen:
        raise ConfigError(f"no running agent named {name}; `swarmlog agent ps` lists them")
    stop_daemons(settings.run_dir, settings.logs_dir, [d.name for d in chosen], timeout)
    started: list[tuple[str, DaemonInfo, int]] = []
    for d in chosen:
        offset = log_size(settings.logs_dir, d.name)
        # The same argv (target, id, replica, ack wait); the environment is this command's.
        info = start_daemon(settings.run_dir, settings.logs_dir, d.name, d.argv, keep=True)
        started.append((d.name.removeprefix(_PREFIX), info, offset))
    for agent_id, info, offset in started:
        wait_for_output(info, ready_line(agent_id), offset, timeout)
        ctx.say(f"restarted {agent_id} (pid {info.pid}), log {info.log_path}")


@agent.command("logs")
@click.argument("name")
@click.option("-n", "--lines", default=50, show_default=True, type=click.IntRange(min=1))
@pass_ctx
def agent_logs(ctx: CliContext, name: str, lines: int) -> None:
    """The last lines of agent NAME's log."""
    path = ctx.settings.logs_dir / f"{_PREFIX}{name}.log"
    if not path.exists():
        raise ConfigError(f"no log for agent {name} at {path}; `swarmlog agent ps` lists agents")
    for line in path.read_text(errors="replace").splitlines()[-lines:]:
        click.echo(line)
