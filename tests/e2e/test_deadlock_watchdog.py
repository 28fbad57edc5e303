"""Deadlocks with real daemons: two agents that ask each other for clarification wait forever
until the watchdog (started by `up`) finds the cycle and breaks it."""

from __future__ import annotations

import json

import pytest
from clikit import Cli

from swarmlog.schemas.payloads import TaskAssignment
from waiting import wait_until

pytestmark = pytest.mark.e2e

INTERVAL_S = 2  # the watchdog's default interval


def test_two_agents_asking_each_other_deadlock_and_the_watchdog_breaks_it(cli: Cli) -> None:
    started = cli("agent", "start", "tests.e2e.picky:Stubborn", "--replicas", "2", "--detach")
    assert started.returncode == 0, started.stderr
    plan = {
        "steps": [
            {"id": "a", "capability": "ask", "input": "apples"},
            {"id": "b", "capability": "ask", "input": "pears"},
        ]
    }
    done = cli(
        "submit", "custom", "--input", json.dumps({"plan": plan}), "--wait", "--json", timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    wf = json.loads(done.stdout)["workflow_id"]
    report = json.loads(cli("deadlocks", "--json").stdout)
    assert report["current"] == []  # broken
    (past,) = report["past"]
    assert past["cycle"][0] == past["cycle"][-1]
    assert sorted(past["cycle"][:2]) == ["stubborn-1", "stubborn-2"]
    assert past["action"] == "broken"
    assert past["reported_by"] == "watchdog-1"
    asked = cli.rows(
        "SELECT occurred_at, payload FROM events WHERE type = 'clarification_request'"
        f" AND workflow_id = '{wf}' ORDER BY seq"
    )
    formed = asked[1]  # the second question closed the cycle
    assert json.loads(formed["payload"])["request_id"] == past["victim"]  # the youngest wait
    detected_after_s = (past["occurred_at"] - formed["occurred_at"]) / 1e9
    assert 0 <= detected_after_s < 2 * INTERVAL_S + 2  # at its next look or the one after
    tasks = cli.rows(f"SELECT task_id, attempt, status FROM tasks WHERE workflow_id = '{wf}'")
    attempts = {t["task_id"]: t["attempt"] for t in tasks}
    assert {t["status"] for t in tasks} == {"succeeded"}
    assert attempts[past["task_id"]] == 2  # the victim's task gave up its wait and ran again
    assert sorted(attempts.values()) == [1, 2]  # the other one was never disturbed


def test_work_nobody_takes_is_escalated_as_stalled(cli: Cli) -> None:
    cli.env["SWARMLOG_STALL_AFTER"] = "2"
    assert cli("agent", "stop", "watchdog-1").returncode == 0
    assert cli("agent", "start", "watchdog", "--detach").returncode == 0
    cli.submit_payloads([TaskAssignment(task_id="lonely", role="ghost")])  # a role with no one

    def escalated() -> bool:
        rows = cli.rows("SELECT status FROM tasks WHERE task_id = 'lonely'")
        return rows == [{"status": "escalated"}]

    wait_until(escalated, 30)
    (row,) = cli.rows("SELECT reason FROM escalations WHERE task_id = 'lonely'")
    assert row["reason"].startswith("stalled: no progress for")
    assert row["reason"].endswith("while assigned")
