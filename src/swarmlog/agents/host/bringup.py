"""Bringing a system up, in order: the operator key, the embedded server (unless a URL is
given) with the logins it admits, the stream and buckets, the broker's view of the kill
switches, the projector, then the built-in roles (router, conductor, watchdog).

:func:`bring_up` is the one async function that does it (the CLI's ``up`` calls it once); it
is idempotent: what runs already is kept. Detached, every part is a daemon of the data dir and
it returns once they answer; in the foreground it runs the projector and the roles in this
process until ``stop`` (SIGTERM/SIGINT by default), then stops the server it started.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from swarmlog.agents.host.lifecycle import stop_on_signals
from swarmlog.bus.server import EmbeddedServer
from swarmlog.config import Settings
from swarmlog.control.broker import refresh_broker, remember_namespace, write_authorization
from swarmlog.control.daemons import (
    DaemonInfo,
    find_daemon,
    list_daemons,
    start_daemon,
    stop_daemons,
)
from swarmlog.control.issuing import issue_replicas
from swarmlog.control.keeper import KEEPER, keeper_argv
from swarmlog.control.keystore import KeyStore
from swarmlog.control.system import (
    agent_argv,
    agent_daemon_name,
    console_argv,
    console_name,
    console_url,
    open_log,
    open_projections,
    projector_argv,
    projector_name,
    resolve_url,
    run_projector,
)
from swarmlog.errors import BusError, ServerError
from swarmlog.files import write_atomic

__all__ = [
    "BUILTIN_ROLES",
    "SystemUp",
    "bring_down",
    "bring_up",
    "start_builtin",
    "start_server",
]

log = logging.getLogger(__name__)

BUILTIN_ROLES = ("router", "conductor", "watchdog")
"""The roles every system runs beside the projector, in the order they are started."""

READY_TIMEOUT = 20.0
"""Seconds the projector daemon has to answer after it is started."""


@dataclass(frozen=True)
class SystemUp:
    """What runs once :func:`bring_up` has brought the system up."""

    url: str
    stream: str
    projector_pid: int | None = None
    """The projector daemon's pid (detached; in the foreground it runs in this process)."""
    position: int | None = None
    """The projector's position when it first answered (detached)."""
    roles: dict[str, int] = field(default_factory=dict)
    """Each built-in role's daemon pid (detached)."""
    console_url: str | None = None
    """The web console's URL (no token), when it runs (detached, unless left out)."""


def _say(message: str) -> None:
    log.info("%s", message)


def ensure_operator(settings: Settings, notice: Callable[[str], None] = _say) -> str:
    """The operator public key, creating the key first when the data dir has none."""
    store = KeyStore(settings.keys_dir)
    if not store.has_operator():
        identity = store.init_operator(os.urandom(32))
        notice(f"created operator key {identity.public_key[:16]}… in {store.dir}")
    return store.operator_public_key()


def start_server(store: Path, detach: bool, sync: str | None) -> tuple[EmbeddedServer, str]:
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


def _exited_at_start(settings: Settings, name: str, what: str) -> ServerError:
    """The error of daemon ``name`` (``what``) gone before it answered: its log's last line."""
    path = settings.logs_dir / f"{name}.log"
    tail = path.read_text().strip().splitlines()[-1:] if path.exists() else []
    return ServerError(f"{what} exited at start: {' '.join(tail) or 'see ' + str(path)}")


async def wait_projector(settings: Settings, timeout: float = READY_TIMEOUT) -> int:
    """The projector daemon's position once it answers; :class:`ServerError` when it exits
    first (with the last line of its log) or does not answer within ``timeout``."""
    deadline = time.monotonic() + timeout
    name = projector_name(settings)
    async with open_projections(settings) as projections:
        while time.monotonic() < deadline:
            try:
                position = await projections.position(1.0)
            except BusError:
                position = None  # busy starting up: ask again
            if position is not None:
                return position
            if find_daemon(settings.run_dir, settings.logs_dir, name) is None:
                raise _exited_at_start(settings, name, "the projector")
            await asyncio.sleep(0.1)  # polling a daemon that is starting
    raise ServerError("the projector did not answer in time; see `swarmlog --debug status`")


async def start_builtin(settings: Settings, target: str) -> DaemonInfo:
    """Start one replica of built-in role ``target`` as a daemon unless it runs already."""
    (agent_id,) = await issue_replicas(settings, target, None, 1)
    name = agent_daemon_name(agent_id)
    running = find_daemon(settings.run_dir, settings.logs_dir, name)
    if running is not None:
        return running
    argv = agent_argv(settings, target, agent_id, 1)
    return start_daemon(settings.run_dir, settings.logs_dir, name, argv, keep=True)


async def bring_up(
    settings: Settings,
    *,
    detach: bool = False,
    sync: str | None = None,
    replicas: int = 1,
    console: bool = False,
    keeper: bool = False,
    notice: Callable[[str], None] = _say,
    on_up: Callable[[SystemUp], None] | None = None,
    stop: asyncio.Event | None = None,
) -> SystemUp:
    """Bring the system of ``settings`` up (see the module's docstring); idempotent.

    ``sync`` is the embedded server's sync policy when this starts it, ``replicas`` the copies
    of the stream and buckets when they are created; ``console`` starts the web console's daemon
    too, and ``keeper`` the keeper, which starts again every daemon that exits without being
    stopped (both detached only; in the foreground, run ``swarmlog console`` beside it). ``notice``
    hears what was done or is worth knowing along the way; ``on_up`` hears when all is up (in
    the foreground: before it runs until ``stop``).
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ensure_operator(settings, notice)
    remember_namespace(settings)
    server: EmbeddedServer | None = None
    if settings.nats_url is None:
        running = EmbeddedServer.running(settings.server_dir)
        if running is not None and sync is not None:
            notice(
                "the server runs already: its sync policy takes effect when it starts (down, up)"
            )
        if running is not None and not running.authorization:
            notice(
                "the server runs without broker permissions: `swarmlog down`, then `up`, to"
                " enforce them"
            )
        if running is None:
            write_authorization(settings)  # the logins it admits from the first moment
            # Blocking for the seconds the server takes to start: nothing else runs yet.
            server, url = start_server(settings.server_dir, detach, sync)
            notice(f"nats-server started at {url}")
            if detach:
                server = None  # it outlives us; `down` stops it
    try:
        url = resolve_url(settings)
        async with open_log(settings, provision=True, replicas=replicas) as log_:
            stream = log_.stream
        await refresh_broker(settings)  # the kill switches, read now that the buckets can be
        if detach:
            up = await _detached(settings, url, stream, console)
            if keeper and find_daemon(settings.run_dir, settings.logs_dir, KEEPER) is None:
                start_daemon(settings.run_dir, settings.logs_dir, KEEPER, keeper_argv(settings))
            if on_up is not None:
                on_up(up)
            return up
        up = SystemUp(url, stream)
        if on_up is not None:
            on_up(up)
        await _foreground(settings, stop or stop_on_signals())
        return up
    finally:
        if server is not None:
            server.stop()


def bring_down(settings: Settings) -> list[str]:
    """Stop every daemon of the data dir (agents, roles, the projector: all at once, each given
    its grace) and then the embedded server they share (never an external one); what was
    stopped. Idempotent: what ``swarmlog down`` runs."""
    stopped: list[str] = []
    if not settings.data_dir.is_dir():
        return stopped
    names = [d.name for d in list_daemons(settings.run_dir, settings.logs_dir)]
    stopped += stop_daemons(settings.run_dir, settings.logs_dir, names)
    running = EmbeddedServer.running(settings.server_dir)
    if running is not None and settings.nats_url is None:
        running.stop()
        stopped.append("nats-server")
    return stopped


async def _detached(settings: Settings, url: str, stream: str, console: bool) -> SystemUp:
    name = projector_name(settings)
    info = find_daemon(settings.run_dir, settings.logs_dir, name)
    if info is None:
        info = start_daemon(
            settings.run_dir, settings.logs_dir, name, projector_argv(settings), keep=True
        )
    position = await wait_projector(settings)
    # Every role's key first, then one reload of the broker for all of them (each refresh
    # reloads the server); starting them then issues nothing.
    for role in BUILTIN_ROLES:
        await issue_replicas(settings, role, None, 1, admit=False)
    await refresh_broker(settings)
    roles = {role: (await start_builtin(settings, role)).pid for role in BUILTIN_ROLES}
    return SystemUp(
        url, stream, info.pid, position, roles, await _console(settings) if console else None
    )


async def _console(settings: Settings) -> str:
    """Start the console's daemon unless it runs; its URL once it listens."""
    name = console_name(settings)
    if find_daemon(settings.run_dir, settings.logs_dir, name) is None:
        start_daemon(settings.run_dir, settings.logs_dir, name, console_argv(settings), keep=True)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        found = console_url(settings)
        if found is not None:
            return found
        if find_daemon(settings.run_dir, settings.logs_dir, name) is None:
            raise _exited_at_start(settings, name, "the console")
        await asyncio.sleep(0.1)  # polling a daemon that is starting
    raise ServerError("the console did not start listening in time; see its log")


async def _foreground(settings: Settings, stop: asyncio.Event) -> None:
    # The roles' code, only for the foreground: `up --detach` and `down` start and stop their
    # daemons and run none of it.
    from swarmlog.agents.host.entrypoints import run_conductor, run_router, run_watchdog
    from swarmlog.agents.host.session import AgentSession

    ids = {role: (await issue_replicas(settings, role, None, 1))[0] for role in BUILTIN_ROLES}
    await asyncio.gather(
        run_projector(settings, stop=stop),
        # Built-in roles beside the projector, in the operator's process: each still logs in
        # as itself (`up --detach` runs them as confined processes of their own).
        run_router(AgentSession.load(settings, ids["router"]), stop),
        run_conductor(AgentSession.load(settings, ids["conductor"]), stop),
        run_watchdog(AgentSession.load(settings, ids["watchdog"]), stop),
    )
