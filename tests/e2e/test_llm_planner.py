"""The supervisor pattern planned by the ready LLM planner (``swarmlog:LLMPlanner``) on the
offline model, with worker daemons on a real server: its plan comes from a journaled model call
with structured output, passes the supervisor's checks and runs."""

from __future__ import annotations

import json

import pytest
from clikit import Cli, start_agents

pytestmark = pytest.mark.e2e


def test_a_supervisor_workflow_planned_by_the_llm_planner_succeeds(cli: Cli) -> None:
    start_agents(cli, "swarmlog:LLMPlanner")
    start_agents(cli, "tests.e2e.picky:Picky")
    out = cli(
        "submit",
        "supervisor",
        "--goal",
        "check the text",
        "--data",
        '{"text": "fine"}',
        "--wait",
        "--json",
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    done = json.loads(out.stdout)
    assert done["status"] == "succeeded", done
    # offline, the plan is the schema's minimal instance: one step with the one work capability
    assert done["result"]["outputs"] == {"x": {"checked": {"text": "fine"}}}
    wf = done["workflow_id"]
    planned = cli.rows(
        "SELECT t.status, a.role, m.status AS call, m.model FROM tasks t"
        " JOIN agents a ON t.completed_by = a.agent_id"
        " JOIN model_calls m ON m.task_id = t.task_id"
        f" WHERE t.task_id = '{wf}--plan1'"
    )
    assert planned == [
        {"status": "succeeded", "role": "llm-planner", "call": "ok", "model": "offline-large"}
    ]
    plan = cli.rows(f"SELECT plan FROM workflows WHERE workflow_id = '{wf}'")
    assert json.loads(plan[0]["plan"])["steps"] == [{"id": "x", "capability": "check"}]
