"""Attacks 2, 6 and 8: the projector's services answer only onto the asker's own reply, know who
asks and limit each caller; a revoked key stays out at the broker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from clikit import Cli, running
from hostile import Running, attack

from swarmlog.bus.jetstream import connect
from swarmlog.control.keystore import KeyStore
from swarmlog.control.system import open_log, resolve_url
from swarmlog.errors import BusError

pytestmark = pytest.mark.e2e

FLAGS = "$KV.SWARMLOG_DEFAULT_FLAGS"
# Where the query service's JSON answer was written on behalf of the attacker.
TARGETS = [
    f"{FLAGS}.role.echo",  # a kill switch: echo's replicas would be dropped from the broker
    "$KV.SWARMLOG_DEFAULT_CACHE.planted",
    "swarmlog.default.operator.ctl.credential_issued",  # under the operator's prefix
    "swarmlog.default.echo-1.task.t1.result",  # under another agent's prefix
]

REPLIES = """
async def main(me):
    nc = await me.connect()
    for target in TARGETS:
        await nc.publish("_swarmlog.default.rpc.query", b'{"sql": "select 1 AS x"}', reply=target)
    # Its own request is still answered, onto its own reply.
    answer = await nc.request("_swarmlog.default.rpc.query", b'{"sql": "select 7 AS x"}', timeout=5)
    await nc.flush()
    await nc.close()
    return json.loads(answer.data)
"""

FLOOD = """
async def main(me):
    nc = await me.connect()
    slow = json.dumps({"sql": "SELECT count(*) AS n FROM range(1000000000000)"}).encode()
    asked = [
        asyncio.ensure_future(nc.request("_swarmlog.default.rpc.query", slow, timeout=30))
        for _ in range(12)
    ]
    answers = []
    for done in asyncio.as_completed(asked):
        reply = json.loads((await done).data)
        answers.append(reply.get("error", {}).get("code", "rows"))
        if len(answers) == 1:
            print(json.dumps({"first": answers[0]}), flush=True)
    await nc.close()
    return answers
"""


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    """One running system for the module (each `up` costs seconds): echo-1 and a hostile
    spy-1 (an echo replica the attacker controls; never started) provisioned."""
    with running(tmp_path_factory.mktemp("services") / "data") as cli:
        for target in ("examples.echo:Echo", "examples.echo:Echo --name spy"):
            out = cli("agent", "provision", *target.split())
            assert out.returncode == 0, out.stderr
        yield cli


def _stored_subjects(cli: Cli, after: int) -> list[str]:
    async def go() -> list[str]:
        async with open_log(cli.settings()) as log:
            return [m.subject async for batch in log.read(after + 1) for m in batch]

    return asyncio.run(go())


def _last_seq(cli: Cli) -> int:
    status = cli("status", "--json")
    assert status.returncode == 0, status.stderr
    return int(json.loads(status.stdout)["stream_last_seq"])


def test_a_service_answers_only_onto_the_askers_own_reply(system: Cli) -> None:
    cli = system
    before = _last_seq(cli)
    answer = attack(cli, "spy-1", f"TARGETS = {TARGETS!r}\n" + REPLIES)
    assert answer["rows"] == [[7]]

    async def flags() -> dict[str, bytes]:
        async with open_log(cli.settings()) as log:
            return await (await log.flags()).items()

    assert asyncio.run(flags()) == {}  # no kill switch was written
    assert "# echo-1" in (cli.data / "nats" / "authorization.conf").read_text()
    stored = _stored_subjects(cli, before)
    assert not set(stored) & set(TARGETS), stored
    audit = cli("audit", "verify", "--json")
    assert json.loads(audit.stdout)["rejected"] == [], audit.stdout


def test_one_callers_slow_queries_hold_up_no_one_else(system: Cli) -> None:
    cli = system
    started = cli("agent", "start", "examples.echo:Echo", "--detach")
    assert started.returncode == 0, started.stderr

    flood = Running(cli, "spy-1", FLOOD)
    assert flood.said("first") == "SWL413"  # refused at once: the flood is on
    # While it runs, the system's own work goes on: a workflow through the router, the
    # conductor and echo (which all query the projector), and the operator's queries.
    done = cli("submit", "pipeline", "--stage", "text", "--data", "hi", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "succeeded"
    assert cli.rows("SELECT count(*) AS n FROM agents")[0]["n"] >= 4
    answers = flood.result(90)
    # At most 8 of one caller's queries are taken at once (2 running, 6 waiting); the rest are
    # told the service is busy, and every one taken is stopped at the agents' 3 s budget.
    assert answers.count("SWL413") == 4, answers
    assert answers.count("SWL414") == 8, answers
    # Nobody died of it: every built-in role and echo still run.
    running = {a["name"] for a in json.loads(cli("agent", "ps", "--json").stdout)["agents"]}
    assert {"router-1", "conductor-1", "watchdog-1", "echo-1"} <= running, running


def test_a_revoked_key_is_refused_at_the_broker_for_good(system: Cli) -> None:
    cli = system
    key = cli.rows("SELECT public_key AS k FROM agents WHERE agent_id = 'echo-1'")[0]["k"]
    assert cli("kill", "echo-1", "--reason", "stolen").returncode == 0
    payload = json.dumps({"public_key": key, "reason": "stolen"})
    assert cli("events", "publish", "credential_revoked", "--payload", payload).returncode == 0
    assert cli("revive", "echo-1").returncode == 0
    assert cli("revive", "--all").returncode == 0
    settings = cli.settings()
    login = KeyStore(settings.keys_dir).login("echo-1")
    with pytest.raises(BusError, match="refused the login of echo-1"):
        asyncio.run(connect(resolve_url(settings), login=login, timeout=3))
    # And it stays out when the server starts again.
    assert cli("down").returncode == 0
    assert cli("up", "--detach").returncode == 0
    with pytest.raises(BusError, match="refused the login of echo-1"):
        asyncio.run(connect(resolve_url(settings), login=login, timeout=3))
