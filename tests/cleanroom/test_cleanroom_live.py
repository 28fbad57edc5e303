"""The clean-room verifier against ``swarmlog audit verify --json`` on a live stream: a real
nats-server whose stream holds forged, replayed, bit-flipped, truncated, not-permitted, killed,
revoked, expired and chain-breaking messages beside genuine ones. Both judge every message the
same way, report the same chain breaks and the same stream chain.

swarmlog writes the stream (that is the system under test); the clean-room side reads it back
with plain nats-py as docs/protocol.md P-AUD-4 says (batched direct gets) and judges it with
``verifier.py``, which imports nothing of swarmlog."""

from __future__ import annotations

import calendar
import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import nats
import pytest
from verifier import StoredMessage, verify

from swarmlog.agents.publisher import Publisher
from swarmlog.bus.jetstream import JetStreamLog
from swarmlog.bus.subjects import stream_name, subject_for
from swarmlog.config import Settings
from swarmlog.control.keystore import KeyStore
from swarmlog.schemas.codec import decode_envelope, decode_signed, signed_data
from swarmlog.schemas.credentials import Credential
from swarmlog.schemas.payloads import (
    AgentKilled,
    CredentialRevoked,
    Payload,
    Result,
    TaskAssignment,
    TaskStarted,
)
from swarmlog.schemas.signing import ChainHead, Identity, event_hash, issue_credential, seal

pytestmark = pytest.mark.integration


# --- the clean-room side: reading the stream as P-AUD-4 says ---------------------------------


def stored_at_ns(text: str) -> int:
    """``Nats-Time-Stamp`` (RFC 3339 UTC, up to nine decimals) in whole nanoseconds."""
    whole, _, fraction = text.rstrip("Z").partition(".")
    seconds = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    return seconds * 1_000_000_000 + int((fraction + "000000000")[:9])


async def read_stream(url: str, namespace: str) -> list[StoredMessage]:
    """Every message of ``SWARMLOG_<NS>`` by batched direct gets, in stream order."""
    stream = "SWARMLOG_" + namespace.upper()
    nc = await nats.connect(url)
    try:
        info = json.loads((await nc.request(f"$JS.API.STREAM.INFO.{stream}", b"", 5)).data)
        last = info["state"]["last_seq"]
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        out: list[StoredMessage] = []
        seq = 1
        while seq <= last:
            request = {"seq": seq, "batch": 64, "max_bytes": 8_388_608}
            await nc.publish(f"$JS.API.DIRECT.GET.{stream}", json.dumps(request).encode(), inbox)
            while True:
                msg = await sub.next_msg(timeout=10)
                headers = msg.headers or {}
                if headers.get("Status") in ("204", "404"):
                    break
                assert "Status" not in headers, headers
                out.append(
                    StoredMessage(
                        int(headers["Nats-Sequence"]),
                        headers["Nats-Subject"],
                        msg.data,
                        stored_at_ns(headers["Nats-Time-Stamp"]),
                    )
                )
            seq = out[-1].seq + 1
        return [m for m in out if m.seq <= last]
    finally:
        await nc.close()


# --- the system under test: a stream written by swarmlog and by an attacker --------------------


def _seed(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


class Writer:
    """Genuine events through swarmlog's publisher, and crafted ones straight onto the stream
    (an attacker with stream access), each recorded with the verdict it must get."""

    def __init__(self, log: JetStreamLog, namespace: str, js: Any) -> None:
        self.log, self.namespace, self.js = log, namespace, js
        self.expected: dict[int, str] = {}  # seq -> reason, for the crafted messages
        self.heads: dict[str, ChainHead] = {}
        self._n = 0
        self.last: Any = None  # the stored message of the last genuine event

    async def genuine(self, identity: Identity, payload: Payload) -> int:
        published = await Publisher(self.log, identity, self.namespace).publish(payload)
        stored = await self.log.last_message(published.subject)
        assert stored is not None
        assert stored.seq == published.seq
        body = decode_signed(stored.data).body
        head = ChainHead(decode_envelope(body).sender_seq, event_hash(body))
        self.heads[identity.agent_id] = head
        self.last = stored
        return published.seq

    def craft(
        self, identity: Identity, payload: Payload, head: ChainHead | None = None
    ) -> tuple[str, bytes, ChainHead]:
        """A validly signed event on ``head`` (default: the sender's chain head)."""
        sealed = seal(
            identity,
            head if head is not None else self.heads.get(identity.agent_id, ChainHead()),
            payload,
            now_ns=time.time_ns(),
            entropy=os.urandom(10),
        )
        return subject_for(self.namespace, sealed.envelope), sealed.data, sealed.head

    async def raw(self, reason: str, subject: str, data: bytes) -> int:
        self._n += 1
        ack = await self.js.publish(subject, data, headers={"Nats-Msg-Id": f"raw-{self._n}"})
        if reason:
            self.expected[ack.seq] = reason
        return int(ack.seq)


def audit(settings: Settings) -> tuple[int, dict[str, Any]]:
    """`swarmlog audit verify --json` in a subprocess, as a user runs it."""
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


async def test_the_clean_room_verifier_agrees_with_audit_verify_on_a_tampered_stream(
    nats_server: str, tmp_path: Path
) -> None:
    namespace = f"cr{uuid.uuid4().hex[:10]}"
    settings = Settings(data_dir=tmp_path / "data", nats_url=nats_server, namespace=namespace)
    operator = KeyStore(settings.keys_dir).init_operator(_seed(namespace))
    agents = {n: Identity.from_seed(n, _seed(namespace + n)) for n in ("alice", "carol", "dave")}
    agents["erin"] = Identity.from_seed("erin", _seed(namespace + "erin"))
    mallory = Identity.from_seed("mallory", _seed("mallory"))
    log = await JetStreamLog.open(nats_server, namespace, provision=True)
    nc = await nats.connect(nats_server)
    w = Writer(log, namespace, nc.jetstream())
    try:
        now = time.time_ns()
        for name, identity in agents.items():
            credential = Credential(
                agent_id=name,
                role="worker",
                public_key=identity.public_key,
                issuer=operator.public_key,
                issued_at=1,
                capabilities=["write"],
                expires_at=now - 60_000_000_000 if name == "erin" else None,  # a minute ago
            )
            await w.genuine(operator, issue_credential(operator, credential))
        for i in range(1, 9):
            await w.genuine(operator, TaskAssignment(task_id=f"t{i}", role="worker"))
        alice, carol, dave, erin = (agents[n] for n in ("alice", "carol", "dave", "erin"))
        await w.genuine(alice, Result(task_id="t1", output="genuine"))
        stored = w.last
        signed = decode_signed(stored.data)

        # Forged: no signature, another agent's key naming alice, a key nobody issued.
        await w.raw("bad_signature", stored.subject, signed_data(signed.body, bytes(64)))
        subject, data, _ = w.craft(
            Identity("alice", carol.signing_key), Result(task_id="t1", output="as alice")
        )
        await w.raw("wrong_sender", subject, data)
        subject, data, _ = w.craft(mallory, Result(task_id="t1", output="x"), ChainHead())
        await w.raw("unknown_signer", subject, data)
        # Replayed: the exact bytes again, under a new dedupe id.
        await w.raw("replayed", stored.subject, stored.data)
        # Bit-flipped: one bit of the body's text, then one of the signature.
        at = stored.data.index(b"genuine")
        flipped = bytearray(stored.data)
        flipped[at] ^= 0x01
        await w.raw("bad_signature", stored.subject, bytes(flipped))
        flipped = bytearray(stored.data)
        flipped[-5] ^= 0x80
        await w.raw("bad_signature", stored.subject, bytes(flipped))
        # Truncated.
        await w.raw("malformed", stored.subject, stored.data[:-7])
        await w.raw("malformed", stored.subject, stored.data[: len(stored.data) // 2])
        # Not permitted: a control type from an agent (in chain: alice's head moves on).
        subject, data, head = w.craft(alice, AgentKilled(agent_id="carol", reason="coup"))
        await w.raw("not_permitted", subject, data)
        w.heads["alice"] = head
        # Killed, revoked, expired: genuine events of agents the operator cut off.
        await w.genuine(operator, AgentKilled(agent_id="carol", reason="compromised"))
        w.expected[await w.genuine(carol, Result(task_id="t2", output="after the kill"))] = "killed"
        await w.genuine(operator, CredentialRevoked(public_key=dave.public_key, reason="leak"))
        w.expected[await w.genuine(dave, Result(task_id="t3", output="after revocation"))] = (
            "revoked"
        )
        w.expected[await w.genuine(erin, Result(task_id="t4", output="after expiry"))] = "expired"
        # Chain-breaking: alice skips a sequence (applied, a chain break), forks her chain,
        # and the skipped event arrives late (replayed).
        skipped_head = w.heads["alice"]
        skipped = w.craft(alice, TaskStarted(task_id="t5"))
        jump = w.craft(alice, TaskStarted(task_id="t6"), ChainHead(skipped_head.seq + 1, "0" * 64))
        jumped = await w.raw("", jump[0], jump[1])
        w.heads["alice"] = jump[2]
        fork = w.craft(alice, TaskStarted(task_id="t7"), ChainHead(jump[2].seq, "f" * 64))
        await w.raw("chain_fork", fork[0], fork[1])
        await w.raw("replayed", skipped[0], skipped[1])
        # Life goes on: the next genuine event of alice chains onto the jump.
        subject, data, _ = w.craft(alice, Result(task_id="t6", output="done"))
        after = await w.raw("", subject, data)
    finally:
        await nc.close()
        await log.close()

    code, report = audit(settings)
    messages = await read_stream(nats_server, namespace)
    assert stream_name(namespace) == "SWARMLOG_" + namespace.upper()
    assert [m.seq for m in messages] == list(range(1, report["position"] + 1))
    clean = verify(messages, namespace, operator.public_key)

    # The stream holds what it should: each crafted message got the verdict it was made for.
    theirs = {r["seq"]: r["reason"] for r in report["rejected"]}
    assert {s: theirs.get(s) for s in w.expected} == w.expected
    assert jumped not in theirs
    assert after not in theirs
    assert {b["seq"] for b in report["chain_breaks"]} == {jumped}
    assert code == 1
    # Message by message, the clean-room verifier judges the same.
    ours = {v.seq: v.reason for v in clean.verdicts if not v.applied}
    assert ours == theirs
    assert len(clean.verdicts) == len(messages) == report["events_checked"]
    mine = clean.report()
    for key in ("events_checked", "valid", "chain_breaks", "position", "stream_chain"):
        assert mine[key] == report[key], key
