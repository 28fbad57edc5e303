"""Liveness (pure): who is live and how loaded, from what the projection knows of the agents and
what the presence bucket holds now; which replicas the watchdog says are lost, or back.

The log no longer carries heartbeats: a replica's liveness and load are its presence (see
:mod:`swarmlog.schemas.presence`), read and verified by the shell, and handed to these
functions as a snapshot with the clock. The projection still knows when an agent registered
(and, from old logs, its heartbeats): the later of the two is when it was last heard from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Container, Iterable, Mapping

from swarmlog.agents.policy.routing import AgentView
from swarmlog.agents.policy.values import Value
from swarmlog.schemas.presence import Presence

__all__ = ["Change", "Lost", "Seen", "changes", "held_tasks", "last_heard", "with_presence"]


def last_heard(view: AgentView, presence: Presence | None) -> int | None:
    """When ``view``'s agent was last heard from: its presence, or what the log says (its
    registration, an old log's heartbeat), whichever is later; ``None``: never."""
    times = [t for t in (view.last_heartbeat_at, presence.at if presence else None) if t]
    return max(times) if times else None


def with_presence(views: Iterable[AgentView], seen: Mapping[str, Presence]) -> list[AgentView]:
    """The agents as the projection shows them, with liveness and load from ``seen`` (the
    verified presence by agent id): last heard from as :func:`last_heard` says, and the load
    it reports (the projection's, from registration or an old log, without one)."""
    out = []
    for view in views:
        presence = seen.get(view.agent_id)
        if presence is None:
            out.append(view)
            continue
        heard = last_heard(view, presence)
        out.append(dataclasses.replace(view, last_heartbeat_at=heard, in_flight=presence.load))
    return out


def held_tasks(seen: Iterable[Presence], *, now: int, stale_after: float) -> frozenset[str]:
    """The tasks live replicas say they hold (work in hand is not stalled however long it runs
    without an event)."""
    return frozenset(task for p in seen if now - p.at <= stale_after * 1e9 for task in p.tasks)


class Lost(Value):
    """A registered replica with no fresh presence: to be reported ``agent_lost``."""

    agent_id: str
    last_seen_at: int | None


class Seen(Value):
    """A replica the projection says is lost, present again: to be reported ``agent_seen``."""

    agent_id: str
    seen_at: int


Change = Lost | Seen


def changes(
    views: Iterable[AgentView],
    seen: Mapping[str, Presence],
    *,
    now: int,
    stale_after: float,
    watched: Mapping[str, int],
    exempt: Container[str] = (),
) -> tuple[list[Change], dict[str, int]]:
    """The liveness changes to report now, and the registered replicas being watched (agent id
    to when the watcher first saw it registered).

    A registered replica is lost when it was last heard from (:func:`last_heard`) more than
    ``stale_after`` seconds ago, and has been watched that long too: a replica that just came
    back (revived, seen again) or that the watcher has only just started to watch gets a full
    period to put its presence first. A lost replica whose presence is fresh again is seen.
    ``exempt`` (the watcher itself, those a kill switch stops) are neither. ``watched`` is what
    the previous call returned (empty the first time).
    """
    found: list[Change] = []
    still: dict[str, int] = {}
    limit = stale_after * 1e9
    for view in views:
        if view.agent_id in exempt:
            continue
        presence = seen.get(view.agent_id)
        if view.status == "registered":
            since = still[view.agent_id] = watched.get(view.agent_id, now)
            heard = last_heard(view, presence)
            if now - max(heard or 0, since) > limit:
                found.append(Lost(view.agent_id, heard))
        elif view.status == "lost" and presence is not None and now - presence.at <= limit:
            found.append(Seen(view.agent_id, presence.at))
    return sorted(found, key=lambda c: c.agent_id), still
