"""The supervisor pattern with worker daemons on a real server: the example briefing (planned,
reviewed, synthesized; repeated from the result cache), plan checks, a revised plan after a
failed step, and a supervisor killed mid-workflow."""

from __future__ import annotations

import json
import os
import re
import signal
from typing import Any

import pytest
from clikit import ROOT, STARTS, Cli, start_agents

from waiting import wait_until

pytestmark = pytest.mark.e2e

DOCS = ROOT / "examples" / "docs"


def start(cli: Cli, *targets: str) -> None:
    for target in targets:
        start_agents(cli, target)


def supervise(cli: Cli, spec: dict[str, Any], *extra: str) -> dict[str, Any]:
    out = cli("submit", "supervisor", "--input", json.dumps(spec), *extra, "--json", timeout=120)
    assert out.returncode in (0, 1), out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def step(sid: str, text: str, *deps: str, work_ms: int = 0) -> dict[str, Any]:
    payload: dict[str, Any] = {"text": text}
    if work_ms:
        payload["work_ms"] = work_ms
    return {"id": sid, "capability": "check", "input": payload, "depends_on": list(deps)}


def test_the_example_briefing_is_planned_reviewed_synthesized_and_then_cached(cli: Cli) -> None:
    start(
        cli,
        "examples.report:Planner",
        "examples.report:Librarian",
        "examples.report:Summarizer",
        "examples.report:Editor",
    )
    spec = {
        "goal": "a briefing",
        "input": {"folder": str(DOCS)},
        "reviewer": "review",
        "synthesizer": "synthesize",
    }
    done = supervise(cli, spec, "--wait")
    assert done["status"] == "succeeded", done
    report = done["result"]["report"]
    titles = [p.read_text().splitlines()[0].lstrip("# ") for p in sorted(DOCS.glob("*.md"))]
    assert all(f"## {t}" in report for t in titles)
    wf = done["workflow_id"]
    by_role = cli.rows(
        "SELECT a.role, count(*) AS n FROM tasks t JOIN agents a ON t.completed_by = a.agent_id"
        f" WHERE t.workflow_id = '{wf}' AND t.status = 'succeeded' GROUP BY 1 ORDER BY 1"
    )
    # Results come from the workers: 4 reads + keywords, 4 summaries, 9 reviews + synthesis.
    assert by_role == [
        {"role": "editor", "n": 10},
        {"role": "librarian", "n": 5},
        {"role": "planner", "n": 1},
        {"role": "summarizer", "n": 4},
    ]
    # The graph draws every task: the planner's, the steps, the 9 reviews and the synthesis.
    mermaid = cli("show", wf, "--mermaid").stdout
    labels = re.findall(r'\["([^<"]+)<br/>', mermaid)
    assert len(labels) == 20, mermaid
    assert f"{wf}--plan1" in labels
    assert f"{wf}--synthesis" in labels
    assert sum(label.endswith("--review") for label in labels) == 9
    assert mermaid.count(" --> ") >= 19  # every task but the first comes from another
    again = supervise(cli, spec, "--wait")
    assert again["result"] == done["result"]
    cached = cli.rows(
        "SELECT count(*) AS n FROM events WHERE type = 'result'"
        f" AND workflow_id = '{again['workflow_id']}' AND payload LIKE '%\"cached\":true%'"
    )
    assert cached == [{"n": 4}]  # the four summaries, visible as cached in their events


@pytest.fixture(scope="module")
def puppets(module_cli: Cli) -> Cli:
    """The module's system with a picky worker and a planner that plans what it is told."""
    start(module_cli, "tests.e2e.picky:Picky", "tests.e2e.picky:PuppetPlanner")
    return module_cli


def test_plans_with_a_cycle_or_an_unknown_capability_are_refused_with_the_reason(
    puppets: Cli,
) -> None:
    cli = puppets
    cyclic = {"steps": [step("a", "x", "b"), step("b", "y", "a")]}
    done = supervise(cli, {"goal": "g", "max_revisions": 0, "input": {"plan": cyclic}}, "--wait")
    assert done["status"] == "failed"
    assert done["result"]["reason"] == "cycle"
    assert "a -> b -> a" in done["result"]["detail"]
    unknown = {"steps": [{"id": "t", "capability": "teleport"}]}
    spec = {"goal": "g", "max_revisions": 1, "input": {"plan": unknown}}
    done = supervise(cli, spec, "--wait")
    assert done["status"] == "failed"
    assert done["result"]["reason"] == "unknown_capability"
    assert "'teleport', which no agent has" in done["result"]["detail"]
    asked = cli.rows(
        f"SELECT count(*) AS n FROM tasks WHERE workflow_id = '{done['workflow_id']}'"
        " AND task_id LIKE '%--plan%'"
    )
    assert asked == [{"n": 2}]  # sent back once with the reason, then given up
    fixed = {**spec, "input": {"plan": unknown, "fixed": {"steps": [step("t", "fine")]}}}
    assert supervise(cli, fixed, "--wait")["status"] == "succeeded"


def test_a_failed_subtask_gets_a_revised_plan_that_completes(puppets: Cli) -> None:
    cli = puppets
    first = {"steps": [step("a", "fine"), step("b", "bad input"), step("c", "then", "a", "b")]}
    revision = {"steps": [step("b2", "good input"), step("c", "then", "a", "b2")]}
    done = supervise(cli, {"goal": "g", "input": {"plan": first, "revision": revision}}, "--wait")
    assert done["status"] == "succeeded", done
    wf = done["workflow_id"]
    assert sorted(done["result"]["outputs"]) == ["a", "b2", "c"]
    tasks = {
        r["task_id"].removeprefix(f"{wf}-"): r["status"]
        for r in cli.rows(f"SELECT task_id, status FROM tasks WHERE workflow_id = '{wf}'")
    }
    assert tasks == {
        "-plan1": "succeeded",
        "a": "succeeded",
        "b": "escalated",  # picky refuses "bad" for good
        "-plan2": "succeeded",
        "b2--v2": "succeeded",
        "c--v2": "succeeded",
    }
    revised = cli.rows(f"SELECT plan_version FROM workflows WHERE workflow_id = '{wf}'")
    assert revised == [{"plan_version": 2}]
    # The plan went around b's escalation and the workflow finished: it closed with it, and
    # the desk no longer lists it.
    closed = cli.rows(f"SELECT status, resolution FROM escalations WHERE workflow_id = '{wf}'")
    assert closed == [{"status": "closed", "resolution": "workflow succeeded"}]
    listed = json.loads(cli("escalations", "list", "--json").stdout)["escalations"]
    assert [e for e in listed if e["workflow_id"] == wf] == []
    started = cli.rows(
        f"SELECT count(*) AS n FROM events WHERE {STARTS} AND subject LIKE '%.task.{wf}-a.%'"
    )
    assert started == [{"n": 1}]  # the completed step was kept, not redone


def test_a_supervisor_killed_mid_workflow_continues_from_the_log(puppets: Cli) -> None:
    cli = puppets
    chain = {
        "steps": [
            step("s1", "one", work_ms=1500),
            step("s2", "two", "s1", work_ms=1500),
            step("s3", "three", "s2", work_ms=1500),
        ]
    }
    wf = supervise(cli, {"goal": "g", "input": {"plan": chain}})["workflow_id"]

    def first_done() -> bool:
        return cli.rows(f"SELECT status FROM tasks WHERE task_id = '{wf}-s1'") == [
            {"status": "succeeded"}
        ]

    wait_until(first_done, 60)
    ps = json.loads(cli("agent", "ps", "--json").stdout)["agents"]
    os.kill(next(a["pid"] for a in ps if a["name"] == "conductor-1"), signal.SIGKILL)
    start(cli, "conductor")  # a fresh process: the log is all it knows

    def finished() -> bool:
        rows = cli.rows(f"SELECT status FROM workflows WHERE workflow_id = '{wf}'")
        return rows == [{"status": "succeeded"}]

    wait_until(finished, 90)
    started = cli.rows(
        "SELECT split_part(subject, '.', -2) AS task, count(*) AS n FROM events"
        f" WHERE {STARTS} AND workflow_id = '{wf}' GROUP BY 1 ORDER BY 1"
    )
    expected = [f"{wf}--plan1", f"{wf}-s1", f"{wf}-s2", f"{wf}-s3"]
    assert started == [{"task": t, "n": 1} for t in expected]  # nothing planned or run twice
