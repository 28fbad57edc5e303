"""Plans as DAGs: validation accepts exactly the acyclic, well-formed plans; the reported cycle is
real; ready steps respect dependencies and running them in waves finishes every plan."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmlog.agents.policy.planning import (
    Plan,
    PlanError,
    PlanStep,
    decode_plan,
    find_cycle,
    ready,
    revise,
    topological_order,
    validate,
)

CAPS = ["search", "write", "review"]


@st.composite
def dags(draw: st.DrawFn, min_size: int = 1, max_size: int = 12) -> Plan:
    """Acyclic by construction: a step depends only on steps listed before it."""
    n = draw(st.integers(min_size, max_size))
    steps = []
    for i in range(n):
        deps = draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else set()
        steps.append(
            PlanStep(
                id=f"s{i}",
                capability=draw(st.sampled_from(CAPS)),
                depends_on=[f"s{d}" for d in sorted(deps)],
            )
        )
    order = draw(st.permutations(steps))  # listed in any order
    return Plan(steps=list(order))


@given(dags())
def test_acyclic_plans_are_accepted_and_ordered(plan: Plan) -> None:
    validate(plan, CAPS)
    order = topological_order(plan)
    assert sorted(order) == sorted(s.id for s in plan.steps)
    position = {step_id: i for i, step_id in enumerate(order)}
    for s in plan.steps:
        assert all(position[d] < position[s.id] for d in s.depends_on)


@given(dags(min_size=2), st.data())
def test_a_back_edge_is_rejected_and_the_cycle_named_is_real(
    plan: Plan, data: st.DataObject
) -> None:
    # Add an edge from a step to one of its (transitive) dependants: that closes a cycle.
    order = topological_order(plan)
    i = data.draw(st.integers(0, len(order) - 2))
    j = data.draw(st.integers(i + 1, len(order) - 1))
    early, late = order[i], order[j]
    edges = {s.id: list(s.depends_on) for s in plan.steps}
    if late not in edges[early]:
        edges[early].append(late)
    # Make sure `late` really depends on `early` (so the new edge closes a loop).
    if early not in edges[late]:
        edges[late].append(early)
    steps = [PlanStep(id=s.id, capability=s.capability, depends_on=edges[s.id]) for s in plan.steps]
    with pytest.raises(PlanError) as caught:
        validate(Plan(steps=steps))
    assert caught.value.reason == "cycle"
    cycle = find_cycle(edges)
    assert cycle is not None
    assert cycle[0] == cycle[-1]
    for a, b in itertools.pairwise(cycle):
        assert b in edges[a]  # every hop of the reported cycle is an edge


@given(dags())
def test_running_ready_steps_in_waves_finishes_the_plan(plan: Plan) -> None:
    done: set[str] = set()
    waves = 0
    while len(done) < len(plan.steps):
        wave = ready(plan, done, started=set())
        assert wave, "a valid plan never stalls"
        for s in wave:
            assert all(d in done for d in s.depends_on)
        done |= {s.id for s in wave}
        waves += 1
    assert waves <= len(plan.steps)


def test_clear_reasons() -> None:
    one = PlanStep(id="a", capability="search")
    cases = {
        "empty": Plan(steps=[]),
        "duplicate_step": Plan(steps=[one, one]),
        "unknown_dependency": Plan(steps=[PlanStep(id="a", capability="x", depends_on=["b"])]),
        "unknown_capability": Plan(steps=[PlanStep(id="a", capability="fly")]),
        "too_large": Plan(steps=[PlanStep(id=f"s{i}", capability="search") for i in range(201)]),
        "cycle": Plan(
            steps=[
                PlanStep(id="a", capability="search", depends_on=["b"]),
                PlanStep(id="b", capability="search", depends_on=["a"]),
            ]
        ),
    }
    for reason, plan in cases.items():
        with pytest.raises(PlanError) as caught:
            validate(plan, CAPS if reason != "unknown_dependency" else None)
        assert caught.value.reason == reason
    with pytest.raises(PlanError, match="the plan has a cycle: a -> b -> a"):
        validate(cases["cycle"])
    with pytest.raises(PlanError) as caught:
        decode_plan({"steps": [{"id": "Bad Id", "capability": "search"}]})
    assert caught.value.reason == "malformed"


def test_a_revision_keeps_done_work_and_is_validated() -> None:
    plan = Plan(
        steps=[
            PlanStep(id="fetch", capability="search"),
            PlanStep(id="draft", capability="write", depends_on=["fetch"]),
        ]
    )
    revised = revise(
        plan, {"fetch"}, [PlanStep(id="draft2", capability="write", depends_on=["fetch"])]
    )
    assert revised.version == 2
    assert [s.id for s in revised.steps] == ["fetch", "draft2"]
    with pytest.raises(PlanError):
        revise(plan, {"fetch"}, [PlanStep(id="x", capability="write", depends_on=["draft"])])
