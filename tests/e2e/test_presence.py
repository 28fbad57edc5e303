"""Heartbeats out of the audit trail, on a running system: idle replicas write nothing to the log
while their presence stays fresh; a replica killed with SIGKILL is reported lost; one that
freezes is lost and, thawed, seen again; one stopped says so and is not lost.

One system for the module, every process beating every 0.2 s and stale after 3 s (by
configuration, so the window is seconds, not minutes).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
from clikit import Cli, running

from swarmlog.agents.presence import PresenceReader
from swarmlog.control.system import open_log, open_projections
from waiting import wait_until

pytestmark = pytest.mark.e2e

FAST = {
    "SWARMLOG_PRESENCE_EVERY": "0.2",
    "SWARMLOG_STALE_AFTER": "3",
    "SWARMLOG_WATCHDOG_INTERVAL": "0.5",
}
ECHOES = ("echo-1", "echo-2", "echo-3")
BUILTIN = ("conductor-1", "router-1", "watchdog-1")


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    with pytest.MonkeyPatch.context() as env:
        for name, value in FAST.items():  # the built-in roles `up` starts inherit them
            env.setenv(name, value)
        with running(tmp_path_factory.mktemp("presence") / "data") as cli:
            cli.env |= FAST
            started = cli("agent", "start", "examples.echo:Echo", "--replicas", "3", "--detach")
            assert started.returncode == 0, started.stderr
            yield cli


def agents(cli: Cli) -> dict[str, dict[str, Any]]:
    out = cli("agents", "--json")
    assert out.returncode == 0, out.stderr
    return {a["agent_id"]: a for a in json.loads(out.stdout)["agents"]}


def beats(cli: Cli) -> dict[str, int]:
    """Each agent's count of presence puts, as its verified value in the bucket says."""

    async def read() -> dict[str, int]:
        settings = cli.settings()
        async with open_projections(settings) as projections, open_log(settings) as log:
            keys = await projections.query("SELECT agent_id, public_key FROM agents")
            reader = PresenceReader(log, settings.namespace)
            seen = await reader.read_keys({k["agent_id"]: k["public_key"] for k in keys})
        return {agent_id: p.seq for agent_id, p in seen.items()}

    return asyncio.run(read())


def last_seq(cli: Cli) -> int:
    async def read() -> int:
        async with open_log(cli.settings()) as log:
            return await log.last_seq()

    return asyncio.run(read())


def pids(cli: Cli) -> dict[str, int]:
    return {a["name"]: a["pid"] for a in json.loads(cli("agent", "ps", "--json").stdout)["agents"]}


def test_idle_replicas_write_nothing_to_the_log_while_their_presence_stays_fresh(
    fast: Cli,
) -> None:
    everyone = (*BUILTIN, *ECHOES)
    wait_until(lambda: set(everyone) <= set(beats(fast)), 30)
    start, at_start = last_seq(fast), beats(fast)
    # Ten beats of every replica (two seconds at 0.2 s; a day at this rate would be 432,000
    # heartbeats of each on the log of old).
    wait_until(lambda: all(beats(fast)[a] >= at_start[a] + 10 for a in everyone), 30)
    print(f"{len(everyone)} idle replicas, 10 beats each: {last_seq(fast) - start} events")
    assert last_seq(fast) == start  # not one event meanwhile
    heartbeats = fast.rows("SELECT count(*) AS n FROM events WHERE type = 'agent_heartbeat'")
    assert heartbeats == [{"n": 0}]
    shown = agents(fast)
    for agent_id in everyone:
        assert shown[agent_id]["status"] == "registered", shown[agent_id]
        assert shown[agent_id]["presence"] == "fresh", shown[agent_id]
    assert shown["echo-1"]["capacity"] == 1  # its concurrency, as its presence says


def test_a_replica_killed_with_sigkill_is_reported_lost(fast: Cli) -> None:
    os.kill(pids(fast)["echo-3"], signal.SIGKILL)  # no agent_stopped, no clean-up: gone
    wait_until(lambda: agents(fast)["echo-3"]["status"] == "lost", 30)
    found = fast.rows(
        "SELECT sender, json_extract_string(payload, '$.agent_id') AS agent FROM events"
        " WHERE type = 'agent_lost'"
    )
    assert found == [{"sender": "watchdog-1", "agent": "echo-3"}]
    assert agents(fast)["echo-3"]["presence"] in ("stale", "")  # expired, or on its way out


def test_a_frozen_replica_is_lost_then_seen_again_and_a_stopped_one_is_not_lost(
    fast: Cli,
) -> None:
    frozen = pids(fast)["echo-2"]
    os.kill(frozen, signal.SIGSTOP)
    try:
        wait_until(lambda: agents(fast)["echo-2"]["status"] == "lost", 30)
        # `agent ps` says so too: its process is there, but it is lost.
        (row,) = [a for a in json.loads(fast("agent", "ps", "--json").stdout)["agents"]
                  if a["name"] == "echo-2"]  # fmt: skip
        assert (row["alive"], row["status"]) == (True, "lost"), row
    finally:
        os.kill(frozen, signal.SIGCONT)
    wait_until(lambda: agents(fast)["echo-2"]["status"] == "registered", 30)
    seen = fast.rows("SELECT sender FROM events WHERE type = 'agent_seen'")
    assert seen == [{"sender": "watchdog-1"}]

    assert fast("agent", "stop", "echo-1").returncode == 0
    wait_until(lambda: agents(fast)["echo-1"]["status"] == "stopped", 30)
    stopped = fast.rows(
        "SELECT type, json_extract_string(payload, '$.reason') AS reason FROM events"
        " WHERE sender = 'echo-1' ORDER BY seq DESC LIMIT 1"
    )
    assert stopped == [{"type": "agent_stopped", "reason": "stopped"}]
    assert agents(fast)["echo-1"]["presence"] == ""  # taken away, not left to expire
    lost = fast.rows(
        "SELECT json_extract_string(payload, '$.agent_id') AS agent FROM events"
        " WHERE type = 'agent_lost' ORDER BY seq"
    )
    assert lost == [{"agent": "echo-3"}, {"agent": "echo-2"}]  # never echo-1
