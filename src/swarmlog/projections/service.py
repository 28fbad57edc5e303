"""The projector's read-only services over NATS request/reply, while it owns the DuckDB file.

``_swarmlog.<ns>.rpc.query``   ``{"sql": ...}`` -> ``{"columns", "rows", "truncated"}``
``_swarmlog.<ns>.rpc.state``   ``{}`` -> ``{"position", "state_hash"}`` (one consistent read)
``_swarmlog.<ns>.rpc.position`` ``{}`` -> ``{"position"}``
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.aio.subscription import Subscription

from swarmlog.bus.rpc import serve
from swarmlog.bus.subjects import rpc_subject
from swarmlog.errors import QueryError
from swarmlog.projections.query import run_query
from swarmlog.projections.store import ProjectionStore

__all__ = ["QueryService"]


class QueryService:
    """Serves queries and state reads from a live projection."""

    def __init__(self, client: Client, store: ProjectionStore, namespace: str) -> None:
        self._client = client
        self._store = store
        self._namespace = namespace
        self._subs: list[Subscription] = []

    async def start(self) -> None:
        ns = self._namespace
        self._subs = [
            await serve(self._client, rpc_subject(ns, "query"), self._query),
            await serve(self._client, rpc_subject(ns, "state"), self._state),
            await serve(self._client, rpc_subject(ns, "position"), self._position),
        ]
        await self._client.flush()

    async def stop(self) -> None:
        for sub in self._subs:
            await sub.unsubscribe()
        self._subs = []

    async def _query(self, body: Any) -> Any:
        if not isinstance(body, dict) or not isinstance(body.get("sql"), str):
            raise QueryError('a query request is {"sql": "SELECT ..."}')
        sql = body["sql"]

        def run() -> Any:
            cursor = self._store.cursor()
            try:
                return msgspec.to_builtins(run_query(cursor, sql))
            finally:
                cursor.close()

        return await asyncio.to_thread(run)

    async def _state(self, body: Any) -> Any:
        position, state_hash = await asyncio.to_thread(self._store.snapshot_state)
        return {"position": position, "state_hash": state_hash}

    async def _position(self, body: Any) -> Any:
        return {"position": await asyncio.to_thread(self._store.position)}
