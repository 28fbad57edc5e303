"""The watchdog, a built-in role: finds deadlocks in the wait-for graph and breaks them.

Every ``interval`` seconds it waits until the projection has folded the stream up to its end,
asks the projection which open waits lie on a cycle (in SQL, :data:`ON_CYCLES_SQL` over
``waits_for``), and works out each deadlock's cycle and victim with the pure
:func:`~swarmlog.agents.policy.deadlocks.find_deadlocks`. By policy it then either **breaks** the
deadlock, a ``deadlock_detected`` event addressed to the agent holding the victim wait (the
youngest on the cycle), which gives that wait up (its handler sees a retryable ``deadlock``
error, so its task is retried while the others proceed), or **escalates** it: the same event,
reported only, and the victim's task escalated to a human. The projection drops a broken wait,
so a deadlock is reported once; ``swarmlog deadlocks`` lists the current and past ones.

It also looks for **stalled** work (:mod:`swarmlog.agents.policy.stalls`): a task that should be
moving (assigned, claimed, running, waiting for a retry), has had no event for ``stall_after``
seconds and that no live replica says it holds is escalated to a human, with how long it was
idle.

And it says who is gone (:func:`~swarmlog.agents.policy.liveness.changes`): a registered replica
with no fresh presence for ``stale_after`` seconds that never said it stopped is reported
``agent_lost`` (``swarmlog agents`` shows it lost, nothing is routed to it), and one found lost
whose presence is fresh again ``agent_seen``. Presence that does not verify counts as none.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from swarmlog.agents.policy import deadlocks
from swarmlog.agents.policy.deadlocks import ON_CYCLES_SQL, Deadlock, Policy, Wait, find_deadlocks
from swarmlog.agents.policy.liveness import Lost, changes, held_tasks
from swarmlog.agents.policy.routing import AGENTS_SQL, AgentView, agent_view
from swarmlog.agents.policy.stalls import MOVING, Stall, stalled
from swarmlog.agents.presence import PresenceReader
from swarmlog.agents.roles.base import ProjectionRole
from swarmlog.projections.client import Query
from swarmlog.schemas.payloads import AgentLost, AgentSeen, Payload, TaskEscalated
from swarmlog.schemas.presence import STALE_AFTER, Presence
from swarmlog.schemas.signing import WATCHDOG_ROLE

__all__ = ["OPEN_WAITS_SQL", "ROLE", "Watchdog", "deadlocks_in", "waits_on_cycles"]

log = logging.getLogger(__name__)

ROLE = WATCHDOG_ROLE

OPEN_WAITS_SQL = (
    "SELECT ref, kind, waiter, waits_on, since, task_id, workflow_id FROM waits_for"
    " WHERE waiter IN (" + ON_CYCLES_SQL.format(edges="waits_for") + ")"
    " ORDER BY since, ref"
)
"""The open waits whose waiter lies on a cycle: everything a deadlock is made of."""


def deadlocks_in(rows: Iterable[Mapping[str, Any]]) -> list[Deadlock]:
    """The deadlocks among rows of :data:`OPEN_WAITS_SQL`."""
    return find_deadlocks(
        Wait(
            r["ref"],
            r["waiter"],
            r["waits_on"],
            int(r["since"] or 0),
            r["kind"],
            r["task_id"],
            r["workflow_id"],
        )
        for r in rows
    )


async def waits_on_cycles(read: Query) -> list[Deadlock]:
    """The deadlocks in the projection's wait-for graph now."""
    return deadlocks_in(await read(OPEN_WAITS_SQL))


@dataclass(eq=False, kw_only=True)
class Watchdog(ProjectionRole):
    """One watchdog replica: it looks every ``interval`` seconds, acts on a deadlock by
    ``policy``, escalates a task that made no progress for ``stall_after`` seconds and reports
    a replica with no fresh presence for ``stale_after`` seconds lost."""

    role: ClassVar[str] = ROLE
    interval: float = 2.0
    policy: Policy = "break"
    stall_after: float = 600.0
    stale_after: float = STALE_AFTER
    _reported: set[str] = field(default_factory=set, init=False)
    _workflows: dict[str, str | None] = field(default_factory=dict, init=False)
    _reader: PresenceReader = field(init=False)
    _watched: dict[str, int] = field(default_factory=dict, init=False)
    _declared: set[tuple[str, int | None]] = field(default_factory=set, init=False)
    """Losses reported (agent, last heard from): one that the projection did not apply is
    not reported again and again."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._reader = PresenceReader(self.log, self.namespace, clock=self.clock)

    async def step(self) -> list[Deadlock]:
        """Look once (after ``interval``): the deadlocks found and acted on."""
        if self._presence.killed:
            # Nobody is watched meanwhile: revived, every replica gets a full period again.
            self._watched = {}
            await self._presence.watch.wait_changed(self.interval)
            return []
        await self._presence.watch.wait_changed(self.interval)  # the period between looks
        await self._catch_up()
        acted = []
        for deadlock in await waits_on_cycles(self.read):
            if deadlock.key in self._reported:
                continue  # reported, and its victim not yet projected as broken
            await self._act(deadlock)
            self._reported.add(deadlock.key)
            acted.append(deadlock)
        agents = [agent_view(r) for r in await self.read(AGENTS_SQL)]
        seen = await self._presence_of(agents)
        if seen is not None:
            await self._report_liveness(agents, seen)
        await self._escalate_stalls(seen)
        return acted

    async def _presence_of(self, agents: list[AgentView]) -> dict[str, Presence] | None:
        """The verified presence now; ``None`` when the bucket cannot be read (then nobody is
        judged lost, and work in hand is not judged stalled)."""
        try:
            return await self._reader.read(agents)
        except Exception as exc:
            log.warning("presence unreadable: %s", exc)
            return None

    async def _report_liveness(self, agents: list[AgentView], seen: dict[str, Presence]) -> None:
        flags = self._presence.watch
        exempt = {self.agent_id} | {
            a.agent_id for a in agents if flags.stops(a.agent_id, a.role) is not None
        }
        found, self._watched = changes(
            agents,
            seen,
            now=self.clock(),
            stale_after=self.stale_after,
            watched=self._watched,
            exempt=exempt,
        )
        for change in found:
            event: Payload
            if isinstance(change, Lost):
                if (change.agent_id, change.last_seen_at) in self._declared:
                    continue
                self._declared.add((change.agent_id, change.last_seen_at))
                log.warning("%s lost: no presence for %g s", change.agent_id, self.stale_after)
                event = AgentLost(agent_id=change.agent_id, last_seen_at=change.last_seen_at)
            else:
                log.warning("%s present again", change.agent_id)
                event = AgentSeen(agent_id=change.agent_id, seen_at=change.seen_at)
            await self.publisher.publish(event)

    async def stalls(self, seen: dict[str, Presence] | None = None) -> list[Stall]:
        """The stalled tasks now, given the verified presence ``seen`` (``None``: unknown, so
        a task running or claimed may be in hand and is not judged)."""
        moving = ", ".join(f"'{s}'" for s in sorted(MOVING))
        rows = await self.read(
            f"SELECT task_id, status, updated_at, workflow_id FROM tasks WHERE status IN ({moving})"
        )
        self._workflows = {r["task_id"]: r["workflow_id"] for r in rows}
        now = self.clock()
        if seen is None:
            held = frozenset(r["task_id"] for r in rows if r["status"] in ("running", "claimed"))
        else:
            held = held_tasks(seen.values(), now=now, stale_after=self.stale_after)
        return stalled(
            ((r["task_id"], r["status"], r["updated_at"]) for r in rows),
            now=now,
            after=self.stall_after,
            held=held,
        )

    async def _escalate_stalls(self, seen: dict[str, Presence] | None) -> None:
        for stall in await self.stalls(seen):
            reason = f"stalled: no progress for {stall.idle_s:.0f} s while {stall.status}"
            log.warning("%s %s", stall.task_id, reason)
            wf = self._workflows.get(stall.task_id)
            fields: dict[str, Any] = {"workflow_id": wf} if wf else {}
            await self.publisher.publish(
                TaskEscalated(task_id=stall.task_id, reason=reason), **fields
            )

    async def _act(self, deadlock: Deadlock) -> None:
        victim = deadlock.victim
        wf: dict[str, Any] = {"workflow_id": victim.workflow_id} if victim.workflow_id else {}
        log.warning("deadlock %s; %s %s", " -> ".join(deadlock.cycle), self.policy, victim.ref)
        for notice in deadlocks.response(deadlock, self.policy):
            await self.publisher.publish(notice.payload, recipient=notice.recipient, **wf)
