"""The projector's read-only services over NATS request/reply, while it owns the DuckDB file.

``_swarmlog.<ns>.rpc.query``   ``{"sql": ...}`` -> ``{"columns", "rows", "truncated"}``
``_swarmlog.<ns>.rpc.state``   ``{}`` -> ``{"position", "state_hash"}`` (one consistent read)
``_swarmlog.<ns>.rpc.position`` ``{}`` -> ``{"position"}``
``_swarmlog.<ns>.rpc.wait``    ``{"seq": N, "timeout": s}`` -> ``{"position"}`` once the projection
                               has reached ``N`` (or at the timeout): "visible in the projection"
                               without polling
``_swarmlog.<ns>.rpc.snapshot`` ``{}`` -> the snapshot just stored (see
:mod:`swarmlog.control.snapshots`)

What the services answer is what a read asked next sees. The projector tells the service a
batch's position as soon as the batch is folded, while DuckDB commits it: ``wait`` and
``position`` answer it then, and every read (a query, the state, a snapshot) first waits for the
commits of what was told, a few milliseconds at most. So "visible" costs no commit's time on the
way to the answer, and no reader sees less than it was told. A projector that dies in those
milliseconds takes its service with it, and what it told without committing is at most one
transaction, :data:`~swarmlog.projections.projector.COMMIT_MAX` events: the service of the one
started next (``told_before``) holds reads until it has committed that far again (or to the
stream's end, if nearer), refolding from the stream, which holds the events.

Who may ask what is the broker's business (an agent reaches only the services it imports); the
service knows who asks (:mod:`swarmlog.bus.rpc`) and runs queries concurrently, at most
:data:`QUERIES_PER_CALLER` at a time for one caller, for at most :data:`QUERY_TIMEOUT` seconds
(the operator) or :data:`AGENT_QUERY_TIMEOUT` (an agent): one agent's slow queries neither hold
up another's nor the projector.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec
from nats.aio.client import Client
from nats.aio.subscription import Subscription

from swarmlog.bus.rpc import serve
from swarmlog.bus.subjects import rpc_subject
from swarmlog.errors import BusyError, QueryError, QueryTimeout
from swarmlog.schemas.signing import OPERATOR_ID

if TYPE_CHECKING:
    from swarmlog.projections.store import ProjectionStore

__all__ = ["AGENT_QUERY_TIMEOUT", "QUERIES_PER_CALLER", "QUERY_TIMEOUT", "QueryService"]

QUERY_TIMEOUT = 10.0
"""Seconds an operator's query (the CLI) may run on the live projector."""
AGENT_QUERY_TIMEOUT = 3.0
"""Seconds an agent's query may run: agents ask small, indexed questions."""
QUERIES_PER_CALLER = 2
"""Queries one caller may have running at once; more wait their turn."""
QUERIES_WAITING_PER_CALLER = 8
"""Queries one caller may have running or waiting; more are refused as busy (try again)."""
ANSWERS_KEPT = 64
"""Distinct queries whose answers are kept until the projection moves on."""
ROWS_KEPT = 1_000
"""Answers longer than this many rows are not kept (they are rarely asked twice)."""
_VOLATILE = re.compile(
    r"\b(now|today|current_\w+|get_current_\w+|transaction_timestamp|random|setseed|uuid"
    r"|gen_random_uuid|nextval|currval)\b",
    re.IGNORECASE,
)
"""Functions whose value changes while the projection does not: a query naming one is never
answered from the kept answers."""


class QueryService:
    """Serves queries and state reads from a live projection."""

    def __init__(
        self,
        client: Client,
        store: ProjectionStore,
        namespace: str,
        *,
        snapshot: Callable[[], Awaitable[dict[str, Any]]] | None = None,
        told_before: int = 0,
    ) -> None:
        """``told_before``: the furthest position a projector before this one may have told
        (readers) without committing it; reads wait until it is committed."""
        self._client = client
        self._snapshot = snapshot
        self._store = store
        self._namespace = namespace
        self._subs: list[Subscription] = []
        self._position = store.position()
        """What the projector committed."""
        self._told = self._position
        """What ``wait`` and ``position`` answer: folded, its commit landed or under way."""
        self._held_to = told_before
        """Reads wait until this is committed: what a projector before this one may have told
        (``wait`` and ``position`` do not answer it: this projector has not folded it yet)."""
        self._advanced = asyncio.Event()
        self._asked: dict[str, int] = {}
        self._turns: dict[str, asyncio.Semaphore] = {}
        self._answers: OrderedDict[str, tuple[int, Any]] = OrderedDict()
        """Recent answers by query text, with the position they were asked at. The roles ask the
        same questions every second or two; while nothing is folded, the answer is the same
        and DuckDB need not run it again (an idle system's projector did little else)."""

    def folded(self, position: int) -> None:
        """The projector folded up to ``position`` and is committing it (wakes waiters; reads
        asked from now on wait for that commit)."""
        self._told = max(self._told, position)
        self._wake()

    def advanced(self, position: int) -> None:
        """The projector committed up to ``position`` (wakes waiters and held reads)."""
        self._position = max(self._position, position)
        self._told = max(self._told, position)
        self._wake()

    def _wake(self) -> None:
        self._advanced.set()
        self._advanced = asyncio.Event()

    async def _until(self, reached: Callable[[], bool], timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until ``reached()``, looking again at each fold and
        commit; whether it was."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not reached():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._advanced.wait(), remaining)
        return True

    async def _committed(self, budget: float = QUERY_TIMEOUT) -> None:
        """Wait until what was told is committed, so a read sees all of it."""
        told = max(self._told, self._held_to)
        if not await self._until(lambda: self._position >= told, budget):
            raise BusyError(
                f"the projector has not committed seq {told} within {budget:g} s; try again"
            )

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

    async def _query(self, body: Any, caller: str) -> Any:
        if not isinstance(body, dict) or not isinstance(body.get("sql"), str):
            raise QueryError('a query request is {"sql": "SELECT ..."}')
        if self._asked.get(caller, 0) >= QUERIES_WAITING_PER_CALLER:
            raise BusyError(
                f"{caller} has {QUERIES_WAITING_PER_CALLER} queries running or waiting; wait for"
                " them to end"
            )
        self._asked[caller] = self._asked.get(caller, 0) + 1
        turn = self._turns.setdefault(caller, asyncio.Semaphore(QUERIES_PER_CALLER))
        try:
            async with turn:
                return await self._run_query(body["sql"], caller)
        finally:
            self._asked[caller] -= 1
            if not self._asked[caller]:
                del self._asked[caller], self._turns[caller]

    async def _run_query(self, sql: str, caller: str) -> Any:
        await self._committed(QUERY_TIMEOUT if caller == OPERATOR_ID else AGENT_QUERY_TIMEOUT)
        # The position before the query runs: a commit landing meanwhile may be in the answer,
        # and the answer is kept only until the position moves past that one.
        asked_at = self._position
        kept = self._answers.get(sql)
        if kept is not None and kept[0] == asked_at:
            self._answers.move_to_end(sql)
            return kept[1]
        answer = await self._ask_duckdb(sql, caller)
        if _VOLATILE.search(sql) is None and len(answer["rows"]) <= ROWS_KEPT:
            self._answers[sql] = (asked_at, answer)
            self._answers.move_to_end(sql)
            while len(self._answers) > ANSWERS_KEPT:
                self._answers.popitem(last=False)
        return answer

    async def _ask_duckdb(self, sql: str, caller: str) -> Any:
        budget = QUERY_TIMEOUT if caller == OPERATOR_ID else AGENT_QUERY_TIMEOUT
        # Opened in the thread: the store's lock may be held a while (a snapshot's copy), and
        # the event loop must not wait for it.
        opened: list[Any] = []

        def run() -> Any:
            from swarmlog.projections.query import run_query  # DuckDB: the projector's only

            opened.append(self._store.cursor())
            return msgspec.to_builtins(run_query(opened[0], sql))

        work = asyncio.ensure_future(asyncio.to_thread(run))
        try:
            return await asyncio.wait_for(asyncio.shield(work), budget)
        except TimeoutError:
            # A runaway query must not hold the projector's database: stop it.
            if opened:
                opened[0].interrupt()
            with contextlib.suppress(Exception):
                await work
            raise QueryTimeout(
                f"the query ran longer than {budget:g} s and was stopped; narrow it"
            ) from None
        finally:
            if work.done() and opened:
                opened[0].close()

    async def _state(self, body: Any, caller: str) -> Any:
        await self._committed(QUERY_TIMEOUT)
        position, state_hash = await asyncio.to_thread(self._store.snapshot_state)
        return {"position": position, "state_hash": state_hash}

    async def _take(self, body: Any, caller: str) -> Any:
        assert self._snapshot is not None
        await self._committed(QUERY_TIMEOUT)
        return await self._snapshot()

    async def _read_position(self, body: Any, caller: str) -> Any:
        # What the projector told us (a read asked next sees it): asking the file would scan
        # the rows (the position is the last sequence they hold) each time, for the same answer.
        return {"position": self._told}

    async def _wait(self, body: Any, caller: str) -> Any:
        if not isinstance(body, dict) or not isinstance(body.get("seq"), int):
            raise QueryError('a wait request is {"seq": N, "timeout": seconds}')
        seq = body["seq"]
        timeout = min(float(body.get("timeout", 5.0)), QUERY_TIMEOUT)
        await self._until(lambda: self._told >= seq, timeout)
        return {"position": self._told}
