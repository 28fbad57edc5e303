"""A workflow's graph is every task of it (planner requests, step attempts, retries, reviews,
subtasks, the synthesis) and the steps not yet run, each joined to what it came from."""

from __future__ import annotations

from typing import Any

from swarmlog.agents.policy.planning import Plan, PlanStep
from swarmlog.cli.views import to_mermaid
from swarmlog.control.graph import workflow_graph
from swarmlog.rendering.svg import graph_svg


def row(task_id: str, status: str = "succeeded", parent: str | None = None) -> dict[str, Any]:
    return {"task_id": task_id, "capability": "check", "status": status, "parent_task_id": parent}


# A supervisor workflow revised once: step a (kept from version 1, accepted on its second
# attempt), b (failed under version 1, dropped), b2 (new in version 2, which delegated a
# subtask), c (not run yet), and the synthesis.
REVISED = Plan(
    version=2,
    planned_by="wf1--plan2",
    steps=[
        PlanStep(id="a", capability="check"),
        PlanStep(id="b2", capability="check"),
        PlanStep(id="c", capability="check", depends_on=["a", "b2"]),
    ],
)
ROWS = [
    row("wf1--plan1"),
    row("wf1-a"),
    row("wf1-a--review"),
    row("wf1-a--r2"),
    row("wf1-a--r2--review"),
    row("wf1-b", "escalated"),
    row("wf1--plan2"),
    row("wf1-b2--v2", "running"),
    row("wf1-b2--v2--review", "offered"),
    row("wf1-b2--v2-d1", parent="wf1-b2--v2"),
    row("wf1--synthesis", "offered"),
]


def test_every_task_of_the_workflow_is_a_node_joined_to_what_it_came_from() -> None:
    nodes, edges = workflow_graph("wf1", REVISED, ROWS)
    assert [(n.id, n.kind, n.step, n.status) for n in nodes] == [
        ("wf1--plan1", "plan", None, "succeeded"),
        ("wf1-a", "step", "a", "succeeded"),
        ("wf1-a--review", "review", "a", "succeeded"),
        ("wf1-a--r2", "retry", "a", "succeeded"),
        ("wf1-a--r2--review", "review", "a", "succeeded"),
        ("wf1-b", "step", "b", "escalated"),
        ("wf1--plan2", "plan", None, "succeeded"),
        ("wf1-b2--v2", "step", "b2", "running"),
        ("wf1-b2--v2--review", "review", "b2", "offered"),
        ("wf1-b2--v2-d1", "subtask", None, "succeeded"),
        ("wf1--synthesis", "synthesis", None, "offered"),
        ("wf1-c--v2", "step", "c", "pending"),  # the task it will be, under version 2
    ]
    assert edges == [
        ("wf1--plan2", "wf1-b2--v2"),  # planned in version 2 by that request
        ("wf1-a--r2", "wf1-c--v2"),  # a dependency: from its last attempt
        ("wf1-b2--v2", "wf1-c--v2"),
        ("wf1-c--v2", "wf1--synthesis"),  # from what nothing depends on
        ("wf1-a", "wf1-a--review"),
        ("wf1-a", "wf1-a--r2"),
        ("wf1-a--r2", "wf1-a--r2--review"),
        ("wf1--plan1", "wf1--plan2"),
        ("wf1-b2--v2", "wf1-b2--v2--review"),
        ("wf1-b2--v2", "wf1-b2--v2-d1"),
    ]
    # The Mermaid and the SVG draw them all, each task once, each edge once.
    shown: list[dict[str, Any]] = [{"id": n.id, "capability": n.capability, "status": n.status}
                                   for n in nodes]  # fmt: skip
    mermaid = to_mermaid(shown, [list(e) for e in edges])
    assert all(f'["{n.id}<br/>' in mermaid for n in nodes)
    assert mermaid.count(" --> ") == len(edges)
    assert 't3["wf1-a--r2<br/>check: succeeded"]' in mermaid
    assert "t3 --> t4" in mermaid  # the retry to its review, by place: no "-" in a Mermaid id
    svg = graph_svg(shown, [list(e) for e in edges])
    assert svg.count("<rect") == len(nodes)
    assert svg.count("<line") == len(edges)


def test_a_step_retried_under_a_new_version_follows_its_last_try_and_pending_steps_chain() -> None:
    plan = Plan(
        version=2,
        planned_by="wf1--plan2",
        steps=[PlanStep(id="a", capability="x"), PlanStep(id="b", capability="x",
                                                          depends_on=["a"])],
    )  # fmt: skip
    nodes, edges = workflow_graph("wf1", plan, [row("wf1-a", "failed"), row("wf1-a--v2")])
    assert [n.id for n in nodes] == ["wf1-a", "wf1-a--v2", "wf1-b--v2"]
    assert edges == [
        ("wf1-a--v2", "wf1-b--v2"),  # (no edge from wf1--plan2: it is not in the rows)
        ("wf1-a", "wf1-a--v2"),  # the same step, tried again under the revised plan
    ]
    # No plan (a swarm's posted work, a plan that does not decode): the rows and their parents.
    nodes, edges = workflow_graph("sw", None, [row("sw-t1"), row("t9", parent="sw-t1")])
    assert [(n.id, n.kind) for n in nodes] == [("sw-t1", "step"), ("t9", "subtask")]
    assert edges == [("sw-t1", "t9")]
