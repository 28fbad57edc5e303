"""`swarmlog submit`: pipelines, debates and swarms run on detached workers; a failing stage is
named. (What happens when things go wrong mid-workflow: test_workflow_recovery.py.)"""

from __future__ import annotations

import json

import pytest
from clikit import Cli, start_agents

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def echo_and_picky(module_cli: Cli) -> Cli:
    """The module's system with two echo replicas and a picky one."""
    start_agents(module_cli, "examples.echo:Echo", 2)
    start_agents(module_cli, "tests.e2e.picky:Picky")
    return module_cli


def test_a_pipeline_and_a_debate_run_to_their_results(echo_and_picky: Cli) -> None:
    cli = echo_and_picky
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


def test_a_failing_stage_fails_the_workflow_and_is_named(echo_and_picky: Cli) -> None:
    cli = echo_and_picky
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


def test_a_swarm_workflow_has_no_coordinator_and_ends_when_no_task_is_open(cli: Cli) -> None:
    start_agents(cli, "tests.e2e.picky:Splitter", 2)
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
