"""Running agents as processes: load ``module:Class``, run replicas until SIGTERM.

An agent process holds its own :class:`~swarmlog.agents.host.session.AgentSession` and nothing else:
:func:`run_agent` reads the agent's key, confines the process away from the data dir
(:mod:`swarmlog.agents.host.sandbox`) and only then imports the handler's module. Every role here
logs in as itself and reads the projections through the query service only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from swarmlog.agents.host.lifecycle import announce_ready
from swarmlog.agents.host.sandbox import confine
from swarmlog.agents.host.session import (
    AgentSession,
    agent_projections,
    agent_query,
    open_agent_log,
)
from swarmlog.agents.policy import idle
from swarmlog.agents.policy.breakers import BreakerPolicy
from swarmlog.agents.policy.routing import AGENTS_SQL, AgentView, agent_view
from swarmlog.agents.presence import liveness_from_env
from swarmlog.agents.publisher import ChainHint, HeadHint, Publisher
from swarmlog.agents.roles.conductor import Conductor
from swarmlog.agents.roles.router import BreakerOutcome, BreakerOutcomeSource, Router
from swarmlog.agents.roles.watchdog import Watchdog
from swarmlog.agents.runtime import AgentRuntime
from swarmlog.agents.targets import load_agent
from swarmlog.bus.ports import EventLog
from swarmlog.config import Settings
from swarmlog.errors import ConfigError, SwarmlogError, TaskError
from swarmlog.projections.client import ProjectionClient, Query, WaitFor
from swarmlog.schemas.signing import ChainHead

__all__ = [
    "run_agent",
    "run_conductor",
    "run_router",
    "run_watchdog",
]


async def run_agent(
    settings: Settings,
    target: str,
    agent_id: str,
    replica: str,
    stop: asyncio.Event,
    *,
    ack_wait: float = 30.0,
) -> None:
    """Run one replica of ``target`` as ``agent_id`` until ``stop`` (the task in hand finishes
    first), in a process of its own: this process is confined to what an agent needs before the
    target's module is imported, and never sees the data dir again."""
    session = AgentSession.load(settings, agent_id)
    confine(settings.data_dir, name=agent_id)
    builtin = _BUILTIN_RUNNERS.get(target)
    if builtin is not None:
        await builtin(session, stop)
        return
    cls = load_agent(target)
    async with open_agent_log(session) as log:
        # An external agent may not query the projection: it walks its own prefix instead.
        external = session.credential.trust_level == "external"
        projections = agent_projections(session, log)
        hint = None if external else _chain_hint(projections)
        publisher = Publisher(log, session.identity, session.namespace, hint=hint)

        query, wait_for = _projection_access(projections)
        every, _ = liveness_from_env()
        runtime = AgentRuntime(
            cls(),
            log,
            publisher,
            replica=replica,
            ack_wait=ack_wait,
            heartbeat=every,
            query=query,
            wait_for=wait_for,
            credential=session.issued,
        )
        await runtime.start()
        announce_ready(agent_id)
        try:
            await runtime.run(stop)
        finally:
            await runtime.close()


_OUTCOMES_SQL = (
    "SELECT e.seq, a.role, e.type = 'result' AS ok,"
    " coalesce(json_extract_string(e.payload, '$.permanent') = 'true', false) AS permanent,"
    " json_extract_string(e.payload, '$.dependency') AS dependency FROM events e"
    " JOIN agents a ON a.agent_id = e.sender"
    " WHERE e.seq > {after} AND e.type IN ('result', 'error') ORDER BY e.seq LIMIT 5000"
)


def _projected_outcomes(projections: ProjectionClient) -> BreakerOutcomeSource:
    """Each role's results (successes) and errors (failures; a permanent one neither) from
    the projection, in order."""

    async def read(after: int | None) -> tuple[list[BreakerOutcome], int]:
        if after is None:
            rows = await agent_query(projections, "SELECT max(seq) AS last FROM events")
            return [], int(rows[0]["last"] or 0)
        rows = await agent_query(projections, _OUTCOMES_SQL.format(after=int(after)))
        found: list[BreakerOutcome] = [
            (
                int(r["seq"]),
                str(r["role"]),
                None if r["permanent"] and not r["ok"] else bool(r["ok"]),
                r["dependency"],
            )
            for r in rows
        ]
        return found, found[-1][0] if found else after

    return read


def breaker_policy_from_env(env: Mapping[str, str] | None = None) -> BreakerPolicy:
    """The routers' breaker policy: ``SWARMLOG_BREAKER_FAILURES`` (failures in a row that open a
    role's circuit, default 5) and ``SWARMLOG_BREAKER_COOLDOWN`` (seconds before a probe, 30)."""
    env = os.environ if env is None else env
    try:
        return BreakerPolicy(
            consecutive_failures=int(env.get("SWARMLOG_BREAKER_FAILURES", "5")),
            cooldown=float(env.get("SWARMLOG_BREAKER_COOLDOWN", "30")),
        )
    except ValueError as exc:
        raise ConfigError(
            f"SWARMLOG_BREAKER_FAILURES / SWARMLOG_BREAKER_COOLDOWN: {exc}; use a count >= 1"
            " and seconds >= 0"
        ) from None


async def run_router(session: AgentSession, stop: asyncio.Event) -> None:
    """Run one router replica until ``stop``."""
    policy = breaker_policy_from_env()
    every, stale_after = liveness_from_env()
    async with open_agent_log(session) as log:
        projections = agent_projections(session, log)
        router = Router(
            log,
            Publisher(log, session.identity, session.namespace, hint=_chain_hint(projections)),
            _projected_agents(projections),
            outcomes=_projected_outcomes(projections),
            breaker_policy=policy,
            heartbeat=every,
            stale_after=stale_after,
        )
        await router.start()
        announce_ready(session.agent_id)
        wait: float | None = None
        routed = False
        try:
            while not stop.is_set():
                try:
                    # Offers ring at once; the wait bounds how late a redelivered or retried
                    # offer is seen (and how often the breakers are looked at while idle).
                    wait = idle.next_wait(wait, routed, most=idle.FIRST * 4)
                    routed = bool(await router.step(wait)) or router.rang
                except TaskError:
                    raise  # a built-in query the service refuses is a bug: stop, loudly
                except SwarmlogError as exc:  # a busy or restarting projector: try again
                    logging.getLogger(__name__).warning("router step failed: %s", exc)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), _STEP_RETRY)
        finally:
            await router.close()


async def _steps_until(
    stop: asyncio.Event, step: Callable[[], Awaitable[object]], name: str
) -> None:
    """Run ``step`` again and again until ``stop``; a step waiting out its interval when the
    stop comes is cancelled (a role's steps are safe to cut: what they publish is conditional
    or idempotent), so the role stops at once, not at the end of its interval."""
    stopping = asyncio.ensure_future(stop.wait())
    try:
        while not stop.is_set():
            stepping = asyncio.ensure_future(step())
            await asyncio.wait({stepping, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not stepping.done():
                stepping.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await stepping
                return
            try:
                stepping.result()
            except TaskError:
                raise  # a built-in query the service refuses is a bug: stop, loudly
            except SwarmlogError as exc:  # a busy or restarting projector: try again
                logging.getLogger(__name__).warning("%s step failed: %s", name, exc)
    finally:
        stopping.cancel()


def _projection_access(
    projections: ProjectionClient,
) -> tuple[Query, WaitFor]:
    """Read-only SQL over the live projection, and a wait until it has folded up to a seq."""

    async def read(sql: str) -> list[dict[str, Any]]:
        return await agent_query(projections, sql)

    async def wait_for(seq: int) -> None:
        await projections.wait(seq)

    return read, wait_for


async def run_conductor(session: AgentSession, stop: asyncio.Event) -> None:
    """Run one conductor replica until ``stop``."""
    every, _ = liveness_from_env()
    await _run_projection_role(session, stop, functools.partial(Conductor, heartbeat=every))


async def run_watchdog(session: AgentSession, stop: asyncio.Event) -> None:
    """Run one watchdog replica until ``stop`` (from the environment: the interval,
    ``SWARMLOG_WATCHDOG_INTERVAL`` seconds, default 2; ``SWARMLOG_DEADLOCK_POLICY`` break or
    escalate, default break; ``SWARMLOG_STALL_AFTER`` seconds of no progress, default 600; and
    :func:`liveness_from_env`)."""
    try:
        interval = float(os.environ.get("SWARMLOG_WATCHDOG_INTERVAL", "2"))
        stall_after = float(os.environ.get("SWARMLOG_STALL_AFTER", "600"))
    except ValueError:
        interval = stall_after = -1.0  # refused just below
    policy = os.environ.get("SWARMLOG_DEADLOCK_POLICY", "break")
    if policy not in ("break", "escalate") or not 0.1 <= interval <= 3600 or stall_after <= 0:
        raise ConfigError(
            "SWARMLOG_WATCHDOG_INTERVAL is 0.1-3600 seconds, SWARMLOG_DEADLOCK_POLICY break or"
            " escalate, SWARMLOG_STALL_AFTER seconds > 0"
        )
    every, stale_after = liveness_from_env()
    watchdog = functools.partial(
        Watchdog,
        interval=interval,
        policy=policy,  # type: ignore[arg-type]
        stall_after=stall_after,
        heartbeat=every,
        stale_after=stale_after,
    )
    await _run_projection_role(session, stop, watchdog)


async def _run_projection_role(
    session: AgentSession,
    stop: asyncio.Event,
    replica: Callable[[EventLog, Publisher, Query, WaitFor], Conductor | Watchdog],
) -> None:
    """Run the replica ``replica`` builds over this session's log and projections until
    ``stop``."""
    async with open_agent_log(session) as log:
        projections = agent_projections(session, log)
        read, wait_for = _projection_access(projections)
        hint = _chain_hint(projections)
        role = replica(
            log, Publisher(log, session.identity, session.namespace, hint=hint), read, wait_for
        )
        await role.start()
        announce_ready(session.agent_id)
        try:
            await _steps_until(stop, role.step, role.role)
        finally:
            await role.close()


_BUILTIN_RUNNERS: dict[str, Callable[[AgentSession, asyncio.Event], Awaitable[None]]] = {
    "router": run_router,
    "conductor": run_conductor,
    "watchdog": run_watchdog,
}
"""How each of :data:`BUILTIN_TARGETS` runs."""


def _projected_agents(projections: ProjectionClient) -> Callable[[], Awaitable[list[AgentView]]]:
    async def read() -> list[AgentView]:
        return [agent_view(row) for row in await agent_query(projections, AGENTS_SQL)]

    return read


_STEP_RETRY = 0.5
"""Seconds a built-in role waits after a failed step before the next."""


_CHAIN_HINT_SQL = (
    "SELECT p.position, h.sender_seq, h.hash, h.seq"
    " FROM (SELECT max(seq) AS position FROM projector_position) p"
    " LEFT JOIN chain_heads h ON h.sender = '{sender}'"
)


def _chain_hint(projections: ProjectionClient) -> HeadHint:
    """The live projection's view of this process's own chain (one consistent read of its
    ``chain_heads`` row and position), asked over this process's own connection; ``None`` when
    no projector answers. The publisher checks it against the stream."""

    async def hint(sender: str) -> ChainHint | None:
        sql = _CHAIN_HINT_SQL.format(sender=sender.replace("'", "''"))
        try:
            rows = (await projections.rows(sql, timeout=5.0)).rows
        except SwarmlogError:  # no hint: the publisher walks from the start
            return None
        if len(rows) != 1:
            return None
        position, sender_seq, hash_, seq = rows[0]
        if position is None:
            return None
        if sender_seq is None:
            return ChainHint(ChainHead(), 0, int(position))
        return ChainHint(ChainHead(int(sender_seq), str(hash_)), int(seq), int(position))

    return hint
