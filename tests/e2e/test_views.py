"""`tasks`, `workflows`, `agents` and `show ID` over a live projection."""

from __future__ import annotations

import json
import re

import pytest
from clikit import Cli

from swarmlog.schemas.payloads import WorkflowSubmitted
from waiting import wait_until

pytestmark = pytest.mark.e2e

PLAN = {
    "steps": [
        {"id": "fetch", "capability": "text"},
        {"id": "draft", "capability": "text", "depends_on": ["fetch"]},
    ]
}


def test_views_show_workflows_tasks_agents_and_a_task_graph(cli: Cli) -> None:
    assert cli("agent", "start", "examples.echo:Echo", "--detach").returncode == 0
    cli.submit_payloads(
        [WorkflowSubmitted(pattern="custom", input={"plan": PLAN, "input": "go"})],
        workflow_id="wf1",
    )

    def done() -> bool:
        out = cli("tasks", "--workflow", "wf1", "--status", "succeeded", "--json")
        return out.returncode == 0 and len(json.loads(out.stdout)["tasks"]) == 2

    wait_until(done, 30)
    workflows = json.loads(cli("workflows", "--json").stdout)["workflows"]
    assert [(w["workflow_id"], w["pattern"], w["plan_version"]) for w in workflows] == [
        ("wf1", "custom", 1)
    ]
    agents = json.loads(cli("agents", "--json").stdout)["agents"]
    assert {(a["agent_id"], a["role"], a["status"]) for a in agents} == {
        ("echo-1", "echo", "registered"),
        ("router-1", "router", "registered"),
        ("conductor-1", "conductor", "registered"),
        ("watchdog-1", "watchdog", "registered"),
    }

    shown = json.loads(cli("show", "wf1", "--json").stdout)
    assert shown["nodes"] == [
        {"id": "wf1-fetch", "capability": "text", "status": "succeeded", "kind": "step",
         "step": "fetch"},
        {"id": "wf1-draft", "capability": "text", "status": "succeeded", "kind": "step",
         "step": "draft"},
    ]  # fmt: skip
    assert shown["edges"] == [["wf1-fetch", "wf1-draft"]]
    svg = cli.data.parent / "wf1.svg"
    mermaid = cli("show", "wf1", "--mermaid", "--svg", str(svg)).stdout
    assert mermaid.startswith("flowchart TD")
    assert 't0["wf1-fetch<br/>text: succeeded"]' in mermaid
    assert "t0 --> t1" in mermaid
    assert svg.read_text().startswith("<svg")
    assert ">wf1-fetch</text>" in svg.read_text()
    cli.env["COLUMNS"] = "200"  # rich folds what does not fit its terminal's width
    table = cli("workflows").stdout  # for people: times as ISO-8601 UTC, how long ago
    assert re.search(r"20\d\d-\d\d-\d\dT\d\d:\d\d:\d\dZ \(\d+ (ms|s|min) ago\)", table), table

    history = json.loads(cli("show", "wf1-fetch", "--json").stdout)["history"]
    # (Its task_started is in its result when it ended at once: see test_client.)
    assert [h["type"] for h in history if h["type"] != "task_started"] == [
        "task_offered",
        "task_assignment",
        "result",
    ]

    missing = cli("show", "nope")
    assert missing.returncode == 2
    assert "no workflow or task nope" in missing.stderr
    bad = cli("tasks", "--workflow", "x'; DROP TABLE tasks; --")
    assert bad.returncode == 2
