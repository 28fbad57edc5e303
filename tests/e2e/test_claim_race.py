"""Swarm mode across processes: N >= 8 separate claimant processes race for one offered task;
exactly one claim is stored, the others see the conflict."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from clikit import ROOT, Cli

from swarmlog.control.issuing import issue_agent
from swarmlog.schemas.payloads import TaskOffered
from waiting import wait_until

pytestmark = pytest.mark.e2e

CLAIMANTS = 10
SCRIPT = Path(__file__).with_name("claimant.py")


def test_exactly_one_of_many_processes_wins_the_claim(cli: Cli) -> None:
    agents = [f"claimer-{i}" for i in range(CLAIMANTS)]
    for agent_id in agents:
        asyncio.run(issue_agent(cli.settings(), "claimer", agent_id=agent_id, capabilities=["x"]))
    cli.submit_payloads([TaskOffered(task_id="contested", capability="x", mode="swarm")])
    procs = [
        subprocess.Popen(
            [sys.executable, str(SCRIPT), agent_id, "contested"],
            env=cli.env,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for agent_id in agents
    ]
    try:
        for proc in procs:  # every claimant connected and holds its chain head
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        for proc in procs:  # the start gun, as close together as the OS allows
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outcomes = []
        for proc in procs:
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0
            outcomes.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            proc.kill()
    winners = [o["agent"] for o in outcomes if o["won"]]
    assert len(winners) == 1, outcomes
    losers = [o["reason"] for o in outcomes if not o["won"]]
    assert len(losers) == CLAIMANTS - 1
    assert all("claimed it first" in r or "past its offer" in r for r in losers), losers

    def projected() -> bool:
        rows = cli.rows("SELECT status, claimed_by FROM tasks WHERE task_id = 'contested'")
        return rows == [{"status": "claimed", "claimed_by": winners[0]}]

    wait_until(projected, 30)
    claims = cli.rows("SELECT count(*) AS n FROM events WHERE type = 'task_claimed'")
    assert claims == [{"n": 1}]
    assert cli.rows("SELECT count(*) AS n FROM quarantine") == [{"n": 0}]
