"""The running system, wired: which server to talk to, the projector daemon, reading projections.

This is the imperative shell the CLI calls; it holds no domain logic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from swarmlog.bus.jetstream import JetStreamLog, connect
from swarmlog.bus.permissions import Login
from swarmlog.bus.rpc import request
from swarmlog.bus.server import EmbeddedServer
from swarmlog.bus.subjects import rpc_subject
from swarmlog.config import Settings
from swarmlog.errors import BusError, QueryError, StoreBusy
from swarmlog.keystore import KeyStore
from swarmlog.projections.projector import BatchResult, Projector
from swarmlog.projections.query import QueryResult, run_query
from swarmlog.projections.service import QUERY_TIMEOUT, QueryService
from swarmlog.projections.store import READER_TIMEOUT, ProjectionStore
from swarmlog.snapshots import snapshot_every, take_snapshot

__all__ = [
    "LiveState",
    "ask_projector",
    "command_argv",
    "login_of",
    "open_log",
    "projector_argv",
    "projector_name",
    "read_live_state",
    "read_projection",
    "resolve_url",
    "run_projector",
]

log = logging.getLogger(__name__)
T = TypeVar("T")


RPC_TIMEOUT = 5.0


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
) -> AsyncIterator[JetStreamLog]:
    """Connect to the namespace's stream (creating it, with ``replicas``, with ``provision``),
    logged in as ``agent_id`` or, with none, as the operator."""
    url = resolve_url(settings)
    log_ = await JetStreamLog.open(
        url,
        settings.namespace,
        provision=provision,
        replicas=replicas,
        login=login_of(settings, agent_id),
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


async def run_projector(settings: Settings, *, stop: asyncio.Event | None = None) -> int:
    """Run the live projector and its query service until ``stop`` (or SIGTERM/SIGINT)."""
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

        service = QueryService(log_.client, store, settings.namespace, snapshot=snapshot)
        every, last = snapshot_every(), store.position()
        periodic: set[asyncio.Task[Any]] = set()

        def advanced(done: BatchResult) -> None:
            nonlocal last
            service.advanced(done.last_seq)
            if every and done.last_seq - last >= every and not taking.locked():
                last = done.last_seq
                task = asyncio.ensure_future(_periodic(snapshot))
                periodic.add(task)
                task.add_done_callback(periodic.discard)

        try:
            await service.start()
            log.info("projector for %s at position %d", log_.stream, store.position())
            return await projector.run(follow=True, stop=stop, on_batch=advanced)
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


@dataclass(frozen=True)
class LiveState:
    position: int
    state_hash: str


async def ask_projector(
    settings: Settings, name: str, body: object, timeout: float = RPC_TIMEOUT
) -> object | None:
    """Ask the live projector; ``None`` when no server is up or no projector serves.

    A projector that is there but does not answer in ``timeout`` raises :class:`BusError`.
    """
    try:
        url = resolve_url(settings)
    except BusError:
        return None
    try:
        client = await connect(url, timeout=2.0, login=login_of(settings))
    except BusError:
        return None
    try:
        return await request(client, rpc_subject(settings.namespace, name), body, timeout)
    finally:
        await client.close()


def _raise_remote(reply: object) -> None:
    if isinstance(reply, dict) and "error" in reply:
        error = reply["error"]
        raise QueryError(str(error.get("message", error)).removeprefix("[SWL410] "))


async def read_projection(settings: Settings, sql: str) -> QueryResult:
    """Run a read-only query: on the live projector if one answers, else on the file (briefly:
    a projector starting meanwhile must not find it held, see ``store``)."""
    settings.require_data_dir()
    return await _from_projector_or_file(
        settings,
        lambda: ask_projector(settings, "query", {"sql": sql}, QUERY_TIMEOUT + 5.0),
        lambda reply: QueryResult(reply["columns"], reply["rows"], bool(reply.get("truncated"))),
        lambda: _query_file(settings, sql),
    )


def _query_file(settings: Settings, sql: str) -> QueryResult:
    with ProjectionStore(settings.projection_path, read_only=True) as store:
        cursor = store.cursor()
        # A reader holds DuckDB's file lock while it reads: bounded, so a projector starting
        # meanwhile waits for it at most this long.
        timer = threading.Timer(READER_TIMEOUT, cursor.interrupt)
        timer.start()
        try:
            return run_query(cursor, sql)
        except QueryError:
            if not timer.is_alive():
                raise QueryError(
                    f"the query ran longer than {READER_TIMEOUT:.0f} s and was stopped; narrow it"
                ) from None
            raise
        finally:
            timer.cancel()
            cursor.close()


async def _from_projector_or_file(
    settings: Settings,
    ask: Callable[[], Awaitable[object | None]],
    answer: Callable[[dict[str, Any]], T],
    read_file: Callable[[], T],
) -> T:
    """Ask the live projector; with none answering, read the file in a thread. A projector
    that owns the file but does not answer yet is starting: ask it again for a while."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READER_TIMEOUT
    while True:
        reply = await ask()
        if reply is not None:
            _raise_remote(reply)
            assert isinstance(reply, dict)
            return answer(reply)
        try:
            return await asyncio.to_thread(read_file)
        except StoreBusy:
            if loop.time() > deadline:
                raise
        await asyncio.sleep(0.1)  # polling a projector that is still opening its file


async def read_live_state(settings: Settings) -> LiveState:
    """Position and state hash of the live projection, read consistently."""

    def read_file() -> LiveState:
        with ProjectionStore(settings.projection_path, read_only=True) as store:
            return LiveState(*store.snapshot_state())

    return await _from_projector_or_file(
        settings,
        lambda: ask_projector(settings, "state", {}),
        lambda reply: LiveState(int(reply["position"]), str(reply["state_hash"])),
        read_file,
    )
