"""An event id repeated across a projector restart. The projector answers "is this id new?"
from the ids it committed lately, exact from a horizon on; an id names only its millisecond.
A horizon one nanosecond after the latest stored event let an agent that dated an event at
the start of a millisecond (within the server's tolerance ahead) repeat its id a nanosecond
later, after the next restart: the copy was applied, and a replay from scratch disagreed.

Run as a hostile process against a real server: the repeat is quarantined ``duplicate_id``
after the restart, and the live projection and a replay agree."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import pytest
from clikit import Cli, running
from hostile import attack

from swarmlog.schemas.ids import new_event_id
from waiting import wait_until

pytestmark = pytest.mark.e2e

# Both events are sealed by hand with the id and time the attacker chooses: the first dated a
# minute ahead at the start of a millisecond (the latest in storage), the second the same id a
# nanosecond later, in the same millisecond.
PUBLISH = """
async def main(me):
    import json, os, time
    import msgspec
    from swarmlog.bus.subjects import subject_for
    from swarmlog.schemas.codec import signed_data
    from swarmlog.schemas.envelope import Envelope
    from swarmlog.schemas.payloads import TaskOffered
    from swarmlog.schemas.signing import EVENT_DOMAIN, event_hash

    plan = json.loads(os.environ["ATTACK_PLAN"])
    envelope = Envelope(
        id=plan["id"],
        sender=me.agent_id,
        signer=me.identity.public_key,
        sender_seq=plan["sender_seq"],
        prev_hash=plan["prev_hash"],
        occurred_at=plan["occurred_at"],
        payload=TaskOffered(task_id=plan["task_id"], capability="text"),
    )
    body = msgspec.msgpack.encode(envelope)
    data = signed_data(body, me.identity.sign(EVENT_DOMAIN, body))
    nc = await me.connect()
    ack = await nc.request(subject_for(me.namespace, envelope), data, timeout=10)
    await nc.close()
    return {"seq": json.loads(ack.data)["seq"], "hash": event_hash(body)}
"""


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    with running(tmp_path_factory.mktemp("idrepeat") / "data") as cli:
        assert cli("keys", "issue", "writer", "--agent-id", "mallory-1").returncode == 0
        yield cli


def _publish(cli: Cli, monkeypatch: pytest.MonkeyPatch, **plan: object) -> dict[str, object]:
    monkeypatch.setenv("ATTACK_PLAN", json.dumps(plan))
    result: dict[str, object] = attack(cli, "mallory-1", PUBLISH)
    return result


def test_an_id_repeated_after_a_restart_is_quarantined(
    system: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = system
    ms = 1_000_000
    at = (time.time_ns() + 60 * 10**9) // ms * ms  # a minute ahead, at a millisecond's start
    event_id = new_event_id(at, os.urandom(10))
    first = _publish(
        cli, monkeypatch, id=event_id, sender_seq=1, prev_hash="", occurred_at=at, task_id="t-a"
    )
    wait_until(lambda: cli.rows("SELECT 1 FROM tasks WHERE task_id = 't-a'") != [], 20)
    # A new projector: it starts knowing no ids, its horizon after the latest stored event.
    assert cli("down").returncode == 0
    assert cli("up", "--detach").returncode == 0
    second = _publish(
        cli,
        monkeypatch,
        id=event_id,
        sender_seq=2,
        prev_hash=first["hash"],
        occurred_at=at + 1,
        task_id="t-b",
    )
    seq = second["seq"]
    judged = (
        f"SELECT seq FROM events WHERE seq = {seq}"
        f" UNION ALL SELECT seq FROM quarantine WHERE seq = {seq}"
    )
    wait_until(lambda: cli.rows(judged) != [], 20)
    rows = cli.rows(f"SELECT reason FROM quarantine WHERE seq = {seq}")
    assert rows == [{"reason": "duplicate_id"}]
    assert cli.rows("SELECT task_id FROM tasks WHERE task_id = 't-b'") == []
    # And a replay from the first event judges it the same way: the two agree.
    check = json.loads(cli("replay", "--check", "--json").stdout)
    assert check["matches"] is True
    assert check["state_hash"] == check["live_state_hash"]
