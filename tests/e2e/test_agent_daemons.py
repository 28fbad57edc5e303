"""`swarmlog agent start|ps|logs|stop`: replicas as daemons sharing a role's work."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from clikit import Cli

from swarmlog.schemas.payloads import TaskOffered
from waiting import wait_until

pytestmark = pytest.mark.e2e


def test_replicas_share_the_work_and_stop_cleanly(cli: Cli) -> None:
    started = cli("agent", "start", "examples.echo:Echo", "--replicas", "3", "--detach")
    assert started.returncode == 0, started.stderr
    ps = json.loads(cli("agent", "ps", "--json").stdout)["agents"]
    names = sorted(a["name"] for a in ps)
    assert names == ["conductor-1", "echo-1", "echo-2", "echo-3", "router-1", "watchdog-1"]
    pids = [a["pid"] for a in ps]
    # Each daemon lives in a session of its own: the terminal that started it can go away.
    assert all(os.getsid(pid) != os.getsid(0) for pid in pids)
    again = cli("agent", "start", "examples.echo:Echo", "--replicas", "4", "--detach")
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already runs") == 3
    assert cli("agent", "stop", "echo-4").returncode == 0
    assert "echo-4" not in cli("agent", "ps", "--json").stdout
    tasks = 12
    # Offered by capability: the router (started by `up`) assigns them to the echo role. Each
    # takes 200 ms, so a replica busy with one leaves the next to the others.
    cli.submit_payloads(
        [
            TaskOffered(
                task_id=f"t{i}", capability="text", input={"text": f"hi {i}", "work_ms": 200}
            )
            for i in range(tasks)
        ]
    )

    def done() -> bool:
        out = cli("query", "SELECT count(*) AS n FROM tasks WHERE status = 'succeeded'", "--json")
        return bool(out.returncode == 0 and json.loads(out.stdout)["rows"][0]["n"] == tasks)

    wait_until(done, 30)
    spread = json.loads(cli("query", "SELECT DISTINCT completed_by FROM tasks", "--json").stdout)[
        "rows"
    ]
    assert len(spread) >= 2, spread  # work is shared over replicas
    outputs = json.loads(
        cli("query", "SELECT output FROM tasks WHERE task_id = 't3'", "--json").stdout
    )
    assert json.loads(outputs["rows"][0]["output"])["echo"] == "HI 3"
    assigned = cli("query", "SELECT DISTINCT assigned_by, role FROM tasks", "--json").stdout
    assert json.loads(assigned)["rows"] == [{"assigned_by": "router-1", "role": "echo"}]
    assert cli("agent", "logs", "echo-1").returncode == 0  # its log exists
    assert cli("agent", "logs", "nobody").returncode == 2

    stopped = cli("agent", "stop", "--all")
    assert stopped.returncode == 0, stopped.stderr

    def gone() -> bool:
        alive = 0
        for pid in pids:
            try:
                os.kill(pid, 0)
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
                alive += state not in ("Z", "X")
            except (ProcessLookupError, FileNotFoundError):
                pass
        return alive == 0

    wait_until(gone, 15)
    assert json.loads(cli("agent", "ps", "--json").stdout)["agents"] == []


def test_start_reports_a_replica_that_cannot_come_up(cli: Cli) -> None:
    broken = cli("agent", "start", "tests.e2e.picky:Broken", "--detach")
    assert broken.returncode != 0
    assert "broken-1 exited while starting; see its log" in broken.stderr
    assert "this agent refuses to start" in cli("agent", "logs", "broken-1").stdout
