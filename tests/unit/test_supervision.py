"""The supervisor pattern, pure: planning, plan checks, review (accept / retry / reassign),
revision that keeps completed work, synthesis. A small world plays the agents."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from swarmlog.agents.policy.planning import Plan
from swarmlog.agents.policy.workflow_view import (
    Complete,
    Offer,
    Revise,
    SetPlan,
    StepState,
    WorkflowView,
)
from swarmlog.agents.policy.workflows import decide

WF = "wf-1"
CAPS = frozenset({"plan", "fetch", "count", "write", "review", "synthesize"})

Worker = Callable[[Offer, int], tuple[str, Any]]
"""(offer, how many times its capability ran before) -> (status, output)."""


@dataclass
class World:
    """Applies the supervisor's actions and answers its offers with ``workers``."""

    spec: dict[str, Any]
    workers: dict[str, Worker]
    capabilities: frozenset[str] = CAPS
    plan: Plan | None = None
    tasks: dict[str, StepState] = field(default_factory=dict)
    offers: list[Offer] = field(default_factory=list)
    revisions: list[Revise] = field(default_factory=list)

    def view(self) -> WorkflowView:
        return WorkflowView(
            WF, "supervisor", self.spec, self.plan, dict(self.tasks), capabilities=self.capabilities
        )

    def run(self, max_rounds: int = 50) -> Complete:
        for _ in range(max_rounds):
            actions = decide(self.view())
            assert actions == decide(self.view())  # deciding is a function of the state
            for action in actions:
                match action:
                    case Complete():
                        return action
                    case SetPlan(plan=plan):
                        self.plan = plan
                    case Revise(plan=plan):
                        assert self.plan is not None
                        assert plan.version == self.plan.version + 1
                        self.plan = plan
                        self.revisions.append(action)
                    case Offer():
                        assert action.task_id not in self.tasks, "offered twice"
                        self.offers.append(action)
                        ran = sum(1 for o in self.offers if o.capability == action.capability)
                        status, output = self.workers[action.capability](action, ran - 1)
                        role = f"{action.capability}-role"
                        if role in action.avoid_roles:
                            role = f"{action.capability}-other"
                        self.tasks[action.task_id] = StepState(status, output, None, role)
            if not actions:
                raise AssertionError("stuck: nothing to do and not complete")
        raise AssertionError("did not finish")

    def offered(self, capability: str) -> list[str]:
        return [o.task_id for o in self.offers if o.capability == capability]


def plans(*answers: dict[str, Any]) -> Worker:
    """A planner answering with ``answers`` in turn (the last one from then on)."""

    def plan(offer: Offer, n: int) -> tuple[str, Any]:
        return "succeeded", answers[min(n, len(answers) - 1)]

    return plan


def echo(offer: Offer, n: int) -> tuple[str, Any]:
    return "succeeded", {"did": offer.capability, "got": offer.input}


REPORT = {
    "steps": [
        {"id": "fetch", "capability": "fetch", "input": ["a.txt", "b.txt"]},
        {"id": "count", "capability": "count", "depends_on": ["fetch"]},
        {"id": "write", "capability": "write", "depends_on": ["fetch", "count"]},
    ]
}


def test_a_goal_is_planned_run_in_dependency_order_and_synthesized() -> None:
    world = World(
        {"goal": "a report", "synthesizer": "synthesize"},
        {"plan": plans(REPORT), "fetch": echo, "count": echo, "write": echo, "synthesize": echo},
    )
    done = world.run()
    assert done.status == "succeeded"
    assert done.result["did"] == "synthesize"
    outputs = done.result["got"]["outputs"]
    assert list(outputs) == ["fetch", "count", "write"]
    assert outputs["write"]["got"] == {"fetch": outputs["fetch"], "count": outputs["count"]}
    planner_ask = world.offers[0]
    assert planner_ask.task_id == f"{WF}--plan1"
    assert planner_ask.input["capabilities"] == sorted(CAPS)
    assert [o.task_id for o in world.offers[1:]] == [
        f"{WF}-fetch",
        f"{WF}-count",
        f"{WF}-write",
        f"{WF}--synthesis",
    ]


def test_a_plan_with_a_cycle_is_sent_back_with_the_reason_then_used_once_fixed() -> None:
    cyclic = {
        "steps": [
            {"id": "a", "capability": "fetch", "depends_on": ["b"]},
            {"id": "b", "capability": "count", "depends_on": ["a"]},
        ]
    }
    world = World(
        {"goal": "g"}, {"plan": plans(cyclic, REPORT), "fetch": echo, "count": echo, "write": echo}
    )
    done = world.run()
    assert done.status == "succeeded"
    second = world.offers[1]
    assert second.task_id == f"{WF}--plan2"
    assert second.input["rejected"]["reason"] == "cycle"
    assert "a -> b -> a" in second.input["rejected"]["detail"]


def test_a_plan_needing_an_unknown_capability_fails_with_a_clear_reason() -> None:
    unknown = {"steps": [{"id": "x", "capability": "teleport"}]}
    world = World({"goal": "g", "max_revisions": 0}, {"plan": plans(unknown)})
    done = world.run()
    assert done.status == "failed"
    assert done.result["reason"] == "unknown_capability"
    assert "teleport" in done.result["detail"]
    assert world.offered("teleport") == []  # never run


def test_a_reviewer_sends_work_back_and_reassigns_it_to_another_role() -> None:
    verdicts = iter(["retry", "reassign", "accept", "accept", "accept", "accept"])

    def review(offer: Offer, n: int) -> tuple[str, Any]:
        return "succeeded", {"verdict": next(verdicts), "reason": "try again"}

    world = World(
        {"goal": "g", "reviewer": "review"},
        {"plan": plans(REPORT), "fetch": echo, "count": echo, "write": echo, "review": review},
    )
    done = world.run()
    assert done.status == "succeeded"
    assert world.offered("fetch") == [f"{WF}-fetch", f"{WF}-fetch--r2", f"{WF}-fetch--r3"]
    third = world.offers[[o.task_id for o in world.offers].index(f"{WF}-fetch--r3")]
    assert third.avoid_roles == ("fetch-role",)  # reassigned: not the role that did it
    asked = world.offers[[o.task_id for o in world.offers].index(f"{WF}-fetch--review")]
    assert asked.input["output"] == {"did": "fetch", "got": ["a.txt", "b.txt"]}
    assert world.offered("count") == [f"{WF}-count"]  # waited for fetch to be accepted


def test_a_step_failing_for_good_revises_the_plan_and_completed_work_is_kept() -> None:
    def count(offer: Offer, n: int) -> tuple[str, Any]:
        return ("failed", None) if n == 0 else ("succeeded", {"n": 2})

    revised = {
        "steps": [
            {"id": "count2", "capability": "count", "depends_on": ["fetch"]},
            {"id": "write", "capability": "write", "depends_on": ["fetch", "count2"]},
        ]
    }
    world = World(
        {"goal": "g"},
        {"plan": plans(REPORT, revised), "fetch": echo, "count": count, "write": echo},
    )
    done = world.run()
    assert done.status == "succeeded", done.result
    assert world.offered("fetch") == [f"{WF}-fetch"]  # done once, kept through the revision
    ask = world.offers[[o.task_id for o in world.offers].index(f"{WF}--plan2")]
    assert ask.input["revise"]["failed"]["step"] == "count"
    assert list(ask.input["revise"]["done"]) == ["fetch"]
    (revision,) = world.revisions
    assert revision.plan.version == 2
    assert "count" in revision.reason
    assert [s.id for s in revision.plan.steps] == ["fetch", "count2", "write"]
    assert world.offered("write") == [f"{WF}-write--v2"]
    assert set(done.result["outputs"]) == {"fetch", "count2", "write"}


def test_out_of_revisions_the_workflow_fails_naming_the_step() -> None:
    def count(offer: Offer, n: int) -> tuple[str, Any]:
        return "failed", None

    world = World(
        {"goal": "g", "max_revisions": 1},
        {"plan": plans(REPORT), "fetch": echo, "count": count, "write": echo},
    )
    done = world.run()
    assert done.status == "failed"
    assert done.result["failed_step"] == "count"
    assert done.result["revisions"] == 1
    assert world.offered("write") == []


def test_empty_output_is_not_accepted_by_the_supervisors_own_review() -> None:
    def fetch(offer: Offer, n: int) -> tuple[str, Any]:
        return "succeeded", None if n == 0 else ["text"]

    world = World(
        {"goal": "g"}, {"plan": plans(REPORT), "fetch": fetch, "count": echo, "write": echo}
    )
    assert world.run().status == "succeeded"
    assert world.offered("fetch") == [f"{WF}-fetch", f"{WF}-fetch--r2"]


def test_a_supervisor_without_a_goal_fails_with_what_to_give() -> None:
    (done,) = decide(WorkflowView(WF, "supervisor", {"planner": "plan"}))
    assert isinstance(done, Complete)
    assert done.status == "failed"
    assert "goal" in done.result["error"]


def test_an_escalated_step_is_revised_around_unless_told_to_wait() -> None:
    def count(offer: Offer, n: int) -> tuple[str, Any]:
        return ("escalated", None) if n == 0 else ("succeeded", {"n": 2})

    revised = {"steps": [{"id": "count2", "capability": "count", "depends_on": ["fetch"]}]}
    world = World(
        {"goal": "g"},
        {"plan": plans(REPORT, revised), "fetch": echo, "count": count, "write": echo},
    )
    assert world.run().status == "succeeded"
    assert len(world.revisions) == 1
    waiting = World(
        {"goal": "g", "on_escalation": "wait"},
        {"plan": plans(REPORT, revised), "fetch": echo, "count": count, "write": echo},
    )
    with pytest.raises(AssertionError, match="stuck"):
        waiting.run()  # nothing to do but wait for a human
    assert waiting.revisions == []


def test_what_is_made_of_an_internal_only_step_stays_internal_only() -> None:
    """Its retries and reassignments, its review, and the synthesis that sees its output."""
    verdicts = iter(["retry", "reassign", "accept", "accept", "accept", "accept"])

    def review(offer: Offer, n: int) -> tuple[str, Any]:
        return "succeeded", {"verdict": next(verdicts), "reason": "try again"}

    secret = {"steps": [{**REPORT["steps"][0], "internal_only": True}, *REPORT["steps"][1:]]}
    world = World(
        {"goal": "g", "reviewer": "review", "synthesizer": "synthesize"},
        {
            "plan": plans(secret),
            "fetch": echo,
            "count": echo,
            "write": echo,
            "review": review,
            "synthesize": echo,
        },
    )
    assert world.run().status == "succeeded"
    internal = {o.task_id for o in world.offers if o.internal_only}
    fetching = [f"{WF}-fetch", f"{WF}-fetch--r2", f"{WF}-fetch--r3"]
    assert world.offered("fetch") == fetching
    reviews = [f"{t}--review" for t in fetching]
    assert internal == {*fetching, *reviews, f"{WF}--synthesis"}
