"""The client of the projector's read-only services (:mod:`swarmlog.projections.service`).

Every reader of the projections goes through :class:`ProjectionClient`: an agent over its own
login, the operator's CLI over the operator's. It asks ``_swarmlog.<ns>.rpc.<name>`` and turns an
``{"error": {"code", "message"}}`` reply back into the error the service raised (``SWL413``
:class:`~swarmlog.errors.BusyError`, ``SWL414`` :class:`~swarmlog.errors.QueryTimeout`, any other
a :class:`~swarmlog.errors.QueryError` keeping the service's code).

With a ``fallback`` file (the operator's, never an agent's) a client that finds no projector
answering reads the DuckDB file itself, briefly (a projector starting meanwhile must not find it
held, see :mod:`swarmlog.projections.store`); without one it raises
:class:`~swarmlog.errors.ProjectorDown`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from nats.aio.client import Client

from swarmlog.bus.rpc import request
from swarmlog.bus.subjects import rpc_subject
from swarmlog.errors import (
    BusError,
    BusyError,
    ProjectorDown,
    QueryError,
    QueryTimeout,
    StoreBusy,
    SwarmlogError,
)
from swarmlog.projections.query import QueryResult, run_query
from swarmlog.projections.service import QUERY_TIMEOUT

# The store (DuckDB) is imported where the file fallback reads the file: an agent's client never
# does, and an agent process must not load DuckDB to ask the projector.

__all__ = ["LiveState", "ProjectionClient", "Query", "WaitFor", "records", "remote_error"]

Query = Callable[[str], Awaitable[list[dict[str, Any]]]]
"""Read-only SQL over the projections, rows as dicts (a client's :meth:`ProjectionClient.query`,
or the simulation's stand-in): what the daemons and a handler's context read with."""
WaitFor = Callable[[int], Awaitable[None]]
"""Return once the projection has folded the stream up to a sequence."""

T = TypeVar("T")

RPC_TIMEOUT = 5.0
"""Seconds to wait for the answer to a state, position or wait request."""
QUERY_WAIT = QUERY_TIMEOUT + 5.0
"""Seconds to wait for a query's answer: the service's own budget, and then some."""

_REMOTE: dict[str, type[SwarmlogError]] = {
    BusError.code: BusError,
    BusyError.code: BusyError,
    QueryTimeout.code: QueryTimeout,
}
"""The service's errors that come back as their own class; any other is a QueryError."""


@dataclass(frozen=True)
class LiveState:
    """The projection's position and state hash, read at one consistent point."""

    position: int
    state_hash: str


def records(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """Rows as dicts by column name."""
    return [dict(zip(columns, row, strict=True)) for row in rows]


def remote_error(reply: Any) -> SwarmlogError | None:
    """The error an ``{"error": {"code", "message"}}`` reply carries, or ``None`` for an answer."""
    if not isinstance(reply, dict):
        return QueryError(f"the projector answered {reply!r}, not an object")
    if "error" not in reply:
        return None
    error = reply["error"]
    if not isinstance(error, dict):
        return QueryError(str(error))
    code = str(error.get("code", QueryError.code))
    # The service sends ``str(exc)``, which starts with the code: say it once.
    message = str(error.get("message", error)).removeprefix(f"[{code}] ")
    kind = _REMOTE.get(code)
    if kind is not None:
        return kind(message)
    refused = QueryError(message)
    refused.code = code  # SWL410 refused, SWL411 too large, SWL412 not a swarmlog login...
    return refused


class ProjectionClient:
    """Reads of the live projection: queries, its state, its position, a wait until it has
    folded a sequence, and (the operator's) snapshots.

    ``client`` is a NATS connection (``None``: no server is up); ``fallback`` the projection file
    to read when no projector answers.
    """

    def __init__(
        self, client: Client | None, namespace: str, *, fallback: Path | None = None
    ) -> None:
        self._client = client
        self._namespace = namespace
        self._fallback = fallback

    async def ask(self, name: str, body: Any, timeout: float = RPC_TIMEOUT) -> Any | None:
        """Ask service ``name``; its answer, ``None`` when no projector serves it, the error it
        replied with raised (:func:`remote_error`), :class:`BusError` when no answer comes."""
        if self._client is None:
            return None
        reply = await request(self._client, rpc_subject(self._namespace, name), body, timeout)
        if reply is None:
            return None
        error = remote_error(reply)
        if error is not None:
            raise error
        return reply

    async def rows(self, sql: str, *, timeout: float = QUERY_WAIT) -> QueryResult:
        """Run one read-only SELECT: its columns, rows and whether they were ``truncated``."""
        return await self._from_projector_or_file(
            lambda: self.ask("query", {"sql": sql}, timeout),
            lambda reply: QueryResult(
                list(reply["columns"]), list(reply["rows"]), bool(reply.get("truncated"))
            ),
            lambda path: _query_file(path, sql),
        )

    async def query(self, sql: str, *, timeout: float = QUERY_WAIT) -> list[dict[str, Any]]:
        """Run one read-only SELECT, each row a dict by column name (the first rows only, when
        :meth:`rows` says ``truncated``)."""
        result = await self.rows(sql, timeout=timeout)
        return records(result.columns, result.rows)

    async def state(self) -> LiveState:
        """The position and state hash of the projection, read consistently."""

        def read_file(path: Path) -> LiveState:
            from swarmlog.projections.store import ProjectionStore

            with ProjectionStore(path, read_only=True) as store:
                return LiveState(*store.snapshot_state())

        return await self._from_projector_or_file(
            lambda: self.ask("state", {}),
            lambda reply: LiveState(int(reply["position"]), str(reply["state_hash"])),
            read_file,
        )

    async def position(self, timeout: float = RPC_TIMEOUT) -> int | None:
        """The live projector's position; ``None`` when no projector answers."""
        reply = await self.ask("position", {}, timeout)
        return None if reply is None else int(reply["position"])

    async def wait(self, seq: int, timeout: float = 5.0) -> int | None:
        """Wait (up to ``timeout`` seconds) until the projector has folded ``seq``; its position
        then, ``None`` when no projector answers. The position may be short of ``seq`` (the
        timeout): the caller decides whether that matters."""
        body = {"seq": seq, "timeout": timeout}
        reply = await self.ask("wait", body, timeout + RPC_TIMEOUT)
        return None if reply is None else int(reply["position"])

    async def snapshot(self, timeout: float = 300.0) -> dict[str, Any] | None:
        """Have the projector take a snapshot now (see :mod:`swarmlog.control.snapshots`); what it
        stored, ``None`` when no projector answers."""
        reply = await self.ask("snapshot", {}, timeout)
        return None if reply is None else dict(reply)

    async def _from_projector_or_file(
        self,
        ask: Callable[[], Awaitable[Any | None]],
        answer: Callable[[dict[str, Any]], T],
        read_file: Callable[[Path], T],
    ) -> T:
        """Ask the live projector; with none answering, read the file in a thread. A projector
        that owns the file but does not answer yet is starting: ask it again for a while."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            reply = await ask()
            if reply is not None:
                return answer(reply)
            if self._fallback is None:
                raise ProjectorDown(
                    f"no projector answers queries on {rpc_subject(self._namespace, 'query')};"
                    " start it with `swarmlog up --detach` (an agent reads the projections only"
                    " through it)"
                )
            # Only the operator's fallback gets here: an agent's client never loads DuckDB.
            from swarmlog.projections.store import READER_TIMEOUT

            try:
                return await asyncio.to_thread(read_file, self._fallback)
            except StoreBusy:
                if loop.time() > started + READER_TIMEOUT:
                    raise
            await asyncio.sleep(0.1)  # polling a projector that is still opening its file


def _query_file(path: Path, sql: str) -> QueryResult:
    from swarmlog.projections.store import READER_TIMEOUT, ProjectionStore

    with ProjectionStore(path, read_only=True) as store:
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
