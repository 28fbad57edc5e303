"""The running system, wired: which server to talk to, the projector daemon, reading projections.

This is the imperative shell the CLI calls; it holds no domain logic.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from swarmlog.bus.jetstream import JetStreamLog, connect
from swarmlog.bus.osprocesses import cap_malloc_arenas, pid_alive
from swarmlog.bus.permissions import Login
from swarmlog.bus.server import EmbeddedServer
from swarmlog.config import Settings
from swarmlog.control.keystore import KeyStore
from swarmlog.errors import BusError
from swarmlog.projections.client import ProjectionClient

__all__ = [
    "AGENT_DAEMON_PREFIX",
    "CONSOLE_PORT",
    "agent_argv",
    "agent_daemon_name",
    "command_argv",
    "console_argv",
    "console_name",
    "console_url",
    "console_where",
    "login_of",
    "open_log",
    "open_projections",
    "projector_argv",
    "projector_name",
    "resolve_url",
    "run_projector",
]

log = logging.getLogger(__name__)


def resolve_url(settings: Settings) -> str:
    """The NATS URL: the configured one, or the embedded server running for this data dir."""
    if settings.nats_url:
        return settings.nats_url
    settings.require_data_dir()
    running = EmbeddedServer.running(settings.server_dir)
    if running is None:
        raise BusError(
            f"no swarmlog server is running for {settings.data_dir}; start one with"
            " `swarmlog up --detach`, or pass --nats-url"
        )
    return running.url


def login_of(settings: Settings, agent_id: str | None = None) -> Login | None:
    """How ``agent_id`` (or, with none, the operator) logs in to NATS: its derived nkey. ``None``
    where this data dir holds no operator secret (the CLI then connects anonymously)."""
    store = KeyStore(settings.keys_dir)
    if agent_id is None and not store.operator_seed_path.exists():
        return None
    return store.login(agent_id)


@contextlib.asynccontextmanager
async def open_log(
    settings: Settings,
    *,
    provision: bool = False,
    replicas: int = 1,
    agent_id: str | None = None,
    direct_reads: bool = False,
) -> AsyncIterator[JetStreamLog]:
    """Connect to the namespace's stream (creating it, with ``replicas``, with ``provision``),
    logged in as ``agent_id`` or, with none, as the operator; ``direct_reads`` for a login
    that may only read (an auditor's)."""
    url = resolve_url(settings)
    log_ = await JetStreamLog.open(
        url,
        settings.namespace,
        provision=provision,
        replicas=replicas,
        login=login_of(settings, agent_id),
        direct_reads=direct_reads,
    )
    try:
        yield log_
    finally:
        await log_.close()


def projector_name(settings: Settings) -> str:
    return f"projector-{settings.namespace}"


def command_argv(settings: Settings, *args: str) -> list[str]:
    """A ``swarmlog`` command line for a daemon, with this process's settings spelled out."""
    argv = [sys.executable, "-m", "swarmlog", "--data-dir", str(settings.data_dir.resolve())]
    argv += ["--namespace", settings.namespace]
    if settings.nats_url:
        argv += ["--nats-url", settings.nats_url]
    return [*argv, *args]


def projector_argv(settings: Settings) -> list[str]:
    """The command line of the projector daemon."""
    return command_argv(settings, "projector", "run")


SNAPSHOT_GAP = 60.0
"""Seconds at least between the projector's own snapshots (each copies the whole file)."""
PROJECTOR_ARENAS = 2
"""glibc malloc arenas the projector's threads share (measured: its RSS stopped growing with
the log; see docs/benchmarks.md)."""

CONSOLE_PORT = 8470
"""The web console's port when none is given (any free one when it is taken)."""


def console_name(settings: Settings) -> str:
    """The console daemon's name (pidfile, log) for the namespace."""
    return f"console-{settings.namespace}"


def console_argv(settings: Settings) -> list[str]:
    """The command line of the console daemon (``up`` starts it): port 8470, or any free one."""
    return command_argv(settings, "console")


def console_where(settings: Settings) -> Path:
    """Where a running console writes its URL (no token) and pid, once it listens (beside, not
    in, its daemon's pidfile)."""
    return settings.run_dir / f"{console_name(settings)}.where"  # not .json: a pidfile is


def console_url(settings: Settings) -> str | None:
    """The running console's URL (no token), or ``None`` when none runs for the namespace."""
    try:
        where = json.loads(console_where(settings).read_text())
        url, pid = str(where["url"]), int(where["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return url if pid_alive(pid) else None


AGENT_DAEMON_PREFIX = "agent-"
"""Agent replica daemons are named ``agent-<agent id>`` (pidfile and log)."""


def agent_daemon_name(agent_id: str) -> str:
    """The daemon name (pidfile, log) of agent replica ``agent_id``."""
    return AGENT_DAEMON_PREFIX + agent_id


def agent_argv(
    settings: Settings, target: str, agent_id: str, replica: int, ack_wait: float = 30.0
) -> list[str]:
    """The command line of one agent replica (``agent run``): ``target`` as ``agent_id``."""
    return command_argv(
        settings,
        "agent",
        "run",
        target,
        "--agent-id",
        agent_id,
        "--replica",
        str(replica),
        "--ack-wait",
        str(ack_wait),
    )


async def run_projector(settings: Settings, *, stop: asyncio.Event | None = None) -> int:
    """Run the live projector and its query service until ``stop`` (or SIGTERM/SIGINT)."""
    # Here, not at the top: every agent process imports this module to find its server, and
    # must not load DuckDB for a projector it never runs.
    from swarmlog.control.snapshots import snapshot_every, take_snapshot
    from swarmlog.projections.projector import COMMIT_MAX, BatchResult, Projector
    from swarmlog.projections.service import QueryService
    from swarmlog.projections.store import ProjectionStore

    # Before its threads start: a few arenas, not one per thread, keep its memory flat.
    cap_malloc_arenas(PROJECTOR_ARENAS)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    operator_key = KeyStore(settings.keys_dir).operator_public_key()
    settings.projection_path.parent.mkdir(parents=True, exist_ok=True)
    async with open_log(settings, provision=True) as log_:
        # In a thread: it may wait (bounded) for a reader that opened the file to leave.
        store = await asyncio.to_thread(ProjectionStore, settings.projection_path)
        projector = Projector(log_, store, namespace=settings.namespace, operator_key=operator_key)
        taking: asyncio.Lock = asyncio.Lock()

        async def snapshot() -> dict[str, Any]:
            async with taking:  # one at a time
                return await take_snapshot(log_, store, settings.namespace)

        # A projector before this one may have told readers a batch it never committed (it
        # died during the commit): at most one transaction past what the file holds.
        told_before = min(await log_.last_seq(), store.position() + COMMIT_MAX)
        service = QueryService(
            log_.client, store, settings.namespace, snapshot=snapshot, told_before=told_before
        )
        every, last = snapshot_every(), store.position()
        periodic: set[asyncio.Task[Any]] = set()
        taken_at = -SNAPSHOT_GAP  # loop time of the last periodic snapshot

        def advanced(done: BatchResult) -> None:
            nonlocal last, taken_at
            service.advanced(done.last_seq)
            # Counted in stream sequences, junk included: at most one every SNAPSHOT_GAP, so a
            # flood of messages cannot make the projector copy its file again and again.
            due = every and done.last_seq - last >= every and not taking.locked()
            if due and loop.time() - taken_at >= SNAPSHOT_GAP:
                last, taken_at = done.last_seq, loop.time()
                task = asyncio.ensure_future(_periodic(snapshot))
                periodic.add(task)
                task.add_done_callback(periodic.discard)

        try:
            await service.start()
            log.info("projector for %s at position %d", log_.stream, store.position())
            return await projector.run(
                follow=True, stop=stop, on_batch=advanced, on_folded=service.folded
            )
        finally:
            for task in periodic:
                task.cancel()
            await service.stop()
            projector.close()
            store.close()


async def _periodic(snapshot: Callable[[], Awaitable[dict[str, Any]]]) -> None:
    try:
        taken = await snapshot()
        log.info("snapshot %s at seq %d", taken["name"], taken["seq"])
    except Exception as exc:  # a missed snapshot is not worth stopping the projector for
        log.warning("periodic snapshot failed: %s", exc)


@contextlib.asynccontextmanager
async def open_projections(settings: Settings) -> AsyncIterator[ProjectionClient]:
    """The operator's reads of the projections: the live projector over a connection of the
    operator's own (none when no server is up), else the projection file."""
    settings.require_data_dir()
    try:
        client = await connect(resolve_url(settings), timeout=2.0, login=login_of(settings))
    except BusError:
        client = None  # no server: the file is all there is
    try:
        yield ProjectionClient(client, settings.namespace, fallback=settings.projection_path)
    finally:
        if client is not None:
            await client.close()
