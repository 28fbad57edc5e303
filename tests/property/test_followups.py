"""Follow-up assignments carry every field that must survive, ``internal_only`` above all, and
internal-only work is refused exactly for roles with an external replica (the router's rule)."""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from swarmlog.agents.policy.followups import MAX_ATTEMPT, follow_up, refusal
from swarmlog.agents.policy.routing import AgentView, external_roles, role_candidates
from swarmlog.schemas.payloads import TaskAssignment, TaskOffered

ROLES = ["alpha", "beta", "gamma"]
roles = st.sampled_from(ROLES)
attempts = st.integers(min_value=0, max_value=MAX_ATTEMPT)
assignments = st.from_type(TaskAssignment)
offers = st.from_type(TaskOffered)

agent_views = st.builds(
    AgentView,
    agent_id=st.sampled_from([f"a-{i}" for i in range(6)]),
    role=roles,
    capabilities=st.frozensets(st.sampled_from(["x", "y"])),
    status=st.sampled_from(["registered", "issued", "killed"]),
    last_heartbeat_at=st.none() | st.integers(0, 100),
    trust_level=st.sampled_from(["internal", "external"]),
)

ASSIGNMENT_FIELDS = {f.name for f in msgspec.structs.fields(TaskAssignment)}
OFFER_FIELDS = {f.name for f in msgspec.structs.fields(TaskOffered)}


def valid(task: TaskAssignment) -> TaskAssignment:
    """``task`` through the schema's own checks (a follow-up must be publishable)."""
    return msgspec.json.decode(msgspec.json.encode(task), type=TaskAssignment)


@given(assignments, roles, attempts)
def test_a_reassignment_carries_every_field_but_role_and_attempt(
    task: TaskAssignment, role: str, made: int
) -> None:
    again = valid(follow_up(task, role=role, attempts=made))
    for name in ASSIGNMENT_FIELDS - {"role", "attempt"}:
        assert getattr(again, name) == getattr(task, name), name
    assert again.role == role
    assert again.attempt == min(max(task.attempt, made) + 1, MAX_ATTEMPT)
    assert again.attempt > task.attempt or task.attempt == MAX_ATTEMPT  # a new attempt


@given(offers, roles)
def test_a_claimed_offer_carries_every_field_an_assignment_shares(
    offer: TaskOffered, role: str
) -> None:
    task = valid(follow_up(offer, role=role))
    shared = (ASSIGNMENT_FIELDS & OFFER_FIELDS) - {"type"}
    assert {"internal_only", "deadline_at", "parent_task_id", "priority", "input"} <= shared
    for name in shared:
        assert getattr(task, name) == getattr(offer, name), name
    assert (task.role, task.attempt) == (role, 1)


@given(st.one_of(assignments, offers), st.lists(st.tuples(roles, attempts), max_size=6))
def test_internal_only_survives_any_chain_of_follow_ups(
    first: TaskAssignment | TaskOffered, hops: list[tuple[str, int]]
) -> None:
    task = follow_up(first, role="alpha")
    for role, made in hops:  # claims, hand-overs, resolutions, in any order
        task = follow_up(task, role=role, attempts=made)
        assert task.internal_only == first.internal_only
        assert (task.task_id, task.deadline_at) == (first.task_id, first.deadline_at)


@given(assignments, roles, st.lists(agent_views, max_size=8))
def test_internal_only_work_is_refused_exactly_for_a_role_with_an_external_replica(
    task: TaskAssignment, role: str, agents: list[AgentView]
) -> None:
    task = msgspec.structs.replace(task, role=role)
    has_external = any(a.role == role and a.trust_level == "external" for a in agents)
    assert (refusal(task, agents) is not None) == (task.internal_only and has_external)


@given(st.lists(agent_views, max_size=8))
def test_the_router_judges_trust_with_the_same_rule(agents: list[AgentView]) -> None:
    candidates = role_candidates(agents, now=100, stale_after=10**12, pending={})
    for c in candidates:
        assert c.external == (c.role in external_roles(agents))


def test_a_role_is_external_while_an_external_replica_is_down() -> None:
    """Its replicas share one queue: the external one takes the work when it comes back."""
    agents = [
        AgentView("in-1", "alpha", frozenset({"x"}), "registered", 100),
        AgentView("out-1", "alpha", frozenset({"x"}), "issued", None, trust_level="external"),
    ]
    (alpha,) = role_candidates(agents, now=100, stale_after=10, pending={})
    assert alpha.external
    task = TaskAssignment(task_id="t", role="alpha", internal_only=True)
    assert refusal(task, agents) == "task t is internal-only and role alpha has an external replica"
