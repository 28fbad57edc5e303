"""Circuit breakers with real daemons: a role that keeps failing has its circuit opened by the
router, its work goes to the fallback role, and after the cool-down a probe closes it again once
the role has recovered; every change is an event."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from clikit import Cli

from swarmlog.schemas.payloads import TaskOffered
from waiting import wait_until

pytestmark = pytest.mark.e2e


def test_a_failing_role_opens_its_circuit_and_closes_it_when_it_recovers(
    cli: Cli, tmp_path: Path
) -> None:
    # The cool-down outlasts the few seconds between the circuit opening and the next task even
    # on a loaded machine: that task must meet the circuit open, not already half-open.
    cli.env |= {"SWARMLOG_BREAKER_FAILURES": "3", "SWARMLOG_BREAKER_COOLDOWN": "20"}
    assert cli("agent", "stop", "router-1").returncode == 0
    for target in ("router", "tests.e2e.picky:Flaky", "tests.e2e.picky:Backup"):
        out = cli("agent", "start", target, "--detach")
        assert out.returncode == 0, out.stderr
    sick = tmp_path / "sick"
    sick.touch()
    sent = 0

    def run_one() -> dict[str, str]:
        nonlocal sent
        sent += 1
        task = f"c{sent}"
        cli.submit_payloads(
            [TaskOffered(task_id=task, capability="convert", input={"sick_file": str(sick)})]
        )

        def done() -> bool:
            return cli.rows(f"SELECT status FROM tasks WHERE task_id = '{task}'") == [
                {"status": "succeeded"}
            ]

        wait_until(done, 30)
        (row,) = cli.rows(f"SELECT task_id, output FROM tasks WHERE task_id = '{task}'")
        return {"task": task, "by": json.loads(row["output"])["by"]}

    def circuit(kind: str) -> list[dict[str, object]]:
        return cli.rows(f"SELECT seq, payload FROM events WHERE type = '{kind}' ORDER BY seq")

    def flaky_failures() -> int:
        (row,) = cli.rows(
            "SELECT count(*) AS n FROM events e JOIN agents a ON a.agent_id = e.sender"
            " WHERE e.type = 'error' AND a.role = 'flaky'"
        )
        return int(row["n"])

    # Flaky fails each task it gets; its fallback does the work. Until the router's snapshot of
    # the agents shows flaky (it is at most a second old), a task may go straight to backup, so
    # count flaky's failures rather than the tasks sent.
    while flaky_failures() < 3:
        assert sent < 10, f"flaky failed {flaky_failures()} of {sent} tasks"
        assert run_one()["by"] == "backup"
    wait_until(lambda: len(circuit("circuit_opened")) == 1, 30)
    while_open = run_one()
    assert while_open["by"] == "backup"
    errors = cli.rows(
        "SELECT count(*) AS n FROM events WHERE type = 'error'"
        f" AND subject LIKE '%.task.{while_open['task']}.%'"
    )
    assert errors == [{"n": 0}]  # routed around flaky, not through it
    sick.unlink()  # flaky recovers
    probed = [run_one()]
    deadline = time.monotonic() + 20 + 60  # the cool-down, and then some
    while probed[-1]["by"] != "flaky":  # tasks go to backup until the cool-down lets a probe by
        assert time.monotonic() < deadline, probed
        probed.append(run_one())
    wait_until(lambda: len(circuit("circuit_closed")) == 1, 30)
    assert run_one()["by"] == "flaky"  # the cheap tier again
    (opened,), (half,), (closed,) = (
        circuit("circuit_opened"),
        circuit("circuit_half_opened"),
        circuit("circuit_closed"),
    )
    assert opened["seq"] < half["seq"] < closed["seq"]  # type: ignore[operator]
    for change in (opened, half, closed):
        assert json.loads(str(change["payload"]))["circuit"] == "role:flaky"
    assert json.loads(str(opened["payload"]))["reason"] == "3 failures in a row"
    breakers = cli.rows("SELECT circuit, state FROM breakers")
    assert breakers == [{"circuit": "role:flaky", "state": "closed"}]
