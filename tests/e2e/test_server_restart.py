"""The nats-server killed (SIGKILL) mid-workflow and started again by `up`: no event the server
acknowledged is lost, the daemons reconnect by themselves, and the workflow completes."""

from __future__ import annotations

import json
import os
import signal

import pytest
from clikit import Cli

from swarmlog.bus.server import EmbeddedServer
from waiting import wait_until

pytestmark = pytest.mark.e2e


def test_the_server_killed_mid_workflow_loses_nothing_and_the_workflow_completes(
    cli: Cli,
) -> None:
    assert cli("agent", "start", "tests.e2e.picky:Picky", "--detach").returncode == 0
    stages = [a for _ in range(3) for a in ("--stage", "check")]
    sent = cli("submit", "pipeline", *stages, "--data", '{"work_ms": 1500}', "--json")
    assert sent.returncode == 0, sent.stderr
    wf = json.loads(sent.stdout)["workflow_id"]

    def first_done() -> bool:
        rows = cli.rows(f"SELECT status FROM tasks WHERE task_id = '{wf}-s1'")
        return rows == [{"status": "succeeded"}]

    wait_until(first_done, 60)
    before = cli.rows("SELECT seq, id FROM events ORDER BY seq")
    server = EmbeddedServer.running(cli.settings().server_dir)
    assert server is not None
    os.kill(server.pid, signal.SIGKILL)
    up = cli("up", "--detach")  # the server again, on its old port; the daemons still run
    assert up.returncode == 0, up.stderr

    def finished() -> bool:
        out = cli("query", f"SELECT status FROM workflows WHERE workflow_id = '{wf}'", "--json")
        return out.returncode == 0 and json.loads(out.stdout)["rows"] == [{"status": "succeeded"}]

    wait_until(finished, 120)
    after = {r["seq"]: r["id"] for r in cli.rows("SELECT seq, id FROM events ORDER BY seq")}
    assert all(after.get(r["seq"]) == r["id"] for r in before)  # every stored event is still there
    started = cli.rows(
        "SELECT split_part(subject, '.', -2) AS task, count(*) AS n FROM events"
        f" WHERE type = 'result' AND workflow_id = '{wf}' GROUP BY 1 ORDER BY 1"
    )
    assert started == [{"task": f"{wf}-s{i}", "n": 1} for i in (1, 2, 3)]  # each stage once
    audit = cli("audit", "verify", "--json")
    assert audit.returncode == 0, audit.stdout
