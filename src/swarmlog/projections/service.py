"""The projector's read-only services over NATS request/reply, while it owns the DuckDB file.

``_swarmlog.<ns>.rpc.query``   ``{"sql": ...}`` -> ``{"columns", "rows", "truncated"}``
``_swarmlog.<ns>.rpc.state``   ``{}`` -> ``{"position", "state_hash"}`` (one consistent read)
``_swarmlog.<ns>.rpc.position`` ``{}`` -> ``{"position"}``
``_swarmlog.<ns>.rpc.wait``    ``{"seq": N, "timeout": s}`` -> ``{"position"}`` once the projection
                               has reached ``N`` (or at the timeout): "visible in the projection"
                               without polling
``_swarmlog.<ns>.rpc.snapshot`` ``{}`` -> the snapshot just stored (see :mod:`swarmlog.snapshots`)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.aio.subscription import Subscription

from swarmlog.bus.rpc import serve
from swarmlog.bus.subjects import rpc_subject
from swarmlog.errors import QueryError
from swarmlog.projections.query import run_query
from swarmlog.projections.store import ProjectionStore

__all__ = ["QUERY_TIMEOUT", "QueryService"]

QUERY_TIMEOUT = 10.0
"""Seconds a query may run on the live projector."""


class QueryService:
    """Serves queries and state reads from a live projection."""

    def __init__(
        self,
        client: Client,
        store: ProjectionStore,
        namespace: str,
        *,
        snapshot: Callable[[], Awaitable[dict[str, Any]]] | None = None,
    ) -> None:
        self._client = client
        self._snapshot = snapshot
        self._store = store
        self._namespace = namespace
        self._subs: list[Subscription] = []
        self._position = store.position()
        self._advanced = asyncio.Event()

    def advanced(self, position: int) -> None:
        """The projector committed up to ``position`` (wakes waiters)."""
        self._position = max(self._position, position)
        self._advanced.set()
        self._advanced = asyncio.Event()

    async def start(self) -> None:
        ns = self._namespace
        self._subs = [
            await serve(self._client, rpc_subject(ns, "query"), self._query),
            await serve(self._client, rpc_subject(ns, "state"), self._state),
            await serve(self._client, rpc_subject(ns, "position"), self._read_position),
            await serve(self._client, rpc_subject(ns, "wait"), self._wait),
        ]
        if self._snapshot is not None:
            self._subs.append(await serve(self._client, rpc_subject(ns, "snapshot"), self._take))
        await self._client.flush()

    async def stop(self) -> None:
        for sub in self._subs:
            await sub.unsubscribe()
        self._subs = []

    async def _query(self, body: Any) -> Any:
        if not isinstance(body, dict) or not isinstance(body.get("sql"), str):
            raise QueryError('a query request is {"sql": "SELECT ..."}')
        sql = body["sql"]
        cursor = self._store.cursor()

        def run() -> Any:
            return msgspec.to_builtins(run_query(cursor, sql))

        work = asyncio.ensure_future(asyncio.to_thread(run))
        try:
            return await asyncio.wait_for(asyncio.shield(work), QUERY_TIMEOUT)
        except TimeoutError:
            # A runaway query must not hold the projector's database: stop it.
            cursor.interrupt()
            with contextlib.suppress(Exception):
                await work
            raise QueryError(
                f"the query ran longer than {QUERY_TIMEOUT:.0f} s and was stopped; narrow it"
            ) from None
        finally:
            if work.done():
                cursor.close()

    async def _state(self, body: Any) -> Any:
        position, state_hash = await asyncio.to_thread(self._store.snapshot_state)
        return {"position": position, "state_hash": state_hash}

    async def _take(self, body: Any) -> Any:
        assert self._snapshot is not None
        return await self._snapshot()

    async def _read_position(self, body: Any) -> Any:
        return {"position": await asyncio.to_thread(self._store.position)}

    async def _wait(self, body: Any) -> Any:
        if not isinstance(body, dict) or not isinstance(body.get("seq"), int):
            raise QueryError('a wait request is {"seq": N, "timeout": seconds}')
        timeout = min(float(body.get("timeout", 5.0)), QUERY_TIMEOUT)
        deadline = asyncio.get_running_loop().time() + timeout
        while self._position < body["seq"]:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._advanced.wait(), remaining)
        return {"position": self._position}
