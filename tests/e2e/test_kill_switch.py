"""`swarmlog kill` / `revive` against detached replicas: no work after the kill, events a killed
agent still emits are quarantined, and the whole-system switch stops the swarm within 1 s."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from clikit import Cli

from swarmlog.control.system import open_log
from swarmlog.schemas.codec import decode_envelope, decode_signed
from swarmlog.schemas.envelope import Envelope
from swarmlog.schemas.payloads import AgentKilled, TaskAssignment
from waiting import wait_until

pytestmark = pytest.mark.e2e

WORKERS = ["echo-1", "echo-2"]


@pytest.fixture
def echo_pair(cli: Cli) -> Cli:
    """Two detached replicas of the example agent on top of `cli`."""
    started = cli("agent", "start", "examples.echo:Echo", "--replicas", "2", "--detach")
    assert started.returncode == 0, started.stderr
    return cli


def tasks(prefix: str, n: int, work_ms: int = 20) -> list[TaskAssignment]:
    return [
        TaskAssignment(
            task_id=f"{prefix}{i}", role="echo", input={"text": prefix, "work_ms": work_ms}
        )
        for i in range(n)
    ]


def log_envelopes(cli: Cli) -> list[Envelope]:
    """Everything on the stream, read raw: what was emitted, applied or not."""

    async def go() -> list[Envelope]:
        out = []
        async with open_log(cli.settings()) as log:
            async for batch in log.read():
                out += [decode_envelope(decode_signed(m.data).body) for m in batch]
        return out

    return asyncio.run(go())


def succeeded(cli: Cli, prefix: str) -> int:
    rows = cli.rows(
        f"SELECT count(*) AS n FROM tasks WHERE status = 'succeeded' AND task_id LIKE '{prefix}%'"
    )
    return int(rows[0]["n"])


class Feeder(threading.Thread):
    """Keeps submitting work, one task every 20 ms, until stopped."""

    def __init__(self, cli: Cli) -> None:
        super().__init__(daemon=True)
        self.cli = cli
        self.halt = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.halt.wait(0.02):  # a pace, not a synchronisation
            self.cli.submit(tasks(f"feed{i}-", 1))
            i += 1


def test_killing_one_agent_then_all_of_them(echo_pair: Cli) -> None:
    cli = echo_pair
    # Both replicas take work.
    cli.submit(tasks("warm", 20))
    wait_until(lambda: succeeded(cli, "warm") == 20, 30)

    # One agent killed: it starts nothing afterwards, the other does all the work.
    killed = cli("kill", "echo-1", "--reason", "misbehaving", "--json")
    assert killed.returncode == 0, killed.stderr
    assert json.loads(killed.stdout)["agents"] == ["echo-1"]
    cli.submit(tasks("solo", 10, work_ms=5))
    wait_until(lambda: succeeded(cli, "solo") == 10, 30)
    done_by = {
        r["completed_by"]
        for r in cli.rows("SELECT completed_by FROM tasks WHERE task_id LIKE 'solo%'")
    }
    assert done_by == {"echo-2"}

    # What the killed agent still publishes is quarantined with reason "killed".
    late = cli(
        "events",
        "publish",
        "agent_heartbeat",
        "--as",
        "echo-1",
        "--payload",
        '{"agent_id": "echo-1"}',
    )
    assert late.returncode == 0, late.stderr
    wait_until(
        lambda: (
            cli.rows(
                "SELECT count(*) AS n FROM quarantine WHERE sender = 'echo-1' AND reason = 'killed'"
            )[0]["n"]
            >= 1
        ),
        30,
    )
    status = cli.rows("SELECT status FROM agents WHERE agent_id = 'echo-1'")
    assert status == [{"status": "killed"}]

    # The whole swarm, while work keeps arriving.
    feeder = Feeder(cli)
    feeder.start()
    try:
        wait_until(lambda: succeeded(cli, "feed") >= 5, 30)
        everyone = cli("kill", "--all", "--reason", "drill")
        assert everyone.returncode == 0, everyone.stderr
        time.sleep(1.5)  # keep feeding work for a while after the kill: nobody may take it
    finally:
        feeder.halt.set()
        feeder.join()

    envelopes = log_envelopes(cli)
    kill_at = next(
        e.occurred_at
        for e in envelopes
        if isinstance(e.payload, AgentKilled) and e.payload.agent_id == "*"
    )
    after = [e for e in envelopes if e.sender in WORKERS and e.occurred_at > kill_at]
    stopped_within = max((e.occurred_at - kill_at for e in after), default=0) / 1e9
    print(f"kill --all: last agent event {stopped_within * 1000:.0f} ms after the kill")
    assert stopped_within < 1.0, [(e.sender, e.type) for e in after]

    # The log and the projections stay intact and queryable.
    assert cli.rows("SELECT count(*) AS n FROM events")[0]["n"] > 0
    audit = cli("audit", "verify", "--json")
    assert audit.returncode == 1  # it ran, and found the quarantined events
    # The late heartbeat, and whatever a killed agent had in flight as the kill landed: every
    # rejection is a killed agent's event, and each is quarantined as such.
    rejected = json.loads(audit.stdout)["rejected"]
    assert rejected
    assert {r["reason"] for r in rejected} == {"killed"}, rejected
    quarantined = cli.rows("SELECT DISTINCT sender, reason FROM quarantine")
    # `kill --all` covers the built-in roles too: an event of theirs in flight as it landed is
    # quarantined like a worker's.
    agents = [r["agent_id"] for r in cli.rows("SELECT agent_id FROM agents")]
    assert set(WORKERS) <= set(agents)
    assert {(r["sender"], r["reason"]) for r in quarantined} <= {(a, "killed") for a in agents}

    # Work queued while the swarm was stopped waits for it: revived, the swarm does all of it.
    total = int(cli.rows("SELECT count(*) AS n FROM tasks WHERE task_id LIKE 'feed%'")[0]["n"])
    assert succeeded(cli, "feed") < total
    assert cli("revive", "--all").returncode == 0
    assert cli("revive", "echo-1").returncode == 0
    wait_until(lambda: succeeded(cli, "feed") == total, 30)
