"""Waiting for a workflow or a task to end, and saying why it has not.

A wait sleeps on a doorbell on the subject its end is published under (``workflow_completed``,
a task's events), so it wakes when that happens, then has the projector fold the log up to there
and reads the view; it also looks once a second, so a missed ring costs at most that.

Each second it also reads from the projections why the work is still open (:func:`look`: an
escalation waiting for a human, no live agent for a capability, no live conductor or router, a
killed role, a role with no live replica, a clarification nobody answers), classified by the pure
:mod:`swarmlog.agents.policy.stuck`. When a reason that will not clear by itself has held for
:data:`~swarmlog.agents.policy.stuck.GRACE` seconds, the wait gives up at once with
:class:`~swarmlog.errors.Stuck` instead of waiting out its timeout; when the time is up,
:class:`~swarmlog.errors.WaitTimeout` says what still holds it up (:func:`stalled`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from swarmlog.agents.policy.liveness import with_presence
from swarmlog.agents.policy.routing import AGENTS_SQL, agent_view
from swarmlog.agents.policy.stuck import (
    GRACE,
    Escalation,
    OpenTask,
    Reason,
    Wait,
    Watch,
    reasons,
    settle,
    stuck,
)
from swarmlog.agents.presence import PresenceReader
from swarmlog.bus.ports import EventLog
from swarmlog.control.checks import check_name
from swarmlog.errors import Stuck, SwarmlogError, WaitTimeout
from swarmlog.projections.client import ProjectionClient, Query
from swarmlog.schemas.presence import PRESENCE_EVERY
from swarmlog.schemas.presence import STALE_AFTER as DEFAULT_STALE_AFTER

__all__ = [
    "BEAT",
    "STALE_AFTER",
    "Blocked",
    "Look",
    "blocked",
    "look",
    "stalled",
    "stuck_error",
    "timed_out",
    "wait_for",
]

T = TypeVar("T")

STALE_AFTER = DEFAULT_STALE_AFTER
"""Seconds since it was last heard from after which an agent counts as not live (the router's
own rule)."""

BEAT = PRESENCE_EVERY
"""Seconds between a replica's presence puts."""

_LOOK_EVERY = 1.0  # seconds between looks when no ring comes
_TASK_OPEN = ("offered", "assigned", "claimed", "running", "errored", "retry_scheduled")


@dataclass(frozen=True)
class Look:
    """One look at an open item: why it is open, its last change on the log, and whether the
    agents' liveness could be read (when not, no liveness reason is trusted to block)."""

    reasons: list[Reason]
    progress: int
    trusted: bool = True


@dataclass(frozen=True)
class Blocked:
    """What :func:`wait_for` returns when the item is stuck: the reasons that held for the
    grace (``held``) and all of the last look's."""

    held: list[Reason]
    reasons: list[Reason]


async def wait_for(
    log: EventLog,
    projections: ProjectionClient,
    subjects: list[str],
    read: Callable[[], Awaitable[T | None]],
    timeout: float,
    *,
    looks: Callable[[], Awaitable[Look]] | None = None,
    grace: float = GRACE,
) -> T | Blocked | None:
    """``read()``'s first answer that is not ``None``, looked for whenever a message is
    published on ``subjects`` (once the projector has folded it) and once a second; ``None``
    when ``timeout`` seconds pass first.

    With ``looks``, it also asks once a second why the item is still open, and gives up early
    (a :class:`Blocked`) once a blocking reason has held on every look for ``grace`` seconds
    with nothing of the item changing (:func:`~swarmlog.agents.policy.stuck.settle`)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    watch, looked = Watch(), -math.inf
    bell = await log.doorbell(*subjects)  # before the first look: nothing falls between
    try:
        while True:
            found = await read()
            if found is not None:
                return found
            if looks is not None and loop.time() - looked >= _LOOK_EVERY:
                looked = loop.time()
                seen = await _look(looks)
                if seen is None or not seen.trusted:
                    watch = Watch()  # no judgement without knowing who is live
                else:
                    watch, held = settle(watch, seen.reasons, seen.progress, loop.time(), grace)
                    if held:
                        return Blocked(held, seen.reasons)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            if await bell.wait(min(remaining, _LOOK_EVERY)):
                # It rang: the projector folds what rang it a moment later.
                last = await log.last_seq()
                await projections.wait(last, timeout=max(0.1, min(remaining, 5.0)))
    finally:
        await bell.close()


async def _look(looks: Callable[[], Awaitable[Look]]) -> Look | None:
    try:
        return await looks()
    except (SwarmlogError, TimeoutError):  # a slow projector: no look this time, wait on
        return None


async def look(
    query: Query,
    *,
    workflow_id: str | None = None,
    task_id: str | None = None,
    now: int | None = None,
    presence: PresenceReader | None = None,
) -> Look:
    """Why a running workflow (or an open task) has not ended, as the projections show it (and
    who is live, as their ``presence`` says), classified by
    :func:`~swarmlog.agents.policy.stuck.reasons`."""
    now = time.time_ns() if now is None else now
    agents = [agent_view(r) for r in await query(AGENTS_SQL)]
    trusted = True
    if presence is not None:
        try:
            agents = with_presence(agents, await presence.read(agents))
        except Exception:  # unreadable: judged on what the log says, and never stuck on it
            trusted = False
    unplanned = False
    if workflow_id is not None:
        wf = check_name(workflow_id, "workflow id", "workflow_id")
        where = f"workflow_id = '{wf}'"
        planned = await query(f"SELECT plan_version FROM workflows WHERE {where}")
        unplanned = bool(planned) and planned[0]["plan_version"] is None
        changed = (
            "SELECT max(updated_seq) AS seq FROM (SELECT updated_seq FROM tasks WHERE"
            f" {where} UNION ALL SELECT updated_seq FROM workflows WHERE {where})"
        )
    else:
        where = f"task_id = '{check_name(task_id or '', 'task id', 'task_id')}'"
        changed = f"SELECT max(updated_seq) AS seq FROM tasks WHERE {where}"
    escalations = [
        Escalation(e["escalation_id"], e["task_id"], e["reason"], e["error"])
        for e in await query(
            "SELECT e.escalation_id, e.task_id, e.reason, t.error FROM escalations e"
            f" LEFT JOIN tasks t USING (task_id) WHERE e.status = 'open' AND e.{where}"
            " ORDER BY e.created_at"
        )
    ]
    tasks = [
        OpenTask(
            str(t["task_id"]),
            str(t["status"]),
            str(t["capability"] or ""),
            t["role"],
            t["attempt"],
            t["mode"],
            t["error"],
            t["agent"],
        )
        for t in await query(
            "SELECT task_id, role, capability, status, attempt, mode, error,"
            " coalesce(claimed_by, completed_by) AS agent FROM tasks"
            f" WHERE {where} AND status IN {_TASK_OPEN} ORDER BY created_at"
        )
    ]
    waits = [
        Wait(w["kind"], w["waiter"], w["waits_on"], w["task_id"])
        for w in await query(
            f"SELECT kind, waiter, waits_on, task_id FROM waits_for WHERE {where} ORDER BY since"
        )
    ]
    kills = {
        str(k["target"]): str(k["reason"] or "")
        for k in await query("SELECT target, reason FROM kill_switches WHERE active")
    }
    progress = (await query(changed))[0]["seq"] or 0
    found = reasons(
        agents=agents,
        tasks=tasks,
        escalations=escalations,
        waits=waits,
        kills=kills,
        now=now,
        stale_after=int(STALE_AFTER * 1e9),
        beat=BEAT,
        workflow=workflow_id is not None,
        unplanned=unplanned,
    )
    return Look(found, int(progress), trusted)


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
    found = await look(query, workflow_id=workflow_id, task_id=task_id, now=now, presence=presence)
    return [r.text for r in found.reasons]


async def blocked(
    query: Query,
    *,
    workflow_id: str | None = None,
    task_id: str | None = None,
    now: int | None = None,
    presence: PresenceReader | None = None,
) -> list[str]:
    """What holds an open workflow (or task) up now that will not clear by itself
    (:func:`~swarmlog.agents.policy.stuck.stuck`, on one look); empty when it is not stuck."""
    found = await look(query, workflow_id=workflow_id, task_id=task_id, now=now, presence=presence)
    return [r.text for r in stuck(found.reasons)] if found.trusted else []


def stuck_error(kind: str, item_id: str, status: str | None, found: Blocked) -> Stuck:
    """The error of a wait for ``kind`` ``item_id`` (in ``status``) that gave up early: what
    blocks it, one line."""
    held = [r.text for r in found.held]
    shown = "; ".join(held[:4])
    if len(held) > 4:
        shown += f" (and {len(held) - 4} more)"
    message = (
        f"{kind} {item_id} is {status or 'open'} and cannot move by itself: {shown};"
        f" follow it with `swarmlog show {item_id}`"
    )
    every = [r.text for r in found.reasons]
    return Stuck(message, item_id=item_id, status=status, reasons=every, blocked=held)


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
