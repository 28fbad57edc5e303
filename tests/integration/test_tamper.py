"""Forged, tampered and garbage messages written straight onto the stream with plain nats-py:
none is applied, each is quarantined with its reason, and `audit verify` reports each one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nats
import nats.js.errors
import pytest
from swarmkit import Swarm, seed

from swarmlog.agents.publisher import Publisher
from swarmlog.bus.subjects import stream_name, subject_for
from swarmlog.projections.projector import Projector
from swarmlog.projections.query import run_query
from swarmlog.projections.store import ProjectionStore
from swarmlog.schemas.codec import (
    MAX_EVENT_BYTES,
    decode_envelope,
    decode_signed,
    encode,
    signed_data,
)
from swarmlog.schemas.payloads import Result, TaskAssignment
from swarmlog.schemas.signing import EVENT_DOMAIN, ChainHead, Identity, event_hash, seal

pytestmark = pytest.mark.integration


def audit(swarm: Swarm) -> tuple[int, dict[str, object]]:
    """`swarmlog audit verify --json` in a subprocess, as a user runs it."""
    settings = swarm.settings
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "swarmlog", "--data-dir", str(settings.data_dir)),
            *("--nats-url", str(settings.nats_url), "--namespace", settings.namespace),
            *("audit", "verify", "--json"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.stderr == "", proc.stderr
    return proc.returncode, json.loads(proc.stdout)


async def refold(swarm: Swarm, path: Path) -> tuple[ProjectionStore, dict[int, str], set[int]]:
    """The stream folded from its start into a new projection at ``path``: the projection, what
    it quarantined (seq: reason) and the sequences it applied."""
    store = ProjectionStore(path)
    projector = Projector(
        swarm.log, store, namespace=swarm.namespace, operator_key=swarm.operator.public_key
    )
    await projector.run(follow=False)
    projector.close()
    cursor = store.cursor()
    quarantined = dict(
        (int(s), str(r)) for s, r in run_query(cursor, "SELECT seq, reason FROM quarantine").rows
    )
    applied = {int(r[0]) for r in run_query(cursor, "SELECT seq FROM events").rows}
    return store, quarantined, applied


async def test_clean_log_audits_clean(swarm: Swarm) -> None:
    await swarm.publisher(swarm.operator).publish(TaskAssignment(task_id="t1", role="worker"))
    await swarm.publisher(swarm.alice).publish(Result(task_id="t1", output="ok"))
    code, report = audit(swarm)
    assert code == 0
    assert report["rejected"] == []
    assert report["chain_breaks"] == []
    assert report["events_checked"] == report["valid"] == 4  # 2 credentials + 2 events


async def test_tampered_messages_are_quarantined_and_audited(swarm: Swarm, tmp_path: Path) -> None:
    ns = swarm.namespace
    # The tasks are the worker role's (alice's): only their holder answers them.
    await swarm.publisher(swarm.operator).publish_many(
        [TaskAssignment(task_id=t, role="worker") for t in ("t1", "t2")]
    )
    alice = swarm.publisher(swarm.alice)
    good = await alice.publish(Result(task_id="t1", output="genuine"))
    stored = await swarm.log.last_message(good.subject)
    assert stored is not None
    signed = decode_signed(stored.data)
    envelope = decode_envelope(signed.body)

    # Forgeries, each built the way an attacker with stream access could.
    bad_sig = signed_data(signed.body, bytes(64))
    altered_body = signed.body.replace(b"genuine", b"GENUINE")
    assert altered_body != signed.body
    altered = signed_data(altered_body, signed.signature)
    # Bob's key signs an event that names alice as its sender.
    impersonation = seal(
        Identity("alice", swarm.bob.signing_key),
        ChainHead(envelope.sender_seq, event_hash(signed.body)),
        Result(task_id="t1", output="as alice"),
        now_ns=envelope.occurred_at + 1,
        entropy=os.urandom(10),
    )
    # Alice's own key, but the id of an event already applied and a different body.
    same_id = seal(
        swarm.alice,
        ChainHead(envelope.sender_seq, event_hash(signed.body)),
        Result(task_id="t1", output="second body"),
        now_ns=envelope.occurred_at + 2,
        entropy=os.urandom(10),
    )
    same_id_env = same_id.envelope.__class__(
        **{
            **{f: getattr(same_id.envelope, f) for f in same_id.envelope.__struct_fields__},
            "id": envelope.id,
        }
    )
    same_id_body = encode(same_id_env)
    same_id_data = signed_data(same_id_body, swarm.alice.sign(EVENT_DOMAIN, same_id_body))
    stranger = Identity.from_seed("mallory", seed("mallory"))
    unknown = seal(
        stranger, ChainHead(), Result(task_id="t1", output="x"), now_ns=1, entropy=bytes(10)
    )
    oversized = seal(
        swarm.alice,
        ChainHead(envelope.sender_seq, event_hash(signed.body)),
        Result(task_id="t1", output="x" * (MAX_EVENT_BYTES + 10)),
        now_ns=envelope.occurred_at + 3,
        entropy=os.urandom(10),
    )

    attacks: list[tuple[str, str, bytes]] = [
        ("bad_signature", good.subject, bad_sig),
        ("bad_signature", good.subject, altered),
        ("wrong_sender", subject_for(ns, impersonation.envelope), impersonation.data),
        ("replayed", good.subject, stored.data),  # exact copy under a new dedupe id
        ("duplicate_id", subject_for(ns, same_id_env), same_id_data),
        ("unknown_signer", subject_for(ns, unknown.envelope), unknown.data),
        ("malformed", good.subject, b"\x00\x01 not msgpack at all \xff"),
        ("malformed", good.subject, stored.data[: len(stored.data) // 2]),
        ("oversized", subject_for(ns, oversized.envelope), oversized.data),
    ]
    nc = await nats.connect(str(swarm.settings.nats_url))
    js = nc.jetstream()
    expected: dict[int, str] = {}
    try:
        for i, (reason, subject, data) in enumerate(attacks):
            ack = await js.publish(subject, data, headers={"Nats-Msg-Id": f"attack-{i}"})
            expected[ack.seq] = reason
        # The stream is append-only: the server refuses to delete or purge.
        with pytest.raises(nats.js.errors.APIError):
            await js.delete_msg(stream_name(ns), good.seq)
        with pytest.raises(nats.js.errors.APIError):
            await js.purge_stream(stream_name(ns))
    finally:
        await nc.close()
    # A genuine event after the attacks still chains and applies.
    after = await Publisher(swarm.log, swarm.alice, ns).publish(
        Result(task_id="t2", output="later")
    )

    store, quarantined, applied = await refold(swarm, tmp_path / "p.duckdb")
    cursor = store.cursor()
    assert quarantined == expected
    assert not applied & set(expected), "a tampered message was applied"
    assert {good.seq, after.seq} <= applied
    outputs = run_query(cursor, "SELECT task_id, output FROM tasks ORDER BY 1").rows
    assert outputs == [["t1", '"genuine"'], ["t2", '"later"']]
    store.close()

    code, report = audit(swarm)
    assert code == 1
    assert {(r["seq"], r["reason"]) for r in report["rejected"]} == set(expected.items())


async def test_a_batch_member_tampered_with_is_quarantined_alone(
    swarm: Swarm, tmp_path: Path
) -> None:
    """Events signed in one batch (one signature over their tree) verify one by one: a member
    altered, moved to another index or stripped of its proof, written onto the stream, is a bad
    signature, and the genuine members are all applied."""
    tasks = [f"t{i}" for i in range(1, 5)]
    await swarm.publisher(swarm.operator).publish_many(
        [TaskAssignment(task_id=t, role="worker") for t in tasks]
    )
    alice = swarm.publisher(swarm.alice)
    genuine = await alice.publish_batch([(Result(task_id=t, output="genuine"), {}) for t in tasks])
    members = []
    for published in genuine:
        stored = await swarm.log.message_at(published.seq)
        assert stored is not None
        members.append(decode_signed(stored.data))
    assert all(m.proof is not None and m.proof.size == 4 for m in members)
    assert len({m.signature for m in members}) == 1  # one signature for the four

    second, third = members[1], members[2]
    assert second.proof is not None
    assert third.proof is not None
    altered = signed_data(
        second.body.replace(b"genuine", b"GENUINE"), second.signature, second.proof
    )
    moved = signed_data(second.body, second.signature, third.proof)
    stripped = signed_data(second.body, second.signature)
    attacks = [altered, moved, stripped]
    nc = await nats.connect(str(swarm.settings.nats_url))
    js = nc.jetstream()
    expected: dict[int, str] = {}
    try:
        for i, data in enumerate(attacks):
            ack = await js.publish(genuine[1].subject, data, headers={"Nats-Msg-Id": f"b-{i}"})
            expected[ack.seq] = "bad_signature"
    finally:
        await nc.close()

    store, quarantined, applied = await refold(swarm, tmp_path / "p.duckdb")
    cursor = store.cursor()
    assert quarantined == expected
    assert {p.seq for p in genuine} <= applied
    outputs = run_query(cursor, "SELECT DISTINCT output FROM tasks").rows
    assert outputs == [['"genuine"']]
    store.close()
    code, report = audit(swarm)
    assert code == 1
    assert {(r["seq"], r["reason"]) for r in report["rejected"]} == set(expected.items())
