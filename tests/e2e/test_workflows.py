"""`swarmlog submit`: pipelines and debates run by the conductor on detached workers; a failing
stage is named; a conductor killed mid-workflow is restarted and finishes it without redoing
completed steps."""

from __future__ import annotations

import json
import os
import signal

import pytest
from clikit import Cli

from waiting import wait_until

pytestmark = pytest.mark.e2e


def start(cli: Cli, target: str, replicas: int = 1) -> None:
    out = cli("agent", "start", target, "--replicas", str(replicas), "--detach")
    assert out.returncode == 0, out.stderr


def test_a_pipeline_and_a_debate_run_to_their_results(cli: Cli) -> None:
    start(cli, "examples.echo:Echo", 2)
    start(cli, "tests.e2e.picky:Picky")
    done = cli(
        "submit",
        "pipeline",
        "--stage",
        "text",
        "--stage",
        "text",
        "--stage",
        "check",
        "--data",
        "hello",
        "--wait",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["status"] == "succeeded"
    assert out["result"]["checked"]["echo"] == "HELLO"  # each stage's output is the next's input
    wf = out["workflow_id"]
    steps = cli.rows(
        f"SELECT task_id, status, completed_by FROM tasks WHERE workflow_id = '{wf}' ORDER BY 1"
    )
    assert [s["status"] for s in steps] == ["succeeded"] * 3
    assert steps[2]["completed_by"] == "picky-1"  # the stage went to the capable role

    debate = cli(
        "submit",
        "debate",
        "--question",
        "tabs or spaces?",
        "--debaters",
        "3",
        "--capability",
        "text",
        "--judge",
        "check",
        "--wait",
        "--json",
    )
    assert debate.returncode == 0, debate.stderr
    verdict = json.loads(debate.stdout)["result"]["checked"]
    assert verdict["question"] == "tabs or spaces?"
    assert sorted(verdict["answers"]) == ["d1", "d2", "d3"]  # the judge saw every answer


def test_a_failing_stage_fails_the_workflow_and_is_named(cli: Cli) -> None:
    start(cli, "examples.echo:Echo")
    start(cli, "tests.e2e.picky:Picky")
    failed = cli(
        "submit",
        "pipeline",
        "--stage",
        "text",
        "--stage",
        "check",
        "--data",
        "bad data",
        "--fail-fast",
        "--wait",
        "--json",
    )
    assert failed.returncode == 1
    out = json.loads(failed.stdout)
    assert out["status"] == "failed"
    assert out["result"]["failed_step"] == "s2"
    assert out["result"]["capability"] == "check"
    refused = cli("submit", "pipeline", "--data", "x")
    assert refused.returncode == 2
    assert "stages" in refused.stderr


def test_a_conductor_killed_mid_workflow_is_restarted_and_finishes_it(cli: Cli) -> None:
    start(cli, "tests.e2e.picky:Picky")
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
    start(cli, "conductor")  # a fresh process; the log is all it knows

    def finished() -> bool:
        rows = cli.rows(f"SELECT status FROM workflows WHERE workflow_id = '{wf}'")
        return rows == [{"status": "succeeded"}]

    wait_until(finished, 90)
    started = cli.rows(
        "SELECT split_part(subject, '.', -2) AS task, count(*) AS n FROM events"
        f" WHERE type = 'task_started' AND subject LIKE '%.task.{wf}-%' GROUP BY 1 ORDER BY 1"
    )
    assert started == [{"task": f"{wf}-s{i}", "n": 1} for i in (1, 2, 3)]  # nothing redone


def test_an_escalated_step_waits_for_a_human_and_the_workflow_completes(cli: Cli) -> None:
    start(cli, "examples.echo:Echo")
    start(cli, "tests.e2e.picky:Picky")
    sent = cli(
        "submit", "pipeline", "--stage", "text", "--stage", "check", "--data", "bad", "--json"
    )
    assert sent.returncode == 0, sent.stderr
    wf = json.loads(sent.stdout)["workflow_id"]

    def escalated() -> list[dict[str, object]]:
        out = cli("escalations", "list", "--json")
        rows: list[dict[str, object]] = json.loads(out.stdout)["escalations"]
        return rows

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


def test_a_workflow_over_its_token_budget_is_stopped(cli: Cli) -> None:
    start(cli, "examples.echo:Echo")
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


def test_a_swarm_workflow_has_no_coordinator_and_ends_when_no_task_is_open(cli: Cli) -> None:
    start(cli, "tests.e2e.picky:Splitter", 2)
    spec = {"tasks": [{"id": "r", "capability": "split", "input": {"items": [1, 2, 3, 4]}}]}
    out = cli("submit", "swarm", "--input", json.dumps(spec), "--wait", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    wf = result["workflow_id"]
    leaves = sorted(v["leaf"] for v in result["result"].values() if "leaf" in v)
    assert leaves == [1, 2, 3, 4]  # work posted by agents was done too
    claims = cli.rows(
        "SELECT split_part(subject, '.', -2) AS task, count(*) AS n FROM events"
        f" WHERE type = 'task_claimed' AND workflow_id = '{wf}' GROUP BY 1"
    )
    assert len(claims) == 7  # r, ra, rb, raa, rab, rba, rbb
    assert {c["n"] for c in claims} == {1}  # each claimed exactly once
