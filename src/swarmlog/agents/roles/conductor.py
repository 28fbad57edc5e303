"""The conductor, a built-in role: runs submitted workflows to completion from the log.

It keeps nothing in memory that matters. Woken by any workflow or task event (a doorbell), or every
``sweep`` seconds, it waits until the projection has caught up with the stream, reads every
running workflow with its tasks, asks :func:`~swarmlog.agents.policy.workflows.decide` what to do,
and publishes it: the plan (``workflow_planned``, then ``workflow_revised``), the ready steps
(``task_offered``, routed by capability) and finally ``workflow_completed``. Each of these but
a revision is conditional on not being on the log already (optimistic concurrency), so a
conductor that crashed and restarted, or a second conductor, continues where the log is and never
offers a step twice: completed steps are never redone. The conductor is also the supervisor of
``supervisor`` workflows (:mod:`swarmlog.agents.policy.supervision`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgspec

from swarmlog.agents.policy import workflow_view
from swarmlog.agents.policy.planning import PlanError, decode_plan
from swarmlog.agents.policy.workflows import decide
from swarmlog.agents.roles.base import ProjectionRole
from swarmlog.bus.ports import Doorbell
from swarmlog.bus.subjects import kind_filter, offer_subject, workflow_event_filter
from swarmlog.errors import ConcurrencyConflict
from swarmlog.schemas.payloads import (
    BudgetExceeded,
    TaskOffered,
    WorkflowCompleted,
    WorkflowPlanned,
    WorkflowRevised,
)
from swarmlog.schemas.signing import CONDUCTOR_ROLE

__all__ = ["ROLE", "Conductor"]

log = logging.getLogger(__name__)

ROLE = CONDUCTOR_ROLE


@dataclass(eq=False, kw_only=True)
class Conductor(ProjectionRole):
    """One conductor replica; ``sweep``: seconds between looks when no event rings."""

    role: ClassVar[str] = ROLE
    sweep: float = 1.0
    _bell: Doorbell | None = field(default=None, init=False)

    async def start(self) -> None:
        await super().start()
        ns = self.namespace
        self._bell = await self.log.doorbell(kind_filter(ns, "wf"), kind_filter(ns, "task"))

    async def close(self) -> None:
        await super().close()
        if self._bell is not None:
            await self._bell.close()

    async def step(self, wait: float | None = None) -> int:
        """Wait for something to happen (or the sweep), then act on every running workflow;
        returns the number of events published."""
        if self._bell is None:
            raise RuntimeError("call start() first")
        if self._presence.killed:
            await self._presence.watch.wait_changed(self.sweep if wait is None else wait)
            return 0
        await self._bell.wait(self.sweep if wait is None else wait)
        await self._catch_up()
        published = 0
        for view in await self.running():
            for action in decide(view):
                published += await self._act(view, action)
        return published

    async def running(self) -> list[workflow_view.WorkflowView]:
        """Every running workflow as the projection shows it."""
        # One statement, so one consistent snapshot: a task's result and the tokens it spent
        # are seen together (two reads could see the result without the spending).
        rows = await self.read(
            "SELECT w.workflow_id, w.pattern, w.input, w.plan, w.budget_tokens,"
            " b.used_tokens, b.soft_exceeded, b.hard_exceeded,"
            " t.task_id, t.status AS task_status, t.output, t.error, t.role FROM workflows w"
            " LEFT JOIN budgets b ON b.scope = 'workflow' AND b.scope_id = w.workflow_id"
            " LEFT JOIN tasks t ON t.workflow_id = w.workflow_id"
            " WHERE w.status = 'running'"
            " AND w.pattern IN ('pipeline', 'debate', 'custom', 'swarm', 'supervisor')"
            " ORDER BY w.submitted_at, w.workflow_id"
        )
        capabilities = await self._capabilities() if rows else None
        flows: dict[str, dict[str, Any]] = {}
        by_flow: dict[str, dict[str, workflow_view.StepState]] = {}
        for r in rows:
            flows.setdefault(r["workflow_id"], r)
            tasks = by_flow.setdefault(r["workflow_id"], {})
            if r["task_id"] is not None:
                tasks[r["task_id"]] = workflow_view.StepState(
                    r["task_status"], _json(r["output"]), r["error"], r["role"]
                )
        views = []
        for f in flows.values():
            try:
                plan = decode_plan(_json(f["plan"])) if f["plan"] else None
            except PlanError:
                plan = None
            alerted = frozenset(name for name in ("soft", "hard") if f[f"{name}_exceeded"])
            views.append(
                workflow_view.WorkflowView(
                    f["workflow_id"],
                    f["pattern"],
                    _json(f["input"]),
                    plan,
                    by_flow[f["workflow_id"]],
                    f["budget_tokens"],
                    int(f["used_tokens"] or 0),
                    alerted,
                    capabilities,
                )
            )
        return views

    async def _capabilities(self) -> frozenset[str]:
        """What the registered agents can do (a plan needing anything else is sent back)."""
        rows = await self.read("SELECT capabilities FROM agents WHERE status = 'registered'")
        found: set[str] = set()
        for r in rows:
            listed = _json(r["capabilities"])
            if isinstance(listed, list):
                found.update(str(c) for c in listed)
        return frozenset(found)

    async def _act(self, view: workflow_view.WorkflowView, action: workflow_view.Action) -> int:
        wf = view.workflow_id
        try:
            match action:
                case workflow_view.SetPlan(plan=plan):
                    await self.publisher.publish(
                        WorkflowPlanned(plan=msgspec.to_builtins(plan)),
                        expect=(workflow_event_filter(self.namespace, wf, "workflow_planned"), 0),
                        workflow_id=wf,
                    )
                case workflow_view.Revise(plan=plan, reason=reason):
                    # Not conditional (the subject holds every version): one conductor decides
                    # on a projection that has seen its own last revision, so it revises once.
                    await self.publisher.publish(
                        WorkflowRevised(
                            version=plan.version, plan=msgspec.to_builtins(plan), reason=reason
                        ),
                        workflow_id=wf,
                    )
                case workflow_view.Offer(
                    task_id=task_id,
                    capability=capability,
                    input=step_input,
                    mode=mode,
                    avoid_roles=avoid,
                    internal_only=internal_only,
                ):
                    offer = TaskOffered(
                        task_id=task_id,
                        capability=capability,
                        input=step_input,
                        mode=mode,  # type: ignore[arg-type]
                        avoid_roles=list(avoid),
                        internal_only=internal_only,
                    )
                    await self.publisher.publish(
                        offer,
                        expect=(offer_subject(self.namespace, task_id), 0),
                        workflow_id=wf,
                    )
                case workflow_view.BudgetAlert(limit=limit, used_tokens=used, budget_tokens=budget):
                    await self.publisher.publish(
                        BudgetExceeded(
                            scope="workflow",
                            scope_id=wf,
                            limit=limit,  # type: ignore[arg-type]
                            used_tokens=used,
                            budget_tokens=budget,
                        ),
                        workflow_id=wf,
                    )
                case workflow_view.Complete(status=status, result=result):
                    await self.publisher.publish(
                        WorkflowCompleted(status=status, result=result),  # type: ignore[arg-type]
                        expect=(workflow_event_filter(self.namespace, wf, "workflow_completed"), 0),
                        workflow_id=wf,
                    )
        except ConcurrencyConflict:
            return 0  # already on the log: another conductor, or before a restart
        return 1


def _json(text: Any) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text
