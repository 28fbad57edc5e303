"""Attack 1: a reply subject is not checked against publish permissions, so a hostile agent
points the server's answer to one of its own allowed requests at the JetStream API (deleting the
stream, its consumers, the kill-switch bucket). No agent login lives in the account that owns the
streams, so no reply of theirs can reach that account's API."""

from __future__ import annotations

import json

import pytest
from clikit import Cli
from hostile import attack

pytestmark = pytest.mark.e2e

STREAM = "SWARMLOG_DEFAULT"
TARGETS = [
    f"$JS.API.STREAM.DELETE.{STREAM}",
    "$JS.API.STREAM.DELETE.KV_SWARMLOG_DEFAULT_FLAGS",
    "$JS.API.STREAM.DELETE.OBJ_SWARMLOG_DEFAULT_SNAPSHOTS",
    f"$JS.API.CONSUMER.DELETE.{STREAM}.default-router",
    f"$JS.API.STREAM.PURGE.{STREAM}",
]

REPLY_ATTACK = """
async def main(me):
    from swarmlog.bus.queues import queue_names
    targets = json.loads(sys.argv[1]) if len(sys.argv) > 1 else TARGETS
    nc = await me.connect()
    api = me.login.api_prefix or "$JS.API"
    queue = queue_names(me.namespace, "echo", me.agent_id)[0]
    for target in targets:
        # An allowed request (a no-wait pull of its own queue), answered onto the target.
        await nc.publish(
            f"{api}.CONSUMER.MSG.NEXT.SWARMLOG_DEFAULT.{queue}",
            json.dumps({"batch": 1, "no_wait": True}).encode(),
            reply=target,
        )
        # And the same through the query service, whose JSON answer lands on the target.
        await nc.publish("_swarmlog.default.rpc.query", b'{"sql": "select 1"}', reply=target)
    await nc.flush()
    await asyncio.sleep(1.0)  # the server's answers are on their way; the test checks after
    await nc.close()
    return me.errors
"""


def test_a_reply_subject_cannot_reach_the_stream_accounts_api(cli: Cli) -> None:
    provisioned = cli("agent", "provision", "examples.echo:Echo")  # its queues exist
    assert provisioned.returncode == 0, provisioned.stderr
    before = cli("status", "--json")
    assert before.returncode == 0, before.stderr
    code = f"TARGETS = {TARGETS!r}\n" + REPLY_ATTACK
    attack(cli, "echo-1", code)

    status = cli("status", "--json")
    assert status.returncode == 0, status.stderr
    after = json.loads(status.stdout)
    assert after["stream_last_seq"] >= json.loads(before.stdout)["stream_last_seq"]
    streams = cli("query", "select count(*) as n from events", "--json")
    assert streams.returncode == 0, streams.stderr
    # The stream, the router's queue and the kill-switch bucket are all still there and work.
    assert cli("kill", "echo-1", "--reason", "test").returncode == 0
    audit = cli("audit", "verify", "--json")
    assert json.loads(audit.stdout)["events_checked"] >= after["stream_last_seq"]
