"""Workflows as plans run to completion (pure): given what the log says about a workflow, what to
do next.

Every pattern becomes a plan, a DAG of steps (:mod:`swarmlog.agents.policy.planning`):

``pipeline``  ``{"stages": ["extract", "clean", ...], "input": ...}``: one step per stage, each
              depending on the one before; a stage's input is the previous stage's output (the
              first gets ``input``); the result is the last stage's output.
``debate``    ``{"question": "...", "debaters": 3, "capability": "review", "judge": "judge",
              "rounds": 1}``: N independent answers (in later rounds each debater sees every
              answer of the round before and refines its own), then a judge step that gets the
              question and the last answers; the result is the judge's synthesis.
``custom``    ``{"plan": {"steps": [...]}, "input": ...}``: the plan as given; a step with no
              input of its own gets the outputs of its dependencies (or the workflow's input).
``supervisor`` ``{"goal": "...", "planner": "plan", "reviewer": ..., "synthesizer": ...}``: a
              planner agent plans, each output is reviewed, failures revise the plan (see
              :mod:`swarmlog.agents.policy.supervision`).
``swarm``     ``{"tasks": [{"id", "capability", "input"}, ...]}``: no coordinator: the tasks are
              offered in swarm mode, capable agents claim them, and completing work may post
              new tasks (with the workflow's id); the workflow ends when no open task remains.

A step runs as task ``<workflow_id>-<step id>`` offered by capability, so deciding twice on the
same state offers nothing twice (the conductor also makes each offer conditional). A step whose
task is escalated waits for a human (``swarmlog escalations resolve``: retry, reassign, answer or
cancel); the workflow fails, naming the step, when a step fails for good (cancelled, or failed
final), or at the escalation itself with ``"on_escalation": "fail"`` in its input.
"""

from __future__ import annotations

from typing import Any

from swarmlog.agents.policy.budgets import SOFT_LIMIT, limit_reached
from swarmlog.agents.policy.planning import Plan, PlanError, PlanStep, decode_plan, ready, validate
from swarmlog.agents.policy.supervision import supervise
from swarmlog.agents.policy.workflow_view import (
    Action,
    BudgetAlert,
    Complete,
    Offer,
    SetPlan,
    WorkflowView,
)

__all__ = [
    "SOFT_LIMIT",
    "decide",
    "plan_for",
    "task_id_for",
]

TERMINAL_FAILURES = frozenset({"failed", "cancelled"})
"""Task states no human can turn around; ``escalated`` waits for one (``escalations resolve``),
unless the workflow's input says ``"on_escalation": "fail"``."""


def task_id_for(workflow_id: str, step_id: str) -> str:
    return f"{workflow_id}-{step_id}"


def plan_for(pattern: str, spec: Any) -> Plan:
    """The plan a pattern's input asks for, or :class:`PlanError` saying what is wrong."""
    if not isinstance(spec, dict):
        raise PlanError("malformed", f"a {pattern} workflow's input is a JSON object")
    if pattern == "pipeline":
        stages = spec.get("stages")
        if not isinstance(stages, list) or not stages:
            raise PlanError("malformed", 'a pipeline needs "stages": ["capability", ...]')
        steps = [
            PlanStep(
                id=f"s{i + 1}",
                capability=str(stage),
                depends_on=[f"s{i}"] if i else [],
                input=spec.get("input") if i == 0 else None,
            )
            for i, stage in enumerate(stages)
        ]
        return Plan(steps=steps)
    if pattern == "debate":
        debaters = spec.get("debaters", 3)
        if not isinstance(debaters, int) or not 2 <= debaters <= 16:
            raise PlanError("malformed", 'a debate needs "debaters": 2 to 16')
        rounds = spec.get("rounds", 1)
        if not isinstance(rounds, int) or not 1 <= rounds <= 5:
            raise PlanError("malformed", 'a debate\'s "rounds" is 1 to 5')
        question = spec.get("question")
        capability = str(spec.get("capability", "debate"))
        answers = [
            PlanStep(id=f"d{i + 1}", capability=capability, input={"question": question})
            for i in range(debaters)
        ]
        steps = list(answers)
        for r in range(2, rounds + 1):
            # A refining round: each debater gets the question and every answer of the last round.
            answers = [
                PlanStep(
                    id=f"d{i + 1}-r{r}", capability=capability, depends_on=[a.id for a in answers]
                )
                for i in range(debaters)
            ]
            steps += answers
        judge = PlanStep(
            id="judge",
            capability=str(spec.get("judge", "judge")),
            depends_on=[a.id for a in answers],
        )
        return Plan(steps=[*steps, judge])
    if pattern == "custom":
        return decode_plan(spec.get("plan"))
    if pattern == "swarm":
        tasks = spec.get("tasks")
        if not isinstance(tasks, list) or not tasks:
            raise PlanError("malformed", 'a swarm needs "tasks": [{"id", "capability", "input"}]')
        return decode_plan({"steps": tasks})
    raise PlanError("unsupported", f"the {pattern} pattern is not run by the conductor yet")


def _fails_on_escalation(view: WorkflowView) -> bool:
    return isinstance(view.input, dict) and view.input.get("on_escalation") == "fail"


def _step_input(view: WorkflowView, plan: Plan, step: PlanStep) -> Any:
    if step.input is not None:
        return step.input
    outputs = {
        d: view.tasks[task_id_for(view.workflow_id, d)].output
        for d in step.depends_on
        if task_id_for(view.workflow_id, d) in view.tasks
    }
    if view.pattern == "pipeline":
        return next(iter(outputs.values())) if outputs else None
    if view.pattern == "debate":
        spec = view.input if isinstance(view.input, dict) else {}
        shown: dict[str, Any] = {"question": spec.get("question"), "answers": outputs}
        if "-r" in step.id:  # a refining round: which of the answers was this debater's
            debater, round_no = step.id.split("-r")
            shown["round"] = int(round_no)
            shown["yours"] = debater if round_no == "2" else f"{debater}-r{int(round_no) - 1}"
        return shown
    if not step.depends_on:
        return view.input.get("input") if isinstance(view.input, dict) else view.input
    return outputs


def _budget(view: WorkflowView) -> list[Action]:
    budget, used = view.budget_tokens, view.used_tokens
    if not budget:
        return []
    limit = limit_reached(used, budget)
    if limit == "hard":
        alert: list[Action] = [] if "hard" in view.alerted else [BudgetAlert("hard", used, budget)]
        stop = {"error": "token budget exceeded", "used_tokens": used, "budget_tokens": budget}
        return [*alert, Complete("failed", stop)]
    if limit == "soft" and "soft" not in view.alerted:
        return [BudgetAlert("soft", used, budget)]
    return []


def decide(view: WorkflowView) -> list[Action]:
    """What to do next for a running workflow (nothing when waiting on tasks).

    A workflow with a token budget is warned once at :data:`SOFT_LIMIT` of it (``soft``) and
    stopped, failed with the figures, when its tasks have spent all of it (``hard``).
    """
    budget = _budget(view)
    if budget and isinstance(budget[-1], Complete):
        return budget
    return [*budget, *_next(view)]


_OPEN_FOR_SWARM = frozenset({"succeeded", "failed", "cancelled", "escalated"})


def _swarm(view: WorkflowView, plan: Plan) -> list[Action]:
    offers: list[Action] = [
        Offer(
            task_id_for(view.workflow_id, s.id),
            s.capability,
            s.input,
            mode="swarm",
            internal_only=s.internal_only,
        )
        for s in plan.steps
        if task_id_for(view.workflow_id, s.id) not in view.tasks
    ]
    if offers:
        return offers
    if any(t.status not in _OPEN_FOR_SWARM for t in view.tasks.values()):
        return []  # open work remains (including what agents posted)
    ok = all(t.status == "succeeded" for t in view.tasks.values())
    outputs = {k: t.output for k, t in sorted(view.tasks.items()) if t.status == "succeeded"}
    if ok:
        return [Complete("succeeded", outputs)]
    failed = sorted(k for k, t in view.tasks.items() if t.status != "succeeded")
    return [Complete("failed", {"failed_tasks": failed, "outputs": outputs})]


def _next(view: WorkflowView) -> list[Action]:
    if view.pattern == "supervisor":
        return supervise(view)
    if view.plan is not None and view.pattern == "swarm":
        return _swarm(view, view.plan)
    if view.plan is None:
        try:
            plan = plan_for(view.pattern, view.input)
            validate(plan)
        except PlanError as exc:
            return [Complete("failed", {"error": exc.message, "reason": exc.reason})]
        return [SetPlan(plan)]
    plan = view.plan
    done: set[str] = set()
    started: set[str] = set()
    for step in plan.steps:
        state = view.tasks.get(task_id_for(view.workflow_id, step.id))
        if state is None:
            continue
        started.add(step.id)
        if state.status == "succeeded":
            done.add(step.id)
        elif state.status in TERMINAL_FAILURES or (
            state.status == "escalated" and _fails_on_escalation(view)
        ):
            return [
                Complete(
                    "failed",
                    {
                        "failed_step": step.id,
                        "capability": step.capability,
                        "status": state.status,
                        "error": state.error,
                    },
                )
            ]
    if len(done) == len(plan.steps):
        last = plan.steps[-1]
        if view.pattern == "custom":
            result: Any = {
                s.id: view.tasks[task_id_for(view.workflow_id, s.id)].output for s in plan.steps
            }
        else:
            result = view.tasks[task_id_for(view.workflow_id, last.id)].output
        return [Complete("succeeded", result)]
    return [
        Offer(
            task_id_for(view.workflow_id, s.id),
            s.capability,
            _step_input(view, plan, s),
            internal_only=s.internal_only,
        )
        for s in ready(plan, done, started)
    ]
