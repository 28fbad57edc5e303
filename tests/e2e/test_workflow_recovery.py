"""`swarmlog submit` when things go wrong: a conductor killed mid-workflow is restarted and finishes
it without redoing completed steps; an escalated step waits for a human; a workflow over its
token budget is stopped. (Apart from test_workflows.py so the two run on different workers.)"""

from __future__ import annotations

import json
import os
import signal

import pytest
from clikit import STARTS, Cli, start_agents

from waiting import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def echo_and_picky(module_cli: Cli) -> Cli:
    """The module's system with an echo and a picky replica (its conductor is killed and
    started again by the first test: it is whole again afterwards)."""
    start_agents(module_cli, "examples.echo:Echo")
    start_agents(module_cli, "tests.e2e.picky:Picky")
    return module_cli


def test_a_conductor_killed_mid_workflow_is_restarted_and_finishes_it(echo_and_picky: Cli) -> None:
    cli = echo_and_picky
    sent = cli(
        "submit",
        "pipeline",
        "--stage",
        "check",
        "--stage",
        "check",
        "--stage",
        "check",
        "--data",
        '{"work_ms": 1500}',
        "--json",
    )
    assert sent.returncode == 0, sent.stderr
    wf = json.loads(sent.stdout)["workflow_id"]

    def first_done() -> bool:
        rows = cli.rows(f"SELECT status FROM tasks WHERE task_id = '{wf}-s1'")
        return rows == [{"status": "succeeded"}]

    wait_until(first_done, 60)
    ps = json.loads(cli("agent", "ps", "--json").stdout)["agents"]
    conductor = next(a["pid"] for a in ps if a["name"] == "conductor-1")
    os.kill(conductor, signal.SIGKILL)
    start_agents(cli, "conductor")  # a fresh process; the log is all it knows

    def finished() -> bool:
        rows = cli.rows(f"SELECT status FROM workflows WHERE workflow_id = '{wf}'")
        return rows == [{"status": "succeeded"}]

    wait_until(finished, 90)
    started = cli.rows(
        "SELECT split_part(subject, '.', -2) AS task, count(*) AS n FROM events"
        f" WHERE {STARTS} AND subject LIKE '%.task.{wf}-%' GROUP BY 1 ORDER BY 1"
    )
    assert started == [{"task": f"{wf}-s{i}", "n": 1} for i in (1, 2, 3)]  # nothing redone


def test_an_escalated_step_waits_for_a_human_and_the_workflow_completes(
    echo_and_picky: Cli,
) -> None:
    cli = echo_and_picky
    sent = cli(
        "submit", "pipeline", "--stage", "text", "--stage", "check", "--data", "bad", "--json"
    )
    assert sent.returncode == 0, sent.stderr
    wf = json.loads(sent.stdout)["workflow_id"]

    def escalated() -> list[dict[str, object]]:
        out = cli("escalations", "list", "--json")
        rows: list[dict[str, object]] = json.loads(out.stdout)["escalations"]
        return [r for r in rows if r["workflow_id"] == wf]  # the module's system is shared

    wait_until(lambda: len(escalated()) == 1, 60)
    (open_one,) = escalated()
    escalation_id = str(open_one["escalation_id"])
    assert open_one["task_id"] == f"{wf}-s2"
    assert open_one["role"] == "picky"
    shown = json.loads(cli("escalations", "show", escalation_id, "--json").stdout)
    assert "rejected: the input is bad" in shown["escalation"]["error"]
    assert set(shown["options"]) == {"retry", "reassign", "answer", "cancel"}
    status = cli.rows(f"SELECT status FROM workflows WHERE workflow_id = '{wf}'")
    assert status == [{"status": "running"}]  # waiting for the human, not failed

    # The human hands the stage to the echo role, which can do it.
    resolved = cli("escalations", "resolve", escalation_id, "--reassign", "echo")
    assert resolved.returncode == 0, resolved.stderr

    def finished() -> bool:
        rows = cli.rows(f"SELECT status FROM workflows WHERE workflow_id = '{wf}'")
        return rows == [{"status": "succeeded"}]

    wait_until(finished, 60)
    assert escalated() == []
    again = cli("escalations", "resolve", escalation_id, "--retry")
    assert again.returncode == 2
    assert "resolved already" in again.stderr
    history = json.loads(cli("show", f"{wf}-s2", "--json").stdout)["history"]
    kinds = [h["type"] for h in history]
    assert "escalation_resolved" in kinds
    assert kinds[-1] == "result"


def test_a_workflow_over_its_token_budget_is_stopped(echo_and_picky: Cli) -> None:
    cli = echo_and_picky
    # Each echo stage spends len(text) + 1 tokens: 6 for "hello", so 3 stages need 18.
    out = cli(
        "submit",
        "pipeline",
        "--stage",
        "text",
        "--stage",
        "text",
        "--stage",
        "text",
        "--data",
        "hello",
        "--budget",
        "8",
        "--wait",
        "--json",
    )
    assert out.returncode == 1, out.stderr
    result = json.loads(out.stdout)
    assert result["status"] == "failed"
    assert result["result"]["error"] == "token budget exceeded"
    assert result["result"]["budget_tokens"] == 8
    wf = result["workflow_id"]
    budget = cli.rows(
        "SELECT used_tokens, hard_exceeded FROM budgets"
        f" WHERE scope = 'workflow' AND scope_id = '{wf}'"
    )
    assert budget[0]["hard_exceeded"] is True
    assert budget[0]["used_tokens"] >= 8
    stages = cli.rows(f"SELECT task_id FROM tasks WHERE workflow_id = '{wf}' ORDER BY 1")
    assert f"{wf}-s3" not in [s["task_id"] for s in stages]  # stopped before the last stage
    alerts = cli.rows(
        f"SELECT count(*) AS n FROM events WHERE type = 'budget_exceeded' AND workflow_id = '{wf}'"
    )
    assert alerts == [{"n": 1}]  # used jumps from 6 to 12: past both limits, one hard alert
    view = json.loads(cli("budgets", "--json").stdout)["budgets"]
    (shown,) = [b for b in view if b["scope_id"] == wf]
    assert shown["exceeded"] == "hard"
    assert shown["budget_tokens"] == 8
    assert shown["workflow_status"] == "failed"
