"""A poison message: an authentic, signed event whose JSON field holds what JSON cannot (a map
key that is nil or a boolean, a MessagePack extension). MessagePack carries it, so it passed
every check, and the projector stopped at it when it stored the field as JSON, again at every
restart: one internal agent could halt every projection, and `audit verify` with it.

Now it is ``malformed`` at the stateless check, for writers (nothing seals it) and readers alike:
run as a hostile process against a real server, the event is quarantined and the projector goes
on."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from clikit import Cli, running
from hostile import attack

from swarmlog.schemas.payloads import TaskAssignment
from waiting import wait_until

pytestmark = pytest.mark.e2e

POISON = """
async def main(me):
    import os, time
    import msgspec
    from swarmlog.bus.subjects import subject_for
    from swarmlog.schemas.codec import signed_data
    from swarmlog.schemas.envelope import Envelope
    from swarmlog.schemas.ids import new_event_id
    from swarmlog.schemas.payloads import TaskOffered
    from swarmlog.schemas.signing import EVENT_DOMAIN, event_hash

    nc = await me.connect()
    identity = me.identity
    head, seqs = "", []
    poisons = [
        {None: 1},
        {True: "yes"},
        {"nested": [{"deeper": {False: 0}}]},
        {"ext": msgspec.msgpack.Ext(7, b"x")},
    ]
    for i, value in enumerate(poisons):
        now = time.time_ns()
        envelope = Envelope(
            id=new_event_id(now, os.urandom(10)),
            sender=me.agent_id,
            signer=identity.public_key,
            sender_seq=i + 1,
            prev_hash=head,
            occurred_at=now,
            payload=TaskOffered(task_id=f"t-poison-{i}", capability="text", input=value),
        )
        # Sealed by hand: swarmlog's own sealing refuses such a payload.
        body = msgspec.msgpack.encode(envelope)
        data = signed_data(body, identity.sign(EVENT_DOMAIN, body))
        ack = await nc.request(subject_for(me.namespace, envelope), data, timeout=10)
        seqs.append(json.loads(ack.data)["seq"])
        head = event_hash(body)
    await nc.close()
    return seqs
"""


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    with running(tmp_path_factory.mktemp("poison") / "data") as cli:
        assert cli("keys", "issue", "writer", "--agent-id", "mallory-1").returncode == 0
        yield cli


def test_a_poison_message_is_quarantined_and_the_projector_goes_on(system: Cli) -> None:
    cli = system
    seqs = attack(cli, "mallory-1", POISON)
    assert len(seqs) == 4
    # An honest event after them is folded: the projector did not stop at the poison.
    cli.submit([TaskAssignment(task_id="after", role="echo", input={"text": "x"})])
    wait_until(lambda: cli.rows("SELECT 1 FROM tasks WHERE task_id = 'after'") != [], 20)
    rows = cli.rows("SELECT seq, reason FROM quarantine ORDER BY seq")
    assert [(r["seq"], r["reason"]) for r in rows] == [(s, "malformed") for s in seqs]
    assert cli.rows("SELECT task_id FROM tasks WHERE task_id LIKE 't-poison-%'") == []
    # The audit reads past them too, and reports each one.
    audit = cli("audit", "verify", "--json")
    assert audit.returncode == 1, audit.stderr
    report = json.loads(audit.stdout)
    assert [(r["seq"], r["reason"]) for r in report["rejected"]] == [(s, "malformed") for s in seqs]
    details = [r["detail"] for r in report["rejected"]]
    assert all("holds what JSON cannot" in d for d in details[:3]), details
    assert "extension type 7 is not allowed" in details[3], details
