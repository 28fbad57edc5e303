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
moving (assigned, claimed, running, waiting for a retry) and has had no event for ``stall_after``
seconds is escalated to a human, with how long it was idle.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from swarmlog.agents.policy import deadlocks
from swarmlog.agents.policy.deadlocks import ON_CYCLES_SQL, Deadlock, Policy, Wait, find_deadlocks
from swarmlog.agents.policy.stalls import MOVING, Stall, stalled
from swarmlog.agents.roles.base import ProjectionRole
from swarmlog.projections.client import Query
from swarmlog.schemas.payloads import TaskEscalated
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
    ``policy`` and escalates a task that made no progress for ``stall_after`` seconds."""

    role: ClassVar[str] = ROLE
    interval: float = 2.0
    policy: Policy = "break"
    stall_after: float = 600.0
    _reported: set[str] = field(default_factory=set, init=False)
    _workflows: dict[str, str | None] = field(default_factory=dict, init=False)

    async def step(self) -> list[Deadlock]:
        """Look once (after ``interval``): the deadlocks found and acted on."""
        if self._presence.killed:
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
        await self._escalate_stalls()
        return acted

    async def stalls(self) -> list[Stall]:
        """The stalled tasks now."""
        moving = ", ".join(f"'{s}'" for s in sorted(MOVING))
        rows = await self.read(
            f"SELECT task_id, status, updated_at, workflow_id FROM tasks WHERE status IN ({moving})"
        )
        self._workflows = {r["task_id"]: r["workflow_id"] for r in rows}
        return stalled(
            ((r["task_id"], r["status"], r["updated_at"]) for r in rows),
            now=self.clock(),
            after=self.stall_after,
        )

    async def _escalate_stalls(self) -> None:
        for stall in await self.stalls():
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
