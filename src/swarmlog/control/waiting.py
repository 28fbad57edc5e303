"""Waiting for a workflow or a task to end, and saying why it has not.

A wait sleeps on a doorbell on the subject its end is published under (``workflow_completed``,
a task's events), so it wakes when that happens, then has the projector fold the log up to there
and reads the view; it also looks once a second, so a missed ring costs at most that. When the
time is up, :func:`stalled` reads from the projections why the work is still open (an escalation
waiting for a human, no live agent for a capability, no live conductor or router, a role with no
live replica, a clarification nobody answers), and :class:`~swarmlog.errors.WaitTimeout` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from swarmlog.agents.policy.liveness import with_presence
from swarmlog.agents.policy.routing import AGENTS_SQL, AgentView, agent_view, role_candidates
from swarmlog.agents.presence import PresenceReader
from swarmlog.bus.ports import EventLog
from swarmlog.control.checks import check_name
from swarmlog.errors import WaitTimeout
from swarmlog.projections.client import ProjectionClient, Query
from swarmlog.schemas.presence import PRESENCE_EVERY
from swarmlog.schemas.presence import STALE_AFTER as DEFAULT_STALE_AFTER

__all__ = ["BEAT", "STALE_AFTER", "stalled", "timed_out", "wait_for"]

T = TypeVar("T")

STALE_AFTER = DEFAULT_STALE_AFTER
"""Seconds since it was last heard from after which an agent counts as not live (the router's
own rule)."""

BEAT = PRESENCE_EVERY
"""Seconds between a replica's presence puts."""

_LOOK_EVERY = 1.0  # seconds between looks when no ring comes
_TASK_OPEN = ("offered", "assigned", "claimed", "running", "errored", "retry_scheduled")


async def wait_for(
    log: EventLog,
    projections: ProjectionClient,
    subjects: list[str],
    read: Callable[[], Awaitable[T | None]],
    timeout: float,
) -> T | None:
    """``read()``'s first answer that is not ``None``, looked for whenever a message is
    published on ``subjects`` (once the projector has folded it) and once a second; ``None``
    when ``timeout`` seconds pass first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    bell = await log.doorbell(*subjects)  # before the first look: nothing falls between
    try:
        while True:
            found = await read()
            if found is not None:
                return found
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            if await bell.wait(min(remaining, _LOOK_EVERY)):
                # It rang: the projector folds what rang it a moment later.
                last = await log.last_seq()
                await projections.wait(last, timeout=max(0.1, min(remaining, 5.0)))
    finally:
        await bell.close()


def _live(agents: list[AgentView], role: str, now: int) -> bool:
    stale = int(STALE_AFTER * 1e9)
    return any(
        a.role == role
        and a.status == "registered"
        and a.last_heartbeat_at is not None
        and now - a.last_heartbeat_at <= stale
        for a in agents
    )


async def stalled(
    query: Query,
    *,
    workflow_id: str | None = None,
    task_id: str | None = None,
    now: int | None = None,
    presence: PresenceReader | None = None,
) -> list[str]:
    """Why a running workflow (or an open task) has not ended, as the projections show it (and
    who is live, as their ``presence`` says): each reason one short sentence that says what to
    do; empty when nothing looks wrong (it is just not done yet)."""
    now = time.time_ns() if now is None else now
    agents = [agent_view(r) for r in await query(AGENTS_SQL)]
    if presence is not None:
        with contextlib.suppress(Exception):  # unreadable: judged on what the log says
            agents = with_presence(agents, await presence.read(agents))
    reasons: list[str] = []
    if workflow_id is not None:
        wf = check_name(workflow_id, "workflow id", "workflow_id")
        where = f"workflow_id = '{wf}'"
        reasons += _conductor(agents, now)
        planned = await query(f"SELECT plan_version FROM workflows WHERE {where}")
        if planned and planned[0]["plan_version"] is None:
            reasons.append("it has no plan yet (the conductor plans it on its next turn)")
    else:
        where = f"task_id = '{check_name(task_id or '', 'task id', 'task_id')}'"
    for e in await query(
        "SELECT e.escalation_id, e.task_id, e.reason, t.error FROM escalations e"
        f" LEFT JOIN tasks t USING (task_id) WHERE e.status = 'open' AND e.{where}"
        " ORDER BY e.created_at"
    ):
        why = e["reason"] or "escalated"
        if e["error"]:
            why += f"; last error: {e['error']}"
        reasons.append(
            f"task {e['task_id']} is escalated ({why}) and waits for a human:"
            f" `swarmlog escalations resolve {e['escalation_id']} --retry|--reassign ROLE"
            "|--answer TEXT|--cancel`"
        )
    open_tasks = await query(
        "SELECT task_id, role, capability, status, attempt, mode, error,"
        " coalesce(claimed_by, completed_by) AS agent FROM tasks"
        f" WHERE {where} AND status IN {_TASK_OPEN} ORDER BY created_at"
    )
    reasons += _task_reasons(open_tasks, agents, now)
    for w in await query(
        f"SELECT kind, waiter, waits_on, task_id FROM waits_for WHERE {where} ORDER BY since"
    ):
        reasons.append(
            f"task {w['task_id']} waits on {w['waits_on']} ({w['kind']} asked by {w['waiter']})"
        )
    return reasons


def _conductor(agents: list[AgentView], now: int) -> list[str]:
    """What is amiss with the conductor, if anything: none is live, or the live one has missed
    beats (it puts its presence every :data:`BEAT` seconds; the router gives up on it only
    after :data:`STALE_AFTER`)."""
    if not _live(agents, "conductor", now):
        return [
            "no live conductor runs workflows (is the system up? `swarmlog status`;"
            " `swarmlog up --detach` starts one)"
        ]
    beats = [a.last_heartbeat_at or 0 for a in agents if a.role == "conductor"]
    quiet = (now - max(beats)) / 1e9
    if quiet > 1.5 * BEAT:
        return [
            f"the conductor was last heard from {quiet:.0f} s ago (it beats every {BEAT:g} s):"
            " is it running? (`swarmlog agent ps`)"
        ]
    return []


def _task_reasons(tasks: list[dict[str, Any]], agents: list[AgentView], now: int) -> list[str]:
    roles = role_candidates(agents, now=now, stale_after=int(STALE_AFTER * 1e9), pending={})
    reasons = []
    if any(t["status"] == "offered" and t["mode"] != "swarm" for t in tasks) and not _live(
        agents, "router", now
    ):
        reasons.append("no live router assigns offered tasks (`swarmlog up --detach` starts one)")
    for t in tasks:
        tid, status, capability = t["task_id"], t["status"], t["capability"] or ""
        if status == "offered":
            if not any(capability in r.capabilities for r in roles):
                reasons.append(
                    f"task {tid} needs capability {capability!r} and no live agent has it:"
                    " start one (`swarmlog agent start MODULE:CLASS --detach`)"
                )
            else:
                reasons.append(f"task {tid} ({capability}) is offered, not assigned yet")
        elif status == "assigned" and t["role"] and not any(r.role == t["role"] for r in roles):
            reasons.append(
                f"task {tid} waits in role {t['role']}'s queue and no replica of {t['role']}"
                " is live: start one (`swarmlog agent start MODULE:CLASS --detach`)"
            )
        elif status in ("errored", "retry_scheduled"):
            reasons.append(f"task {tid} failed attempt {t['attempt']} ({t['error']}), retried")
        else:
            where = f" on {t['agent']}" if t["agent"] else f" for role {t['role']}"
            reasons.append(f"task {tid} is {status}{where} (attempt {t['attempt']})")
    return reasons


async def timed_out(
    log: EventLog,
    projections: ProjectionClient,
    kind: str,
    item_id: str,
    status: str | None,
    timeout: float,
    *,
    presence: PresenceReader | None = None,
) -> WaitTimeout:
    """The error of a wait for ``kind`` (``workflow`` or ``task``) ``item_id`` that ran out of
    time in ``status`` (``None``: the projection does not know it), with what holds it up."""
    if status is None:
        position = await projections.position()
        last = await log.last_seq()
        if position is None or position < last:
            at = "no projector answers" if position is None else f"it is at seq {position}"
            reasons = [
                f"the projection is behind the log ({at}, the log at {last}):"
                " is the projector running? (`swarmlog status`)"
            ]
        else:
            reasons = [f"no {kind} {item_id} was submitted (`swarmlog {kind}s` lists them)"]
        head = f"{kind} {item_id} is not in the projection after {timeout:g} s"
    else:
        if kind == "workflow":
            reasons = await stalled(projections.query, workflow_id=item_id, presence=presence)
        else:
            reasons = await stalled(projections.query, task_id=item_id, presence=presence)
        head = f"{kind} {item_id} is still {status} after {timeout:g} s"
    shown = "; ".join(reasons[:4]) or "nothing holds it up: it is just not done yet"
    if len(reasons) > 4:
        shown += f" (and {len(reasons) - 4} more)"
    message = f"{head}: {shown}; follow it with `swarmlog show {item_id}`"
    return WaitTimeout(message, item_id=item_id, status=status, reasons=reasons)
