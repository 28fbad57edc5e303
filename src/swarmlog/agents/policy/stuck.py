"""Why open work is not moving, and whether it ever will by itself (pure).

:func:`reasons` turns what the projection and the presence bucket say about a workflow (or one
task) into :class:`Reason` values, each one short sentence that says what to do, with a ``kind``
and whether it ``blocks``: a blocking reason is a condition that will not clear by itself (an
open escalation waits for a human, no live agent has a capability, no live conductor, a killed
role, a queue with no live replica); the others are states that move on their own (an offer the
router has not assigned yet, work running, a retry scheduled, a plan not made yet).

:func:`stuck` says which blocking reasons make the item stuck now: a task-level one only while
nothing else of it moves (a supervisor revises its plan around an escalated step, so that work
goes on), a system-level one (no conductor, no router, every agent killed) always.

:func:`settle` is the wait's patience: a blocking reason counts once it has been seen on every
look for :data:`GRACE` seconds with nothing of the item changing on the log in between, so a
just-starting agent or a router about to assign does not trip it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from swarmlog.agents.policy.routing import AgentView, role_candidates
from swarmlog.agents.policy.values import Value
from swarmlog.schemas.signing import CONDUCTOR_ROLE, ROUTER_ROLE

__all__ = [
    "BLOCKING",
    "GRACE",
    "MOVING",
    "Escalation",
    "OpenTask",
    "Reason",
    "Wait",
    "Watch",
    "reasons",
    "settle",
    "stuck",
]

GRACE = 3.0
"""Seconds a blocking reason must hold, on consecutive looks, before a wait gives up early."""

BLOCKING = frozenset(
    {"all_killed", "no_conductor", "no_router", "escalated", "unserved", "killed", "no_replica"}
)
"""The kinds of reason that will not clear by themselves."""

SYSTEM = frozenset({"all_killed", "no_conductor", "no_router"})
"""Blocking kinds that hold up everything, whatever else is still running."""

MOVING = frozenset({"offered", "retrying", "in_progress", "waits_on", "unplanned"})
"""The kinds of reason that say the item still moves by itself."""

_START = "start one (`swarmlog agent start MODULE:CLASS --detach`)"


class Reason(Value):
    """One reason why an item is still open."""

    kind: str
    """What kind of condition: one of :data:`BLOCKING`, :data:`MOVING`, or ``conductor_quiet``."""
    text: str
    """One short sentence that says what to do."""
    blocks: bool
    """Whether it will not clear by itself (a human or an operator must act)."""
    about: str = ""
    """What it is about (a task id, a role, a capability): with ``kind``, what later looks
    compare."""

    @property
    def key(self) -> str:
        """The condition's identity from one look to the next."""
        return f"{self.kind}:{self.about}"


class OpenTask(Value):
    """An open task as the projection shows it."""

    task_id: str
    status: str
    capability: str = ""
    role: str | None = None
    attempt: int | None = None
    mode: str | None = None
    error: str | None = None
    agent: str | None = None
    """The replica that claimed it (or completed an attempt)."""


class Escalation(Value):
    """An open escalation."""

    escalation_id: str
    task_id: str
    reason: str | None = None
    error: str | None = None
    """The escalated task's last error."""


class Wait(Value):
    """An open edge of the wait-for graph."""

    kind: str
    waiter: str
    waits_on: str
    task_id: str


class Watch(Value):
    """What a wait has seen so far: the item's last change and since when each blocking reason
    has held (seconds on the waiter's clock, by :attr:`Reason.key`)."""

    progress: int | None = None
    since: tuple[tuple[str, float], ...] = ()


def _live(agents: Sequence[AgentView], role: str, now: int, stale_after: int) -> bool:
    return any(
        a.role == role
        and a.status == "registered"
        and a.last_heartbeat_at is not None
        and now - a.last_heartbeat_at <= stale_after
        for a in agents
    )


def _killed(agents: Sequence[AgentView], kills: Mapping[str, str]) -> list[AgentView]:
    """The agents, those a kill switch names (or the whole-system one) marked ``killed``."""
    every = "*" in kills
    return [
        dataclasses.replace(a, status="killed") if every or a.agent_id in kills else a
        for a in agents
    ]


def _kill_reason(agents: Sequence[AgentView], kills: Mapping[str, str], role: str) -> str:
    for a in agents:
        if a.role == role and (a.agent_id in kills or "*" in kills):
            return kills.get(a.agent_id) or kills.get("*") or "no reason given"
    return "no reason given"


def _all_killed(agents: Sequence[AgentView], role: str) -> bool:
    """Whether ``role`` has replicas and every one is killed."""
    mine = [a for a in agents if a.role == role]
    return bool(mine) and all(a.status == "killed" for a in mine)


def _builtin(
    agents: Sequence[AgentView],
    kills: Mapping[str, str],
    role: str,
    now: int,
    stale_after: int,
    down: str,
) -> Reason | None:
    """Why the built-in ``role`` cannot act (``down``: what to say when none is live)."""
    kind = "no_conductor" if role == CONDUCTOR_ROLE else "no_router"
    if _live(agents, role, now, stale_after):
        return None
    if _all_killed(agents, role):
        why = _kill_reason(agents, kills, role)
        text = f"the {role} is killed ({why}): `swarmlog revive --role {role}` brings it back"
        return Reason(kind, text, True, role)
    return Reason(kind, down, True, role)


def reasons(
    *,
    agents: Sequence[AgentView],
    tasks: Sequence[OpenTask],
    escalations: Sequence[Escalation] = (),
    waits: Sequence[Wait] = (),
    kills: Mapping[str, str] | None = None,
    now: int,
    stale_after: int,
    beat: float,
    workflow: bool = False,
    unplanned: bool = False,
) -> list[Reason]:
    """Why an open workflow (``workflow``: with a conductor to run it, ``unplanned`` when it
    has no plan yet) or an open task has not ended: its open ``tasks``, open ``escalations``
    and ``waits``, judged against the ``agents`` (liveness from presence, merged in) and the
    active kill switches ``kills`` (target to reason, ``*`` for every agent) at ``now`` (ns);
    a replica is live when heard from within ``stale_after`` ns, and puts its presence every
    ``beat`` seconds. Empty when nothing is open."""
    kills = kills or {}
    agents = _killed(agents, kills)
    out: list[Reason] = []
    if "*" in kills:
        out.append(
            Reason(
                "all_killed",
                f"every agent is killed ({kills['*'] or 'no reason given'}):"
                " `swarmlog revive --all` brings them back",
                True,
                "*",
            )
        )
    if workflow:
        out += _conductor(agents, kills, now, stale_after, beat)
        if unplanned:
            out.append(
                Reason(
                    "unplanned",
                    "it has no plan yet (the conductor plans it on its next turn)",
                    False,
                )
            )
    for e in escalations:
        why = e.reason or "escalated"
        if e.error:
            why += f"; last error: {e.error}"
        out.append(
            Reason(
                "escalated",
                f"task {e.task_id} is escalated ({why}) and waits for a human:"
                f" `swarmlog escalations resolve {e.escalation_id} --retry|--reassign ROLE"
                "|--answer TEXT|--cancel`",
                True,
                e.escalation_id,
            )
        )
    out += _task_reasons(tasks, agents, kills, now, stale_after)
    for w in waits:
        out.append(
            Reason(
                "waits_on",
                f"task {w.task_id} waits on {w.waits_on} ({w.kind} asked by {w.waiter})",
                False,
                w.task_id,
            )
        )
    return out


def _conductor(
    agents: Sequence[AgentView], kills: Mapping[str, str], now: int, stale_after: int, beat: float
) -> list[Reason]:
    """What is amiss with the conductor, if anything: none is live (killed, or down), or the
    live one has missed beats (the router gives up on it only after ``stale_after``)."""
    down = _builtin(
        agents,
        kills,
        CONDUCTOR_ROLE,
        now,
        stale_after,
        "no live conductor runs workflows (is the system up? `swarmlog status`;"
        " `swarmlog up --detach` starts one)",
    )
    if down is not None:
        return [down]
    beats = [a.last_heartbeat_at or 0 for a in agents if a.role == CONDUCTOR_ROLE]
    quiet = (now - max(beats)) / 1e9
    if quiet > 1.5 * beat:
        text = (
            f"the conductor was last heard from {quiet:.0f} s ago (it beats every {beat:g} s):"
            " is it running? (`swarmlog agent ps`)"
        )
        return [Reason("conductor_quiet", text, False, CONDUCTOR_ROLE)]
    return []


def _task_reasons(
    tasks: Sequence[OpenTask],
    agents: Sequence[AgentView],
    kills: Mapping[str, str],
    now: int,
    stale_after: int,
) -> list[Reason]:
    roles = role_candidates(agents, now=now, stale_after=stale_after, pending={})
    out: list[Reason] = []
    if any(t.status == "offered" and t.mode != "swarm" for t in tasks):
        down = _builtin(
            agents,
            kills,
            ROUTER_ROLE,
            now,
            stale_after,
            "no live router assigns offered tasks (`swarmlog up --detach` starts one)",
        )
        out += [down] if down is not None else []
    for t in tasks:
        tid, status, capability = t.task_id, t.status, t.capability
        if status == "offered":
            if any(capability in r.capabilities for r in roles):
                out.append(
                    Reason(
                        "offered",
                        f"task {tid} ({capability}) is offered, not assigned yet",
                        False,
                        tid,
                    )
                )
                continue
            killed = sorted(
                {a.role for a in agents if capability in a.capabilities and a.status == "killed"}
            )
            if killed:
                role = killed[0]
                why = _kill_reason(agents, kills, role)
                out.append(
                    Reason(
                        "killed",
                        f"task {tid} needs capability {capability!r} and role {role}, which has"
                        f" it, is killed ({why}): `swarmlog revive --role {role}` brings it back",
                        True,
                        role,
                    )
                )
            else:
                out.append(
                    Reason(
                        "unserved",
                        f"task {tid} needs capability {capability!r} and no live agent has it:"
                        f" {_START}",
                        True,
                        capability,
                    )
                )
        elif status == "assigned" and t.role and not any(r.role == t.role for r in roles):
            if _all_killed(agents, t.role):
                why = _kill_reason(agents, kills, t.role)
                text = (
                    f"task {tid} waits in role {t.role}'s queue and {t.role} is killed ({why}):"
                    f" `swarmlog revive --role {t.role}` brings it back"
                )
                out.append(Reason("killed", text, True, t.role))
            else:
                text = (
                    f"task {tid} waits in role {t.role}'s queue and no replica of {t.role}"
                    f" is live: {_START}"
                )
                out.append(Reason("no_replica", text, True, t.role))
        elif status in ("errored", "retry_scheduled"):
            text = f"task {tid} failed attempt {t.attempt} ({t.error}), retried"
            out.append(Reason("retrying", text, False, tid))
        else:
            where = f" on {t.agent}" if t.agent else f" for role {t.role}"
            text = f"task {tid} is {status}{where} (attempt {t.attempt})"
            out.append(Reason("in_progress", text, False, tid))
    return out


def stuck(found: Sequence[Reason]) -> list[Reason]:
    """The blocking reasons among ``found`` that hold the item up now (empty: it is not
    stuck): every blocking one while nothing of it moves, else only the system-level ones."""
    blocking = [r for r in found if r.blocks]
    if any(r.kind in MOVING for r in found):
        return [r for r in blocking if r.kind in SYSTEM]
    return blocking


def settle(
    watch: Watch, found: Sequence[Reason], progress: int, now: float, grace: float = GRACE
) -> tuple[Watch, list[Reason]]:
    """One look of a wait: the new :class:`Watch` and the stuck reasons (:func:`stuck` of
    ``found``) that have held on every look for ``grace`` seconds up to ``now`` with the item's
    last change on the log (``progress``, e.g. its highest sequence) the same. A change, or a
    reason not seen on a look, starts its clock again."""
    since = dict(watch.since) if watch.progress == progress else {}
    blocking = stuck(found)
    kept = {r.key: since.get(r.key, now) for r in blocking}
    held = [r for r in blocking if now - kept[r.key] >= grace]
    return Watch(progress, tuple(sorted(kept.items()))), held
