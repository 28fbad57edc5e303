"""What the conductor decides (pure): plans from patterns, ready steps with their inputs, the
result, and a failure that names its step."""

from __future__ import annotations

from swarmlog.agents.policy.planning import Plan
from swarmlog.agents.policy.workflow_view import (
    BudgetAlert,
    Complete,
    Offer,
    SetPlan,
    StepState,
    WorkflowView,
)
from swarmlog.agents.policy.workflows import decide, plan_for


def run_to_end(view: WorkflowView, outputs: dict[str, object]) -> list[object]:
    """Play the workflow: every offered step succeeds with ``outputs[capability]``."""
    log: list[object] = []
    tasks: dict[str, StepState] = {}
    for _ in range(50):
        actions = decide(WorkflowView(view.workflow_id, view.pattern, view.input, view.plan, tasks))
        log += actions
        for action in actions:
            if isinstance(action, SetPlan):
                view = WorkflowView(view.workflow_id, view.pattern, view.input, action.plan)
            elif isinstance(action, Offer):
                value = outputs[action.capability]
                out = value(action.input) if callable(value) else value
                tasks[action.task_id] = StepState("succeeded", out)
            elif isinstance(action, Complete):
                return log
    raise AssertionError("never completed")


def test_a_pipeline_feeds_each_stage_the_previous_output() -> None:
    view = WorkflowView("wf", "pipeline", {"stages": ["a", "b", "c"], "input": 1})
    log = run_to_end(view, {"a": lambda x: x + 1, "b": lambda x: x * 10, "c": lambda x: x - 3})
    offers = [a for a in log if isinstance(a, Offer)]
    assert [(o.task_id, o.input) for o in offers] == [("wf-s1", 1), ("wf-s2", 2), ("wf-s3", 20)]
    assert log[-1] == Complete("succeeded", 17)


def test_a_debate_asks_in_parallel_and_the_judge_sees_every_answer() -> None:
    view = WorkflowView("wf", "debate", {"question": "q?", "debaters": 3, "capability": "d"})
    log = run_to_end(view, {"d": "yes", "judge": lambda x: x})
    first_wave = next(
        [a for a in log[i:] if isinstance(a, Offer)]
        for i, a in enumerate(log)
        if isinstance(a, Offer)
    )
    assert {o.task_id for o in first_wave[:3]} == {"wf-d1", "wf-d2", "wf-d3"}
    assert log[-1] == Complete(
        "succeeded", {"question": "q?", "answers": {"d1": "yes", "d2": "yes", "d3": "yes"}}
    )


def test_debate_rounds_show_each_debater_the_last_rounds_answers() -> None:
    view = WorkflowView(
        "wf", "debate", {"question": "q?", "debaters": 2, "capability": "d", "rounds": 3}
    )
    log = run_to_end(
        view, {"d": lambda x: f"answer after {sorted(x.get('answers', {}))}", "judge": lambda x: x}
    )
    offers = {a.task_id: a for a in log if isinstance(a, Offer)}
    assert list(offers) == [
        "wf-d1",
        "wf-d2",
        "wf-d1-r2",
        "wf-d2-r2",
        "wf-d1-r3",
        "wf-d2-r3",
        "wf-judge",
    ]
    third = offers["wf-d2-r3"].input
    assert third["round"] == 3
    assert third["yours"] == "d2-r2"
    assert sorted(third["answers"]) == ["d1-r2", "d2-r2"]
    assert sorted(offers["wf-judge"].input["answers"]) == ["d1-r3", "d2-r3"]


def test_a_failed_step_fails_the_workflow_naming_it() -> None:
    spec = {"stages": ["a", "b"]}
    plan = plan_for("pipeline", spec)
    escalated = {"wf-s1": StepState("succeeded", 1), "wf-s2": StepState("escalated", None, "boom")}
    # An escalation waits for a human...
    assert decide(WorkflowView("wf", "pipeline", spec, plan, escalated)) == []
    # ...unless the workflow fails fast,
    fast = {**spec, "on_escalation": "fail"}
    (action,) = decide(WorkflowView("wf", "pipeline", fast, plan, escalated))
    assert action == Complete(
        "failed", {"failed_step": "s2", "capability": "b", "status": "escalated", "error": "boom"}
    )
    # and a cancelled (or finally failed) step fails it in any case.
    cancelled = {**escalated, "wf-s2": StepState("cancelled", None, "given up")}
    (action,) = decide(WorkflowView("wf", "pipeline", spec, plan, cancelled))
    assert isinstance(action, Complete)
    assert action.status == "failed"
    # An attempt that errored is not the end: its retry follows.
    errored = {**escalated, "wf-s2": StepState("errored", None, "flaky")}
    assert decide(WorkflowView("wf", "pipeline", spec, plan, errored)) == []


def test_waiting_steps_are_not_offered_again() -> None:
    plan = plan_for("pipeline", {"stages": ["a", "b"]})
    tasks = {"wf-s1": StepState("running")}
    assert decide(WorkflowView("wf", "pipeline", {}, plan, tasks)) == []


def test_a_bad_spec_fails_with_the_reason() -> None:
    (action,) = decide(WorkflowView("wf", "pipeline", {"stages": []}))
    assert isinstance(action, Complete)
    assert action.status == "failed"
    assert "stages" in action.result["error"]
    custom = {"plan": {"steps": [{"id": "a", "capability": "x", "depends_on": ["a"]}]}}
    (action,) = decide(WorkflowView("wf", "custom", custom))
    assert isinstance(action, Complete)
    assert action.result["reason"] == "cycle"
    assert isinstance(
        plan_for("custom", {"plan": {"steps": [{"id": "a", "capability": "x"}]}}), Plan
    )


def test_a_token_budget_warns_then_stops_the_workflow() -> None:
    spec = {"stages": ["a", "b"]}
    plan = plan_for("pipeline", spec)
    tasks = {"wf-s1": StepState("succeeded", 1)}

    def view(used: int, alerted: frozenset[str] = frozenset()) -> WorkflowView:
        return WorkflowView("wf", "pipeline", spec, plan, tasks, 100, used, alerted)

    assert decide(view(50)) == [Offer("wf-s2", "b", 1)]
    assert decide(view(85)) == [BudgetAlert("soft", 85, 100), Offer("wf-s2", "b", 1)]
    assert decide(view(85, frozenset({"soft"}))) == [Offer("wf-s2", "b", 1)]
    stop = Complete(
        "failed", {"error": "token budget exceeded", "used_tokens": 120, "budget_tokens": 100}
    )
    assert decide(view(120, frozenset({"soft"}))) == [BudgetAlert("hard", 120, 100), stop]
    assert decide(view(120, frozenset({"soft", "hard"}))) == [stop]


def test_a_swarm_ends_when_no_task_is_open() -> None:
    spec = {"tasks": [{"id": "r", "capability": "split"}]}
    plan = plan_for("swarm", spec)
    assert decide(WorkflowView("wf", "swarm", spec, plan)) == [
        Offer("wf-r", "split", None, mode="swarm")
    ]
    posted = {"wf-r": StepState("succeeded", 1), "wf-ra": StepState("offered")}
    assert decide(WorkflowView("wf", "swarm", spec, plan, posted)) == []  # agents' work is open
    done = {"wf-r": StepState("succeeded", 1), "wf-ra": StepState("succeeded", 2)}
    assert decide(WorkflowView("wf", "swarm", spec, plan, done)) == [
        Complete("succeeded", {"wf-r": 1, "wf-ra": 2})
    ]
    bad = {"wf-r": StepState("succeeded", 1), "wf-ra": StepState("escalated")}
    (action,) = decide(WorkflowView("wf", "swarm", spec, plan, bad))
    assert action == Complete("failed", {"failed_tasks": ["wf-ra"], "outputs": {"wf-r": 1}})
