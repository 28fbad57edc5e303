"""Hostile input against the decoder, the verifier and the fold: random bytes, valid events with
bits flipped, truncated or padded, well-formed MessagePack of the wrong shape, deep nesting, huge
and odd strings, replays, reorderings, forged credentials, events signed by a revoked or expired
key. Nothing raises; nothing that is not an authentic, permitted event is applied; every reject is
quarantined with its reason.

``make test`` runs a thousand inputs; ``SWARMLOG_FUZZ_EXAMPLES=100000`` is the nightly size.
"""

from __future__ import annotations

import os
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarmlog.bus.ports import StoredMessage
from swarmlog.bus.subjects import subject_for
from swarmlog.projections.fold import apply, quarantine
from swarmlog.projections.state import State
from swarmlog.projections.verify import admit, check
from swarmlog.schemas.credentials import Credential
from swarmlog.schemas.payloads import (
    AgentHeartbeat,
    CredentialRevoked,
    Payload,
    Result,
    TaskAssignment,
    ToolCallRequested,
)
from swarmlog.schemas.signing import ChainHead, Identity, Sealed, issue_credential, seal

NS = "fz"
EXAMPLES = int(os.environ.get("SWARMLOG_FUZZ_EXAMPLES", "1000"))
OPERATOR = Identity.from_seed("operator", bytes([1]) * 32)
ALICE = Identity.from_seed("alice", bytes([2]) * 32)
MALLORY = Identity.from_seed("mallory", bytes([3]) * 32)  # never issued a credential
ROGUE_OPERATOR = Identity.from_seed("operator", bytes([4]) * 32)


class Log:
    """Signs events in order, as their senders would, with a clock of its own."""

    def __init__(self) -> None:
        self.heads: dict[str, ChainHead] = {}
        self.clock = 1_000_000

    def seal(self, who: Identity, payload: Payload, **fields: Any) -> Sealed:
        self.clock += 1_000
        sealed = seal(
            who,
            self.heads.get(who.agent_id, ChainHead()),
            payload,
            now_ns=self.clock,
            entropy=self.clock.to_bytes(10, "big"),
            **fields,
        )
        self.heads[who.agent_id] = sealed.head
        return sealed


def credential(who: Identity, issuer: Identity, **changes: Any) -> Payload:
    c = Credential(
        agent_id=who.agent_id,
        role="worker",
        public_key=who.public_key,
        issuer=issuer.public_key,
        issued_at=0,
        **changes,
    )
    return issue_credential(issuer, c)


def genuine() -> list[Sealed]:
    """A small, valid history: alice is issued a key and works; her later key use is revoked."""
    log = Log()
    events = [log.seal(OPERATOR, credential(ALICE, OPERATOR, tools=["word_count"]))]
    events += [log.seal(ALICE, Result(task_id=f"t{i}", output=i)) for i in range(3)]
    events += [log.seal(ALICE, AgentHeartbeat(agent_id="alice"))]
    events += [log.seal(OPERATOR, TaskAssignment(task_id="t9", role="worker"))]
    events += [log.seal(ALICE, tool_call("word_count"))]  # her own task, a tool granted
    return events


def tool_call(tool: str, server: str = "", index: int = 1) -> ToolCallRequested:
    return ToolCallRequested(
        task_id="t9",
        call_index=index,
        call_id=f"t9.t{index}",
        tool=tool,
        server=server,
        digest="cd" * 32,
    )


GENUINE = genuine()
GENUINE_BYTES = {e.data for e in GENUINE}


def ungranted() -> list[Sealed]:
    """alice's calls in her own task, chained on right after her genuine events, of tools her
    credential does not grant (a Python tool; a tool of an MCP server)."""
    log = Log()
    log.clock = 9_000_000  # ids of their own
    log.heads["alice"] = [e for e in GENUINE if e.envelope.sender == "alice"][-1].head
    return [
        log.seal(ALICE, tool_call("shell", index=2)),
        log.seal(ALICE, tool_call("git.log", "git", index=3)),
    ]


def extras() -> tuple[list[Sealed], set[bytes]]:
    """Signed, well-formed events beside the history: hostile ones that must never be applied,
    and two genuine operator acts (an already expired key for mallory, alice's revocation) that
    turn other events hostile depending on where they land in the stream."""
    log = Log()
    hostile = [
        log.seal(MALLORY, Result(task_id="t1", output="forged")),  # unknown, then expired key
        log.seal(ROGUE_OPERATOR, credential(MALLORY, ROGUE_OPERATOR)),  # another trust root
        log.seal(OPERATOR, credential(MALLORY, ROGUE_OPERATOR)),  # credential signed by a rogue
        *ungranted(),
    ]
    acts = [
        # alice's key signing a second event for her first chain position: whichever of the two
        # comes first is applied, the other is a replay.
        log.seal(ALICE, Result(task_id="t1", output="again")),
        log.seal(OPERATOR, credential(MALLORY, OPERATOR, expires_at=1)),
        log.seal(OPERATOR, CredentialRevoked(public_key=ALICE.public_key)),
    ]
    return hostile + acts, {a.data for a in acts}


EXTRAS, ACTS = extras()
AUTHENTIC = GENUINE_BYTES | ACTS
"""What may ever be applied: events signed by keys the operator vouches for."""


depth = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=60,
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(sorted(GENUINE_BYTES))))
    how = draw(st.sampled_from(["flip", "truncate", "pad", "splice"]))
    if how == "flip":
        i = draw(st.integers(0, len(data) - 1))
        data[i] ^= 1 << draw(st.integers(0, 7))
    elif how == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif how == "pad":
        data += draw(st.binary(min_size=1, max_size=64))
    else:
        other = draw(st.sampled_from(sorted(GENUINE_BYTES)))
        cut = draw(st.integers(1, min(len(data), len(other)) - 1))
        data = data[:cut] + bytearray(other[cut:])
    return bytes(data)


inputs = st.one_of(
    st.binary(max_size=2048),
    mutated(),
    depth.map(msgspec.msgpack.encode),
    st.builds(
        lambda body, sig: msgspec.msgpack.encode([body, sig]),
        st.binary(max_size=256) | depth.map(msgspec.msgpack.encode),
        st.binary(max_size=80),
    ),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=300).map(
        lambda t: msgspec.msgpack.encode({"type": "result", "task_id": t, "output": t})
    ),
    st.integers(1, 40).map(lambda n: msgspec.msgpack.encode(_nested(n))),
    st.just(b"\xc1" * 64),
)


def _nested(n: int) -> Any:
    value: Any = "leaf"
    for _ in range(n * 10):
        value = [value]
    return value


def feed(state: State, message: StoredMessage) -> tuple[bool, str]:
    checked = check(message, NS)
    rejection = admit(state, checked, OPERATOR.public_key)
    if rejection is None:
        assert checked.envelope is not None
        apply(state, message, checked.envelope, checked.body_hash, verified=True)
        return True, ""
    quarantine(state, message, rejection, checked.envelope, checked.body_hash)
    return False, rejection.reason


@pytest.mark.timeout(max(120, EXAMPLES // 40))  # ~5 ms an example; the nightly size needs long
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    st.lists(inputs, min_size=1, max_size=6),
    st.permutations(range(len(GENUINE) + len(EXTRAS))),
    st.integers(0, len(GENUINE) + len(EXTRAS)),
)
def test_hostile_input_never_crashes_and_is_never_applied(
    junk: list[bytes], order: list[int], cut: int
) -> None:
    # The genuine history interleaved with signed hostile events (in a drawn order, so replays
    # and reorderings happen) and with junk; some of it is cut off.
    signed = [*GENUINE, *EXTRAS]
    stream: list[tuple[str, bytes]] = [
        (subject_for(NS, signed[i].envelope), signed[i].data) for i in order[:cut]
    ]
    stream += [(f"swarmlog.{NS}.alice.task.t1.result", j) for j in junk]
    state = State()
    for seq, (subject, data) in enumerate(stream, 1):
        applied, reason = feed(state, StoredMessage(seq, subject, data, stored_at=2_000_000))
        if applied:
            # Only authentic events are ever applied (and only those the stream order allows).
            assert data in AUTHENTIC
        else:
            row = state.get("quarantine", seq)
            assert row is not None
            assert row["reason"] == reason
            assert reason  # every reject says why
    assert len(state.rows["events"]) + len(state.rows["quarantine"]) == len(stream)
    positions = [(r["sender"], r["sender_seq"]) for r in state.rows["events"].values()]
    assert len(positions) == len(set(positions))  # no chain position applied twice
