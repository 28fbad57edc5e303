"""The supervisor pattern (pure): what the supervisor does next, given what the log says.

A goal goes to a **planner** (an agent with the ``planner`` capability), which answers with a plan,
a DAG of steps (:mod:`swarmlog.agents.policy.planning`). The plan is validated (acyclic, bounded,
every capability one some registered agent has) before use; a rejected plan goes back to the planner
with the reason. Ready steps are offered by capability and run in parallel. Each step's output is
**reviewed**: by a reviewer agent when the workflow names one (it answers ``{"verdict": "accept" |
"retry" | "reassign", "reason": ...}``), else by the supervisor itself (an empty output is sent
back). ``retry`` runs the step again, ``reassign`` runs it again avoiding the role that did it.
A step that fails for good, or is rejected ``max_attempts`` times, has the plan **revised**: the
planner gets the plan, the accepted outputs and what failed, and its answer becomes a new plan
version in which completed steps are kept as they were. When every step is accepted, a
**synthesizer** (when named) turns the outputs into the result.

Input (``swarmlog submit supervisor``)::

    {"goal": "...", "input": ..., "planner": "plan", "reviewer": null, "synthesizer": null,
     "max_attempts": 3, "max_revisions": 2, "on_escalation": "revise"}

Everything is a task whose id says what it is, so deciding again on the same state (after a
restart of the supervisor, or by a second replica) offers nothing twice:

``<wf>--plan<k>``         the k-th request to the planner (first plan, plans sent back, revisions)
``<wf>-<step>``           a step's first attempt under plan version 1 (``…--v<n>`` under version n)
``<attempt>--r<k>``       the k-th attempt after a retry or a reassignment
``<attempt>--review``     the reviewer's verdict on that attempt
``<wf>--synthesis``       the final synthesis
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import msgspec

from swarmlog.agents.policy.planning import Plan, PlanError, PlanStep, decode_plan, revise, validate
from swarmlog.agents.policy.values import Value
from swarmlog.agents.policy.workflow_view import (
    Action,
    Complete,
    Offer,
    Revise,
    SetPlan,
    StepState,
    WorkflowView,
)

__all__ = [
    "SupervisorSpec",
    "accept_plan",
    "check_plan",
    "step_task_id",
    "supervise",
    "supervisor_spec",
]

MAX_STEP_ID = 32
"""Longest step id a planner may use (task ids, which add suffixes to it, stay within 64)."""

_IN_PROGRESS = frozenset(
    {"offered", "assigned", "claimed", "running", "errored", "retry_scheduled"}
)
_VERDICTS = frozenset({"accept", "retry", "reassign"})


class SupervisorSpec(Value):
    goal: str
    input: Any = None
    planner: str = "plan"
    reviewer: str | None = None
    synthesizer: str | None = None
    max_attempts: int = 3
    max_revisions: int = 2
    on_escalation: str = "revise"
    """An escalated step (out of attempts, or refused for good) is a failed step the plan is
    revised around (``revise``), waits for a human (``wait``), or fails the workflow (``fail``)."""


def supervisor_spec(raw: Any) -> SupervisorSpec:
    """The settings of a supervisor workflow, or :class:`PlanError` saying what is wrong."""
    if not isinstance(raw, dict) or not isinstance(raw.get("goal"), str) or not raw["goal"]:
        raise PlanError("malformed", 'a supervisor needs "goal": "what to achieve"')

    def count(name: str, default: int, low: int, high: int) -> int:
        value = raw.get(name, default)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise PlanError("malformed", f'a supervisor\'s "{name}" is a whole number {low}-{high}')
        return value

    def capability(name: str, default: str | None) -> str | None:
        value = raw.get(name, default)
        if value is not None and not isinstance(value, str):
            raise PlanError("malformed", f'a supervisor\'s "{name}" is a capability name')
        return value or None

    return SupervisorSpec(
        goal=raw["goal"],
        input=raw.get("input"),
        planner=capability("planner", "plan") or "plan",
        reviewer=capability("reviewer", None),
        synthesizer=capability("synthesizer", None),
        max_attempts=count("max_attempts", 3, 1, 10),
        max_revisions=count("max_revisions", 2, 0, 10),
        on_escalation=_choice(raw, "on_escalation", ("revise", "wait", "fail")),
    )


def _choice(raw: dict[str, Any], name: str, allowed: tuple[str, ...]) -> str:
    value = raw.get(name, allowed[0])
    if value not in allowed:
        raise PlanError("malformed", f'a supervisor\'s "{name}" is one of {", ".join(allowed)}')
    return str(value)


class _Track(Value):
    """Where one step stands."""

    status: str  # todo | running | done | failed | escalated
    output: Any = None
    why: str = ""
    action: Action | None = None


def supervise(view: WorkflowView) -> list[Action]:
    """What the supervisor does next for a running supervisor workflow."""
    try:
        spec = supervisor_spec(view.input)
    except PlanError as exc:
        return [Complete("failed", {"error": exc.message, "reason": exc.reason})]
    wf = view.workflow_id
    asked = _count(view, lambda k: f"{wf}--plan{k}")
    if asked == 0:
        return [Offer(f"{wf}--plan1", spec.planner, _ask(view, spec))]
    latest = f"{wf}--plan{asked}"
    answer = view.tasks[latest]
    plan = view.plan
    tracks = _tracks(view, spec, plan) if plan is not None else {}
    if answer.status in _IN_PROGRESS:
        return []
    if answer.status == "escalated" and spec.on_escalation != "fail":
        return []  # nobody else can plan: a human decides (swarmlog escalations resolve)
    if answer.status != "succeeded":
        return [Complete("failed", _failure("plan", spec.planner, answer.status, answer.error))]
    if plan is None or plan.planned_by != latest:
        return _use_plan(view, spec, plan, tracks, latest, asked)
    assert plan is not None
    failed = {sid: t for sid, t in tracks.items() if t.status == "failed"}
    settling = [t.action for t in tracks.values() if t.status == "running" and t.action]
    if failed:
        if settling or any(t.status == "running" for t in tracks.values()):
            return settling  # let started work settle before the plan changes under it
        sid, track = sorted(failed.items())[0]
        if asked > spec.max_revisions:
            result = _failure(sid, plan.step(sid).capability, "failed", track.why)
            return [Complete("failed", {**result, "revisions": plan.version - 1})]
        done = {s: t.output for s, t in tracks.items() if t.status == "done"}
        revise_input = {
            "plan": msgspec.to_builtins(plan),
            "done": done,
            "failed": {"step": sid, "why": track.why},
        }
        again = _ask(view, spec, revise=revise_input)
        secret = any(plan.step(s).internal_only for s in done)  # the planner sees their outputs
        return [Offer(f"{wf}--plan{asked + 1}", spec.planner, again, internal_only=secret)]
    escalated = [sid for sid, t in tracks.items() if t.status == "escalated"]
    if escalated and spec.on_escalation == "fail":
        return _escalated(spec, escalated[0])
    if all(t.status == "done" for t in tracks.values()):
        secret = any(s.internal_only for s in plan.steps)
        return _synthesize(view, spec, {sid: t.output for sid, t in tracks.items()}, secret)
    return [t.action for t in tracks.values() if t.action is not None]


def _count(view: WorkflowView, task_id: Callable[[int], str]) -> int:
    """How many of the tasks ``task_id(1)``, ``task_id(2)``, ... exist (consecutively)."""
    k = 0
    while task_id(k + 1) in view.tasks:
        k += 1
    return k


def _ask(view: WorkflowView, spec: SupervisorSpec, **extra: Any) -> dict[str, Any]:
    """What the planner gets: the goal, the input, the capabilities the swarm has, and which of
    them review and synthesize (the supervisor runs those itself: a plan needs no such step)."""
    return {
        "goal": spec.goal,
        "input": spec.input,
        "capabilities": sorted(view.capabilities or ()),
        "reviewer": spec.reviewer,
        "synthesizer": spec.synthesizer,
        **extra,
    }


def check_plan(plan: Plan, capabilities: Collection[str] | None) -> None:
    """Raise :class:`PlanError` unless the supervisor may run ``plan``: the checks of
    :func:`~swarmlog.agents.policy.planning.validate`, and step ids that fit in task ids."""
    for step in plan.steps:
        if len(step.id) > MAX_STEP_ID or "--" in step.id:
            raise PlanError(
                "bad_id", f"step id {step.id!r}: at most {MAX_STEP_ID} characters, no '--'"
            )
    validate(plan, capabilities)


def accept_plan(
    answer: Any,
    current: Plan | None,
    done: Collection[str],
    capabilities: Collection[str] | None,
    *,
    planned_by: str = "",
) -> Plan:
    """The plan a planner's ``answer`` makes, checked as the supervisor checks it, or
    :class:`PlanError` saying why it is refused.

    ``answer`` is ``{"steps": [...]}`` (or ``{"plan": {"steps": [...]}}``). With a ``current``
    plan it is a revision: the steps in ``done`` are kept as they were and the answer's other
    steps replace the rest. A planner may call this on its own answer before it gives it.
    """
    raw = answer.get("plan", answer) if isinstance(answer, dict) else answer
    proposed = decode_plan(raw)
    if current is None:
        new = Plan(steps=proposed.steps, version=1, planned_by=planned_by)
    else:
        replacement = [s for s in proposed.steps if s.id not in done]
        revised = revise(current, done, replacement, capabilities)
        new = Plan(steps=revised.steps, version=revised.version, planned_by=planned_by)
    check_plan(new, capabilities)
    return new


def _use_plan(
    view: WorkflowView,
    spec: SupervisorSpec,
    plan: Plan | None,
    tracks: dict[str, _Track],
    latest: str,
    asked: int,
) -> list[Action]:
    """The planner answered (task ``latest``): validate its plan and use it, or send it back."""
    answer = view.tasks[latest].output
    done = {sid for sid, t in tracks.items() if t.status == "done"}
    try:
        new = accept_plan(answer, plan, done, view.capabilities, planned_by=latest)
    except PlanError as exc:
        if asked > spec.max_revisions:
            rejected = {"error": "the planner's plan was rejected", "reason": exc.reason}
            return [Complete("failed", {**rejected, "detail": exc.message})]
        rejected_input: dict[str, Any] = {"rejected": {"reason": exc.reason, "detail": exc.message}}
        secret = False
        if plan is not None:
            outputs = {s: t.output for s, t in tracks.items() if t.status == "done"}
            rejected_input["plan"] = msgspec.to_builtins(plan)
            rejected_input["done"] = outputs
            secret = any(plan.step(s).internal_only for s in outputs)  # the planner sees them
        wf = view.workflow_id
        ask = _ask(view, spec, **rejected_input)
        return [Offer(f"{wf}--plan{asked + 1}", spec.planner, ask, internal_only=secret)]
    if plan is None:
        return [SetPlan(new)]
    failed = sorted(sid for sid, t in tracks.items() if t.status == "failed")
    why = "; ".join(f"step {sid}: {tracks[sid].why}" for sid in failed) or "replanned"
    return [Revise(new, why[:400])]


def _tracks(view: WorkflowView, spec: SupervisorSpec, plan: Plan) -> dict[str, _Track]:
    """Every step of ``plan``, in plan order, with its state and the next thing to do for it."""
    tracks: dict[str, _Track] = {}
    for step in plan.steps:
        prefixes = [step_task_id(view.workflow_id, step.id, v) for v in range(1, plan.version + 1)]
        # Accepted under any version (a kept step) counts; otherwise the current version's try.
        earlier = [_track(view, spec, step, p, None) for p in prefixes[:-1]]
        done = next((t for t in earlier if t.status == "done"), None)
        if done is not None:
            tracks[step.id] = done
            continue
        deps = [tracks.get(d) for d in step.depends_on]
        ready = all(d is not None and d.status == "done" for d in deps)
        step_input = _step_input(spec, step, tracks) if ready else None
        track = _track(view, spec, step, prefixes[-1], step_input)
        if track.status == "todo" and not ready:
            track = _Track("todo")
        tracks[step.id] = track
    return tracks


def step_task_id(wf: str, step_id: str, version: int) -> str:
    """The task of a step's first attempt under plan ``version`` (see the module's table)."""
    return f"{wf}-{step_id}" if version == 1 else f"{wf}-{step_id}--v{version}"


def _step_input(spec: SupervisorSpec, step: PlanStep, tracks: dict[str, _Track]) -> Any:
    if step.input is not None:
        return step.input
    if not step.depends_on:
        return spec.input
    return {d: tracks[d].output for d in step.depends_on}


def _track(
    view: WorkflowView, spec: SupervisorSpec, step: PlanStep, prefix: str, step_input: Any
) -> _Track:
    attempts = [prefix]
    while f"{prefix}--r{len(attempts) + 1}" in view.tasks:
        attempts.append(f"{prefix}--r{len(attempts) + 1}")
    last = attempts[-1]
    state = view.tasks.get(last)
    if state is None:
        return _Track(
            "todo",
            action=Offer(last, step.capability, step_input, internal_only=step.internal_only),
        )
    if state.status in _IN_PROGRESS:
        return _Track("running")
    if state.status == "escalated":
        why = f"attempt {len(attempts)} escalated: {state.error or ''}"
        return _Track("failed" if spec.on_escalation == "revise" else "escalated", why=why)
    if state.status != "succeeded":
        return _Track("failed", why=f"attempt {len(attempts)} {state.status}: {state.error or ''}")
    verdict, reason = _review(view, spec, step, last, state, step_input)
    if verdict is None:  # the review is under way (or is offered now)
        return _Track("running", action=reason)
    if verdict == "accept":
        return _Track("done", output=state.output)
    if len(attempts) >= spec.max_attempts:
        return _Track("failed", why=f"rejected after {len(attempts)} attempts: {reason}")
    again = Offer(
        f"{prefix}--r{len(attempts) + 1}",
        step.capability,
        step_input,
        avoid_roles=(state.role,) if verdict == "reassign" and state.role else (),
        internal_only=step.internal_only,  # a retry or a reassignment is the same step
    )
    return _Track("running", action=again)


def _review(
    view: WorkflowView,
    spec: SupervisorSpec,
    step: PlanStep,
    attempt: str,
    state: StepState,
    step_input: Any,
) -> tuple[str | None, Any]:
    """``(verdict, reason)``; ``(None, action or None)`` while the review is not in."""
    if spec.reviewer is None:
        # The supervisor's own review: an empty answer is no answer.
        if state.output in (None, "", [], {}):
            return "retry", "the output is empty"
        return "accept", ""
    review_id = f"{attempt}--review"
    review = view.tasks.get(review_id)
    if review is None:
        ask = {
            "goal": spec.goal,
            "step": {"id": step.id, "capability": step.capability, "description": step.description},
            "input": step_input,
            "output": state.output,
        }
        # The reviewer sees the step's input and output: what is internal stays internal.
        return None, Offer(review_id, spec.reviewer, ask, internal_only=step.internal_only)
    if review.status in _IN_PROGRESS or (
        review.status == "escalated" and spec.on_escalation == "wait"
    ):
        return None, None
    if review.status != "succeeded":
        return "retry", f"the review {review.status}: {review.error or ''}"
    out = review.output if isinstance(review.output, dict) else {}
    verdict = out.get("verdict")
    if verdict not in _VERDICTS:
        return "retry", f"the reviewer gave no verdict ({verdict!r})"
    return str(verdict), str(out.get("reason", ""))[:200]


def _synthesize(
    view: WorkflowView, spec: SupervisorSpec, outputs: dict[str, Any], internal_only: bool
) -> list[Action]:
    if spec.synthesizer is None:
        return [Complete("succeeded", {"goal": spec.goal, "outputs": outputs})]
    task_id = f"{view.workflow_id}--synthesis"
    state = view.tasks.get(task_id)
    if state is None:
        ask = {"goal": spec.goal, "outputs": outputs}
        # Made of every step's output: internal when any step is.
        return [Offer(task_id, spec.synthesizer, ask, internal_only=internal_only)]
    if state.status in _IN_PROGRESS:
        return []
    if state.status == "escalated":
        return _escalated(spec, "synthesis")
    if state.status != "succeeded":
        failure = _failure("synthesis", spec.synthesizer, state.status, state.error)
        return [Complete("failed", failure)]
    return [Complete("succeeded", state.output)]


def _escalated(spec: SupervisorSpec, step: str) -> list[Action]:
    if spec.on_escalation != "fail":
        return []  # a human decides (swarmlog escalations resolve)
    return [Complete("failed", {"failed_step": step, "status": "escalated"})]


def _failure(step: str, capability: str, status: str, error: str | None) -> dict[str, Any]:
    return {"failed_step": step, "capability": capability, "status": status, "error": error}
