"""The pure decisions the runtime, the router, the watchdog and the simulation share: screening,
settling a failure, budget limits, the watchdog's response and routing an offer."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmlog.agents.policy import budgets, screening, settle, workflows
from swarmlog.agents.policy.breakers import Breaker, BreakerPolicy
from swarmlog.agents.policy.deadlocks import Deadlock, Wait, response
from swarmlog.agents.policy.retry import RetryPolicy
from swarmlog.agents.policy.routing import Candidate, judged_circuits, pick, through_circuits
from swarmlog.agents.settlement import task_error
from swarmlog.errors import ModelError, TaskError
from swarmlog.schemas.payloads import DeadlockDetected, TaskEscalated, TaskOffered

NOW = 1_000 * 10**9
POLICY = RetryPolicy(initial_delay=1.0, max_delay=8.0, max_attempts=3, jitter=0)

# -- screening ----------------------------------------------------------------------------------

RUN = {
    "verified": True,
    "killed": False,
    "duplicate": False,
    "deadline_at": None,
    "now": NOW,
    "over_budget": False,
}


@pytest.mark.parametrize(
    ("changes", "verdict"),
    [
        ({}, "run"),
        ({"verified": False}, "rejected"),
        ({"verified": False, "killed": True, "duplicate": True}, "rejected"),
        ({"killed": True}, "handed_back"),
        ({"killed": True, "duplicate": True, "over_budget": True}, "handed_back"),
        ({"duplicate": True}, "duplicate"),
        ({"duplicate": True, "deadline_at": NOW - 1}, "duplicate"),  # acked even when late
        ({"deadline_at": NOW}, "timed_out"),
        ({"deadline_at": NOW + 1}, "run"),
        ({"deadline_at": NOW - 1, "over_budget": True}, "timed_out"),
        ({"over_budget": True}, "over_budget"),
    ],
)
def test_screening_settles_what_must_not_run_in_order(
    changes: dict[str, object], verdict: screening.Verdict
) -> None:
    assert screening.screen(**(RUN | changes)) == verdict  # type: ignore[arg-type]


def test_a_redelivery_is_the_next_attempt() -> None:
    assert screening.attempt_of(1, 1) == 1
    assert screening.attempt_of(4, 3) == 6  # handed over after 3, redelivered twice


# -- settling a failure -------------------------------------------------------------------------


def _after(attempt: int, **kw: object) -> settle.Settlement:
    fields: dict[str, object] = {"retryable": True, "draw": 0.0, "role": "keeper"} | kw
    return settle.after_failure(POLICY, attempt=attempt, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("attempt", "kw", "expected"),
    [
        (1, {}, settle.Retry(2, 1.0)),
        (2, {"fallback_role": "spare"}, settle.Retry(3, 2.0)),
        (3, {}, settle.Escalate("3 of 3 attempts failed")),
        (3, {"fallback_role": "spare"}, settle.HandOver("spare")),
        (3, {"fallback_role": "keeper"}, settle.Escalate("3 of 3 attempts failed")),
        (1, {"retryable": False}, settle.Escalate("the error is not retryable")),
        (
            1,
            {"retryable": False, "fallback_role": "spare"},
            settle.Escalate("the error is not retryable"),
        ),
        (
            1,  # a permanent error: neither retried nor handed over, the input is at fault
            {"retryable": False, "fallback_role": "spare", "code": "ValueError"},
            settle.Escalate("ValueError is not retryable (a permanent error)"),
        ),
        (1, {"swarm": True, "code": "boom"}, settle.Escalate("claimed swarm task failed: boom")),
        (
            1,
            {"swarm": True, "timed_out": True, "code": "x"},
            settle.Escalate("claimed swarm task failed: x"),
        ),
        (1, {"timed_out": True}, settle.TimedOut()),
    ],
)
def test_a_failure_is_retried_then_handed_over_then_escalated(
    attempt: int, kw: dict[str, object], expected: settle.Settlement
) -> None:
    assert _after(attempt, **kw) == expected


@given(
    attempt=st.integers(1, 10),
    retryable=st.booleans(),
    draw=st.floats(0, 1, exclude_max=True),
    fallback=st.sampled_from([None, "", "keeper", "spare"]),
)
def test_settle_agrees_with_the_retry_policy(
    attempt: int, retryable: bool, draw: float, fallback: str | None
) -> None:
    decision = _after(attempt, retryable=retryable, draw=draw, fallback_role=fallback)
    retry = POLICY.decide(attempt, retryable=retryable, draw=draw)
    assert isinstance(decision, settle.Retry) == retry.retry
    if isinstance(decision, settle.Retry):
        assert decision == settle.Retry(attempt + 1, retry.delay)
    if isinstance(decision, settle.HandOver):
        assert retryable
        assert decision.role == fallback == "spare"
    assert settle.says_retryable(decision, swarm=False) == retry.retry


class _Quota(RuntimeError):
    pass


@pytest.mark.parametrize(
    ("exc", "policy", "code", "retryable"),
    [
        (ValueError("no such date"), RetryPolicy(), "ValueError", False),
        (json.JSONDecodeError("bad", "{", 0), RetryPolicy(), "JSONDecodeError", False),
        (KeyError("name"), RetryPolicy(), "KeyError", False),
        (RuntimeError("flaky"), RetryPolicy(), "RuntimeError", True),
        (ConnectionResetError("peer"), RetryPolicy(), "ConnectionResetError", True),
        (ModelError("answered 400", retryable=False), RetryPolicy(), "ModelError", False),
        (ModelError("answered 503"), RetryPolicy(), "ModelError", True),
        (TaskError("empty_input", "no text", retryable=False), RetryPolicy(), "empty_input", False),
        (TaskError("busy", "try later"), RetryPolicy(), "busy", True),
        (
            TaskError("quota", "over quota"),
            RetryPolicy(non_retryable_error_types=frozenset({"quota"})),
            "quota",
            False,
        ),
        (
            _Quota("over"),
            RetryPolicy(non_retryable_error_types=frozenset({"_Quota"})),
            "_Quota",
            False,
        ),
        (ValueError("x"), RetryPolicy(non_retryable_error_types=frozenset()), "ValueError", True),
    ],
)
def test_a_failure_is_coded_by_its_type_and_permanent_ones_are_not_retryable(
    exc: BaseException, policy: RetryPolicy, code: str, retryable: bool
) -> None:
    error = task_error(exc, policy)
    assert (error.code, error.retryable) == (code, retryable)


def test_over_its_budget_work_goes_to_the_fallback_role_or_a_human() -> None:
    kw = {"agent_id": "keeper-1", "spent": 120}
    assert settle.over_budget(role="keeper", fallback_role="spare", **kw) == settle.HandOver(
        "spare"
    )
    assert settle.over_budget(role="keeper", fallback_role=None, **kw) == settle.Escalate(
        "keeper-1 spent its token budget (120 tokens)"
    )
    assert isinstance(
        settle.over_budget(role="spare", fallback_role="spare", **kw), settle.Escalate
    )


# -- budgets ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("used", "budget", "limit"),
    [
        (0, None, None),
        (10**9, None, None),
        (0, 100, None),
        (79, 100, None),
        (80, 100, "soft"),
        (99, 100, "soft"),
        (100, 100, "hard"),
        (500, 100, "hard"),
        (0, 0, "hard"),
    ],
)
def test_limits_of_a_budget(used: int, budget: int | None, limit: str | None) -> None:
    assert budgets.limit_reached(used, budget) == limit


def test_each_limit_is_announced_once_and_only_the_highest() -> None:
    assert budgets.budget_alert(85, 100, set()) == "soft"
    assert budgets.budget_alert(90, 100, {"soft"}) is None
    assert budgets.budget_alert(100, 100, {"soft"}) == "hard"
    assert budgets.budget_alert(150, 100, {"soft", "hard"}) is None
    assert budgets.budget_alert(150, 100, set()) == "hard"  # a jump past it all: hard alone


def test_workflows_and_agents_share_one_soft_limit() -> None:
    assert workflows.SOFT_LIMIT is budgets.SOFT_LIMIT


# -- the watchdog's response --------------------------------------------------------------------


def _deadlock(kind: str = "clarification", task_id: str | None = "t1") -> Deadlock:
    a = Wait("q1", "a", "b", 1)
    b = Wait("q2", "b", "a", 2, kind=kind, task_id=task_id)
    return Deadlock(("a", "b", "a"), (a, b), b)


def test_breaking_a_deadlock_is_a_notice_to_the_victims_waiter() -> None:
    (notice,) = response(_deadlock(), "break")
    assert notice.recipient == "b"
    assert notice.payload == DeadlockDetected(
        cycle=["a", "b", "a"], victim="q2", to="b", task_id="t1"
    )


@pytest.mark.parametrize(
    ("deadlock", "policy"),
    [(_deadlock(), "escalate"), (_deadlock(kind="subtask"), "break")],
)
def test_a_deadlock_that_is_not_broken_is_reported_and_its_task_escalated(
    deadlock: Deadlock, policy: str
) -> None:
    reported, escalated = response(deadlock, policy)  # type: ignore[arg-type]
    assert reported.recipient is None
    assert reported.payload == DeadlockDetected(cycle=["a", "b", "a"], task_id="t1")
    assert isinstance(escalated.payload, TaskEscalated)
    assert escalated.payload.task_id == "t1"


def test_a_deadlock_without_a_task_is_reported_only() -> None:
    (reported,) = response(_deadlock(task_id=None), "escalate")
    assert isinstance(reported.payload, DeadlockDetected)


# -- routing an offer ---------------------------------------------------------------------------


def _role(role: str, cost: int = 0, **kw: object) -> Candidate:
    return Candidate(role, role, frozenset({"work"}), tier_cost=cost, **kw)  # type: ignore[arg-type]


def test_an_offer_goes_to_the_cheapest_role_passing_over_avoided_and_external_ones() -> None:
    cheap, dear = _role("cheap"), _role("dear", cost=2)
    assert pick(TaskOffered(task_id="t", capability="work"), [dear, cheap]) == cheap
    avoid = TaskOffered(task_id="t", capability="work", avoid_roles=["cheap"])
    assert pick(avoid, [dear, cheap]) == dear
    assert pick(avoid, [cheap]) == cheap  # avoided, but no other role can
    outside = _role("cheap", external=True)
    internal = TaskOffered(task_id="t", capability="work", internal_only=True)
    assert pick(internal, [outside, dear]) == dear
    assert pick(internal, [outside]) is None
    assert pick(TaskOffered(task_id="t", capability="other"), [cheap]) is None


def test_an_open_circuit_keeps_its_role_out_and_outcomes_count_where_they_belong() -> None:
    policy = BreakerPolicy(cooldown=30)
    opened = Breaker("open", opened_at=NOW)
    a, b = _role("a"), _role("b", dependencies=frozenset({"api"}))
    assert through_circuits([a, b], {"role:a": opened}, now=NOW, policy=policy) == [b]
    assert through_circuits([a, b], {"dep:api": opened}, now=NOW, policy=policy) == [a]
    later = NOW + 31 * 10**9  # past the cool-down: a probe may go
    assert through_circuits([a, b], {"role:a": opened}, now=later, policy=policy) == [a, b]
    assert judged_circuits("b", True, None, ["api"]) == ["role:b", "dep:api"]
    assert judged_circuits("b", False, "api", ["api"]) == ["dep:api"]
    assert judged_circuits("b", False, None, ["api"]) == ["role:b"]
    # A permanent failure goes where a result goes (it frees probes there, and counts for nothing)
    assert judged_circuits("b", None, "api", ["api"]) == ["role:b", "dep:api"]
