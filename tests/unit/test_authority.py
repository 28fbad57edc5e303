"""Unit tests of authority over tasks, questions and keys, and of the bound on ``occurred_at``.

Whose task is it: a task is held by the role it is assigned to (every replica of it) or by the
agent whose swarm claim won it; only the holder (or the operator) speaks for its progress and
outcome. Whose question: only the agent asked answers it, open or answered. Whose key: a revoke
names an issued key. When: an event's clock agrees with the server's storage time of it.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_verify import OPERATOR, YEAR, Projection

from swarmlog.projections.verify import (
    HOLDER_TYPES,
    MAX_AHEAD_NS,
    MAX_BEHIND_NS,
    OVERSEEN_TYPES,
    Rejection,
    time_problem,
)
from swarmlog.schemas.payloads import (
    AgentHeartbeat,
    ClarificationRequest,
    ClarificationResponse,
    CredentialRevoked,
    Error,
    ModelCallCompleted,
    ModelCallRequested,
    Payload,
    Result,
    TaskAssignment,
    TaskCancelled,
    TaskCheckpointed,
    TaskClaimed,
    TaskCompleted,
    TaskEscalated,
    TaskFailed,
    TaskHeartbeat,
    TaskOffered,
    TaskRetryScheduled,
    TaskStarted,
    ToolCallCompleted,
    ToolCallRequested,
)
from swarmlog.schemas.signing import Identity

ECHO_1 = Identity.from_seed("echo-1", bytes([11]) * 32)
ECHO_2 = Identity.from_seed("echo-2", bytes([12]) * 32)
WRITER = Identity.from_seed("writer-1", bytes([13]) * 32)
BACKUP = Identity.from_seed("backup-1", bytes([14]) * 32)
ROUTER = Identity.from_seed("router-1", bytes([15]) * 32)
WATCHDOG = Identity.from_seed("watchdog-1", bytes([16]) * 32)
CLAIMERS = [Identity.from_seed(f"claimer-{i}", bytes([20 + i]) * 32) for i in range(3)]
NOW = 1_700_000_000 * 10**9


def swarm() -> Projection:
    p = Projection()
    for agent, role in (
        (ECHO_1, "echo"),
        (ECHO_2, "echo"),
        (WRITER, "writer"),
        (BACKUP, "backup"),
        (ROUTER, "router"),
        (WATCHDOG, "watchdog"),
    ):
        p.issue(agent, role=role, capabilities=["text"], tools=["word_count"])
    for i, claimer in enumerate(CLAIMERS):
        p.issue(claimer, role="claimer", capabilities=["x"] if i < 2 else [])
    return p


DIGEST = "ab" * 32


def lifecycle(type_: str, task_id: str = "t1") -> Payload:
    model, tool = {"model": "offline", "call_id": f"{task_id}.m1"}, {"call_id": f"{task_id}.t1"}
    return {
        "model_call_requested": ModelCallRequested(
            task_id=task_id, call_index=1, digest=DIGEST, **model
        ),
        "model_call_completed": ModelCallCompleted(
            task_id=task_id, call_index=1, status="ok", **model
        ),
        "tool_call_requested": ToolCallRequested(
            task_id=task_id, call_index=1, tool="word_count", digest=DIGEST, **tool
        ),
        "tool_call_completed": ToolCallCompleted(
            task_id=task_id, call_index=1, tool="word_count", status="ok", **tool
        ),
        "task_started": TaskStarted(task_id=task_id),
        "task_heartbeat": TaskHeartbeat(task_id=task_id, progress=0.5),
        "task_checkpointed": TaskCheckpointed(task_id=task_id, data={"n": 1}),
        "task_completed": TaskCompleted(task_id=task_id),
        "task_retry_scheduled": TaskRetryScheduled(task_id=task_id, attempt=2),
        "result": Result(task_id=task_id, output="forged"),
        "error": Error(task_id=task_id, code="x"),
        "task_failed": TaskFailed(task_id=task_id, final=True),
        "task_escalated": TaskEscalated(task_id=task_id),
        "task_cancelled": TaskCancelled(task_id=task_id),
    }[type_]


def routed_to_echo(p: Projection, task_id: str = "t1") -> None:
    assert p.emit(OPERATOR, TaskOffered(task_id=task_id, capability="text")) is None
    assert p.emit(ROUTER, TaskAssignment(task_id=task_id, role="echo")) is None


def not_permitted(rejection: Rejection | None, *words: str) -> None:
    assert rejection is not None
    assert rejection.reason == "not_permitted", rejection
    assert rejection.in_chain
    for word in words:
        assert word in rejection.detail, rejection.detail


def task(p: Projection, task_id: str = "t1") -> dict[str, Any]:
    row = p.state.get("tasks", task_id)
    assert row is not None
    return row


# --- the holder of a task ------------------------------------------------------------------------


def test_the_lifecycle_types_are_the_ones_a_task_holder_emits() -> None:
    assert {"task_started", "task_heartbeat", "task_checkpointed", "result", "error"} <= (
        HOLDER_TYPES
    )
    assert HOLDER_TYPES.isdisjoint(OVERSEEN_TYPES)


@pytest.mark.parametrize("type_", sorted(HOLDER_TYPES | OVERSEEN_TYPES))
def test_only_the_role_a_task_is_assigned_to_speaks_for_it(type_: str) -> None:
    p = swarm()
    routed_to_echo(p)
    not_permitted(p.emit(WRITER, lifecycle(type_)), type_, "t1", "role echo", "writer-1")
    assert task(p)["status"] == "assigned"
    assert task(p)["output"] is None
    # Any replica of the role may: the role's work queue is shared.
    assert p.emit(ECHO_2, lifecycle(type_)) is None


def test_a_forged_result_leaves_the_task_to_its_holder() -> None:
    p = swarm()
    routed_to_echo(p)
    assert p.emit(ECHO_1, TaskStarted(task_id="t1")) is None
    not_permitted(p.emit(WRITER, Result(task_id="t1", output="pwned")), "role echo")
    assert p.emit(ECHO_1, Result(task_id="t1", output="HONEST")) is None
    row = task(p)
    assert (row["status"], row["output"], row["completed_by"]) == (
        "succeeded",
        '"HONEST"',
        "echo-1",
    )


@pytest.mark.parametrize("type_", sorted(HOLDER_TYPES | OVERSEEN_TYPES))
def test_no_one_speaks_for_a_task_never_offered_or_assigned(type_: str) -> None:
    p = swarm()
    not_permitted(p.emit(ECHO_1, lifecycle(type_, "ghost")), "never offered or assigned")
    assert p.state.get("tasks", "ghost") is None


def test_no_one_but_the_router_speaks_for_an_offer_not_yet_routed() -> None:
    p = swarm()
    assert p.emit(OPERATOR, TaskOffered(task_id="t1", capability="text")) is None
    not_permitted(p.emit(ECHO_1, Result(task_id="t1")), "not assigned yet")
    # The router fails or escalates what it cannot route; the watchdog escalates what stalls.
    assert p.emit(ROUTER, TaskEscalated(task_id="t1", reason="no agent")) is None
    assert p.emit(WATCHDOG, TaskEscalated(task_id="t1", reason="stalled")) is None
    assert p.emit(ROUTER, TaskFailed(task_id="t1", final=True)) is None


@pytest.mark.parametrize("type_", sorted(OVERSEEN_TYPES))
def test_overseers_may_end_work_but_not_answer_it(type_: str) -> None:
    p = swarm()
    routed_to_echo(p)
    assert p.emit(WATCHDOG, lifecycle(type_)) is None
    not_permitted(p.emit(WATCHDOG, Result(task_id="t1")), "role echo", "watchdog-1")


def test_the_operator_speaks_for_any_task() -> None:
    p = swarm()
    routed_to_echo(p)
    assert p.emit(OPERATOR, Result(task_id="t1", output="the operator's answer")) is None
    assert p.emit(OPERATOR, Result(task_id="never-assigned")) is None


# --- who may assign ------------------------------------------------------------------------------


def test_only_the_router_assigns_a_routed_offer() -> None:
    p = swarm()
    assert p.emit(OPERATOR, TaskOffered(task_id="t1", capability="text")) is None
    not_permitted(p.emit(WRITER, TaskAssignment(task_id="t1", role="writer")), "router")
    assert task(p)["role"] is None
    assert p.emit(ROUTER, TaskAssignment(task_id="t1", role="echo")) is None
    assert task(p)["role"] == "echo"


def test_an_assigned_task_cannot_be_taken_by_reassigning_it() -> None:
    p = swarm()
    routed_to_echo(p)
    for who in (WRITER, ROUTER):
        not_permitted(p.emit(who, TaskAssignment(task_id="t1", role="writer")), "role echo")
    assert task(p)["role"] == "echo"
    not_permitted(p.emit(WRITER, Result(task_id="t1")), "role echo")


def test_the_holder_hands_its_task_over_to_a_fallback_role() -> None:
    p = swarm()
    routed_to_echo(p)
    assert p.emit(ECHO_1, Error(task_id="t1", code="down")) is None
    assert p.emit(ECHO_1, TaskAssignment(task_id="t1", role="backup")) is None
    not_permitted(p.emit(ECHO_2, TaskStarted(task_id="t1")), "role backup")
    assert p.emit(BACKUP, TaskStarted(task_id="t1")) is None
    assert p.emit(BACKUP, Result(task_id="t1", output=1)) is None


def test_new_work_may_be_assigned_directly_and_an_offer_is_made_once() -> None:
    p = swarm()
    assert p.emit(WRITER, TaskAssignment(task_id="fresh", role="echo")) is None
    assert p.emit(ECHO_1, Result(task_id="fresh")) is None
    assert p.emit(WRITER, TaskOffered(task_id="sub", capability="text")) is None
    routed_to_echo(p, "t1")
    # Offering a task again (say, as a swarm offer, to claim it) is refused.
    for task_id in ("t1", "sub", "fresh"):
        again = TaskOffered(task_id=task_id, capability="x", mode="swarm")
        not_permitted(p.emit(WRITER, again), "exists already")
    assert task(p)["mode"] == "routed"


# --- swarm claims --------------------------------------------------------------------------------


def test_the_winning_claim_makes_its_agent_the_holder() -> None:
    p = swarm()
    first, second, _ = CLAIMERS
    assert p.emit(OPERATOR, TaskOffered(task_id="s1", capability="x", mode="swarm")) is None
    not_permitted(p.emit(ROUTER, TaskAssignment(task_id="s1", role="claimer")), "swarm offer")
    assert p.emit(first, TaskClaimed(task_id="s1", agent_id=first.agent_id)) is None
    not_permitted(p.emit(second, TaskClaimed(task_id="s1", agent_id=second.agent_id)), "claimer-0")
    assert task(p, "s1")["claimed_by"] == "claimer-0"
    # Its claim, not its role, makes it the holder: another claimer may not answer.
    not_permitted(p.emit(second, Result(task_id="s1")), "which claimer-0 claimed")
    not_permitted(p.emit(second, TaskAssignment(task_id="s1", role="claimer")), "claimer-0")
    assert p.emit(first, TaskStarted(task_id="s1")) is None
    assert p.emit(first, Result(task_id="s1", output="won")) is None


def test_a_claim_needs_a_swarm_offer_and_the_capability() -> None:
    p = swarm()
    first, _, unable = CLAIMERS
    assert p.emit(OPERATOR, TaskOffered(task_id="r1", capability="x")) is None
    not_permitted(p.emit(first, TaskClaimed(task_id="r1", agent_id="claimer-0")), "not offered")
    not_permitted(p.emit(first, TaskClaimed(task_id="ghost", agent_id="claimer-0")), "not offered")
    assert p.emit(OPERATOR, TaskOffered(task_id="s1", capability="x", mode="swarm")) is None
    not_permitted(p.emit(unable, TaskClaimed(task_id="s1", agent_id="claimer-2")), "'x'")
    assert task(p, "s1")["claimed_by"] is None


# --- questions -----------------------------------------------------------------------------------


def ask(p: Projection, to: str = "echo-1", request_id: str = "q1") -> None:
    question = ClarificationRequest(request_id=request_id, to=to, question="which?")
    assert p.emit(WRITER, question, recipient=to) is None


def answer(who: Identity, request_id: str = "q1") -> ClarificationResponse:
    return ClarificationResponse(request_id=request_id, to="writer-1", answer=who.agent_id)


def test_only_the_agent_asked_answers_open_or_answered() -> None:
    p = swarm()
    ask(p)
    not_permitted(p.emit(ECHO_2, answer(ECHO_2)), "put to echo-1")
    assert p.state.get("waits_for", "q1") is not None  # still open
    assert p.emit(ECHO_1, answer(ECHO_1)) is None
    assert p.state.get("waits_for", "q1") is None
    answered = p.state.get("clarifications", "q1")
    assert answered is not None
    assert (answered["asker"], answered["asked"]) == ("writer-1", "echo-1")
    assert answered["answered_at"] is not None
    # Once answered, still only the agent asked.
    not_permitted(p.emit(ECHO_2, answer(ECHO_2)), "put to echo-1")
    assert p.emit(ECHO_1, answer(ECHO_1)) is None


def test_no_one_answers_a_question_never_asked_nor_reuses_its_id() -> None:
    p = swarm()
    not_permitted(p.emit(ECHO_1, answer(ECHO_1, "q9")), "never asked")
    ask(p)
    # Asking again under the same id (to point it at oneself) is refused.
    again = ClarificationRequest(request_id="q1", to="echo-2", question="me?")
    not_permitted(p.emit(ECHO_2, again), "taken")
    not_permitted(p.emit(ECHO_2, answer(ECHO_2)), "put to echo-1")


# --- keys ----------------------------------------------------------------------------------------


def test_a_revoke_of_a_key_never_issued_is_unknown_and_leaves_no_row() -> None:
    p = swarm()
    stranger = Identity.from_seed("stranger", bytes([99]) * 32)
    rejection = p.emit(OPERATOR, CredentialRevoked(public_key=stranger.public_key, reason="?"))
    assert rejection is not None
    assert rejection.reason == "unknown_signer"
    assert "never issued" in rejection.detail
    assert rejection.in_chain  # the operator's chain stays whole: its next event is no gap
    assert p.state.get("credentials", stranger.public_key) is None
    assert p.emit(OPERATOR, CredentialRevoked(public_key=ECHO_1.public_key)) is None
    assert p.state.rows["chain_breaks"] == {}
    credential = p.state.get("credentials", ECHO_1.public_key)
    assert credential is not None
    assert credential["revoked"]


# --- when ----------------------------------------------------------------------------------------


def test_time_problem_bounds_occurred_at_by_the_storage_time() -> None:
    assert time_problem(NOW, NOW) == ""
    assert time_problem(NOW + MAX_AHEAD_NS, NOW) == ""
    assert time_problem(NOW - MAX_BEHIND_NS, NOW) == ""
    assert "after the server stored it" in time_problem(NOW + MAX_AHEAD_NS + 1, NOW)
    assert "before the server stored it" in time_problem(NOW - MAX_BEHIND_NS - 1, NOW)
    assert (
        time_problem(NOW + 10 * YEAR, NOW) == "occurred_at is 3650 days after the server stored it"
    )
    # An unknown storage time (0) judges nothing.
    assert time_problem(NOW + 10 * YEAR, 0) == ""


@pytest.mark.parametrize("offset", [10 * YEAR, -30 * YEAR, MAX_AHEAD_NS + 1, -MAX_BEHIND_NS - 1])
def test_a_far_future_or_far_past_event_is_not_applied(offset: int) -> None:
    p = swarm()
    message = p.message(
        p.seal(ECHO_1, AgentHeartbeat(agent_id="echo-1"), now=NOW + offset), stored_at=NOW
    )
    rejection = p.feed(message)
    assert rejection is not None
    assert rejection.reason == "bad_timestamp"
    assert rejection.in_chain
    agent = p.state.get("agents", "echo-1")
    assert agent is not None
    assert agent["last_heartbeat_at"] is None
    # On time (a little skew either way) is fine, and chains on without a gap.
    for skew in (MAX_AHEAD_NS, -MAX_BEHIND_NS):
        heartbeat = p.seal(ECHO_1, AgentHeartbeat(agent_id="echo-1"), now=NOW + skew)
        assert p.feed(p.message(heartbeat, stored_at=NOW)) is None
    assert p.state.rows["chain_breaks"] == {}


def test_the_operator_is_held_to_the_time_bound_too() -> None:
    p = swarm()
    late = p.seal(OPERATOR, TaskOffered(task_id="t1", capability="text"), now=NOW + YEAR)
    rejection = p.feed(p.message(late, stored_at=NOW))
    assert rejection is not None
    assert rejection.reason == "bad_timestamp"
    assert p.state.get("tasks", "t1") is None
