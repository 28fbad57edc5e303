"""Unit tests of verification: every rejection reason, produced with the pure functions.

Each scenario folds a few events into a fresh :class:`State` the way the projector does
(``check`` then ``admit``, then ``apply`` or ``quarantine``) and ends with the message under test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from swarmlog.bus.ports import StoredMessage
from swarmlog.bus.subjects import subject_for
from swarmlog.projections.fold import apply, quarantine
from swarmlog.projections.state import State
from swarmlog.projections.verify import REASONS, Checked, Rejection, admit, check, touches
from swarmlog.schemas.codec import MAX_EVENT_BYTES, decode_signed, encode, signed_data
from swarmlog.schemas.credentials import Credential
from swarmlog.schemas.envelope import Envelope
from swarmlog.schemas.payloads import (
    AgentHeartbeat,
    AgentKilled,
    AgentRevived,
    CredentialIssued,
    CredentialRevoked,
    Payload,
    Result,
    TaskAssignment,
    WorkflowSubmitted,
)
from swarmlog.schemas.signing import (
    CREDENTIAL_DOMAIN,
    EVENT_DOMAIN,
    OPERATOR_ID,
    ChainHead,
    Identity,
    Sealed,
    event_hash,
    issue_credential,
    seal,
)

NS = "t"
OPERATOR = Identity.from_seed(OPERATOR_ID, bytes([1]) * 32)
ALPHA = Identity.from_seed("alpha", bytes([2]) * 32)
BETA = Identity.from_seed("beta", bytes([3]) * 32)
STRANGER = Identity.from_seed("alpha", bytes([4]) * 32)  # claims to be alpha, never credentialed
YEAR = 365 * 86_400 * 10**9


def heartbeat(agent_id: str = "alpha", in_flight: int = 0) -> AgentHeartbeat:
    return AgentHeartbeat(agent_id=agent_id, in_flight=in_flight)


class Projection:
    """A reference projection fed one message at a time, with each sender's chain head."""

    def __init__(self) -> None:
        self.state = State()
        self.heads: dict[str, ChainHead] = {}
        self.seq = 0
        self.clock = 1_000
        self.counter = 0

    def seal(
        self,
        who: Identity,
        payload: Payload,
        *,
        head: ChainHead | None = None,
        now: int | None = None,
        entropy: bytes | None = None,
        **fields: Any,
    ) -> Sealed:
        self.clock += 1
        self.counter += 1
        sealed = seal(
            who,
            self.heads.get(who.agent_id, ChainHead()) if head is None else head,
            payload,
            now_ns=self.clock if now is None else now,
            entropy=self.counter.to_bytes(10, "big") if entropy is None else entropy,
            **fields,
        )
        self.heads[who.agent_id] = sealed.head
        return sealed

    def message(
        self, item: Sealed | bytes, subject: str | None = None, stored_at: int = 0
    ) -> StoredMessage:
        self.seq += 1
        if isinstance(item, Sealed):
            subject = subject or subject_for(NS, item.envelope)
            return StoredMessage(self.seq, subject, item.data, stored_at)
        return StoredMessage(self.seq, subject or f"swarmlog.{NS}.alpha.sys.x", item, stored_at)

    def feed(self, message: StoredMessage) -> Rejection | None:
        checked = check(message, NS)
        rejection = admit(self.state, checked, OPERATOR.public_key)
        if rejection is None:
            assert checked.envelope is not None
            apply(self.state, message, checked.envelope, checked.body_hash, verified=True)
        else:
            quarantine(self.state, message, rejection, checked.envelope, checked.body_hash)
        return rejection

    def emit(self, who: Identity, payload: Payload, **kwargs: Any) -> Rejection | None:
        return self.feed(self.message(self.seal(who, payload, **kwargs)))

    def issue(self, agent: Identity, **overrides: Any) -> None:
        credential = Credential(
            **{
                "agent_id": agent.agent_id,
                "role": "router",
                "public_key": agent.public_key,
                "issuer": OPERATOR.public_key,
                "issued_at": 0,
                **overrides,
            }
        )
        assert self.emit(OPERATOR, issue_credential(OPERATOR, credential)) is None

    def applied(self, seq: int) -> bool:
        return self.state.get("events", seq) is not None

    def quarantined(self, seq: int) -> str | None:
        row = self.state.get("quarantine", seq)
        return None if row is None else str(row["reason"])


# --- one scenario per reason ----------------------------------------------------------------------


def oversized(p: Projection) -> StoredMessage:
    return p.message(b"\x00" * (MAX_EVENT_BYTES + 1))


def malformed(p: Projection) -> StoredMessage:
    return p.message(b"\x92\xc4\x03abc")  # an array of one body and no signature


def subject_mismatch(p: Projection) -> StoredMessage:
    p.issue(ALPHA)
    sealed = p.seal(ALPHA, heartbeat())
    return p.message(sealed, subject=subject_for(NS, sealed.envelope).replace(".alpha.", ".beta."))


def bad_signature(p: Projection) -> StoredMessage:
    p.issue(ALPHA)
    sealed = p.seal(ALPHA, heartbeat())
    signed = decode_signed(sealed.data)
    forged = signed_data(signed.body, BETA.sign(EVENT_DOMAIN, signed.body))
    return p.message(forged, subject=subject_for(NS, sealed.envelope))


def unknown_signer(p: Projection) -> StoredMessage:
    p.issue(ALPHA)
    return p.message(p.seal(STRANGER, heartbeat()))


def wrong_sender(p: Projection) -> StoredMessage:
    p.issue(ALPHA)
    p.issue(BETA)
    impostor = Identity("beta", ALPHA.signing_key)  # alpha's key speaking as beta
    return p.message(p.seal(impostor, heartbeat("beta")))


def revoked(p: Projection) -> StoredMessage:
    p.issue(ALPHA)
    assert p.emit(ALPHA, heartbeat()) is None
    assert p.emit(OPERATOR, CredentialRevoked(public_key=ALPHA.public_key, reason="lost")) is None
    return p.message(p.seal(ALPHA, heartbeat()))


def expired(p: Projection) -> StoredMessage:
    p.issue(ALPHA, expires_at=5_000)
    assert p.emit(ALPHA, heartbeat(), now=5_000) is None  # at the expiry instant: still valid
    return p.message(p.seal(ALPHA, heartbeat(), now=5_001))


def not_permitted(p: Projection) -> StoredMessage:
    p.issue(ALPHA)  # allowed_types ["*"]: every type but the operator's control types
    return p.message(p.seal(ALPHA, AgentKilled(agent_id="beta")))


def killed(p: Projection) -> StoredMessage:
    p.issue(ALPHA)
    assert p.emit(OPERATOR, AgentKilled(agent_id="alpha", reason="runaway")) is None
    return p.message(p.seal(ALPHA, heartbeat()))


def bad_credential(p: Projection) -> StoredMessage:
    body = encode(
        Credential(
            agent_id="alpha",
            role="router",
            public_key=ALPHA.public_key,
            issuer=OPERATOR.public_key,
            issued_at=0,
        )
    )
    forged = CredentialIssued(credential=body, signature=ALPHA.sign(CREDENTIAL_DOMAIN, body))
    return p.message(p.seal(OPERATOR, forged))


def replayed(p: Projection) -> StoredMessage:
    p.issue(ALPHA)
    message = p.message(p.seal(ALPHA, heartbeat()))
    assert p.feed(message) is None
    return p.message(message.data, subject=message.subject)


def chain_fork(p: Projection) -> StoredMessage:
    p.issue(ALPHA)
    assert p.emit(ALPHA, heartbeat()) is None
    head = p.heads["alpha"]
    return p.message(p.seal(ALPHA, heartbeat(in_flight=1), head=ChainHead(head.seq, "ab" * 32)))


def bad_timestamp(p: Projection) -> StoredMessage:
    p.issue(ALPHA)
    stored_at = 1_700_000_000 * 10**9
    return p.message(p.seal(ALPHA, heartbeat(), now=stored_at + YEAR), stored_at=stored_at)


def duplicate_id(p: Projection) -> StoredMessage:
    p.issue(ALPHA)
    first = p.seal(ALPHA, heartbeat(), now=7_000_000, entropy=bytes(range(10)))
    assert p.feed(p.message(first)) is None
    again = p.seal(ALPHA, heartbeat(in_flight=3), now=7_000_000, entropy=bytes(range(10)))
    assert again.envelope.id == first.envelope.id
    assert again.envelope.sender_seq == first.envelope.sender_seq + 1
    return p.message(again)


SCENARIOS: dict[str, Callable[[Projection], StoredMessage]] = {
    f.__name__: f
    for f in (
        oversized,
        malformed,
        subject_mismatch,
        bad_signature,
        unknown_signer,
        wrong_sender,
        revoked,
        expired,
        not_permitted,
        killed,
        bad_credential,
        replayed,
        chain_fork,
        duplicate_id,
        bad_timestamp,
    )
}


IN_CHAIN = frozenset({"not_permitted", "killed", "bad_timestamp"})


def test_every_reason_has_a_scenario() -> None:
    assert set(SCENARIOS) == set(REASONS)


@pytest.mark.parametrize("reason", list(SCENARIOS))
def test_each_reason_is_quarantined_and_not_applied(reason: str) -> None:
    p = Projection()
    message = SCENARIOS[reason](p)
    events_before = dict(p.state.rows["events"])
    heads_before = dict(p.state.rows["chain_heads"])
    rejection = p.feed(message)
    assert rejection is not None
    assert rejection.reason == reason
    assert p.quarantined(message.seq) == reason
    assert not p.applied(message.seq)
    assert p.state.rows["events"] == events_before
    if reason in IN_CHAIN:
        # Authentic and in sequence, only not allowed: the sender's chain moves past it.
        assert rejection.in_chain
        envelope = check(message, NS).envelope
        assert envelope is not None
        head = p.state.get("chain_heads", envelope.sender)
        assert head is not None
        assert (head["sender_seq"], head["seq"]) == (envelope.sender_seq, message.seq)
    else:
        # Anything else changes nothing but the quarantine.
        assert not rejection.in_chain
        assert p.state.rows["chain_heads"] == heads_before
    row = p.state.get("quarantine", message.seq)
    assert row is not None
    assert row["size"] == len(message.data)
    assert row["subject"] == message.subject


@pytest.mark.parametrize("reason", ["oversized", "malformed", "subject_mismatch", "bad_signature"])
def test_stateless_reasons_come_from_check(reason: str) -> None:
    p = Projection()
    message = SCENARIOS[reason](p)
    checked = check(message, NS)
    assert checked.rejection is not None
    assert checked.rejection.reason == reason
    assert checked.body_hash == ""
    # admit passes the stateless verdict through unchanged.
    assert admit(p.state, checked, OPERATOR.public_key) == checked.rejection


# --- the edges of each rule ----------------------------------------------------------------------


def test_a_good_sequence_is_applied() -> None:
    p = Projection()
    p.issue(ALPHA)
    assert p.emit(ALPHA, heartbeat()) is None
    assert p.emit(OPERATOR, TaskAssignment(task_id="t1", role="router")) is None
    assert p.emit(ALPHA, Result(task_id="t1")) is None
    assert [row["type"] for row in p.state.rows["events"].values()] == [
        "credential_issued",
        "agent_heartbeat",
        "task_assignment",
        "result",
    ]
    assert p.state.rows["quarantine"] == {}
    assert p.state.rows["chain_breaks"] == {}
    head = p.state.get("chain_heads", "alpha")
    assert head is not None
    assert head["sender_seq"] == 2
    assert head["hash"] == p.heads["alpha"].hash


def test_a_gap_in_a_chain_is_applied_and_recorded() -> None:
    p = Projection()
    p.issue(ALPHA)
    assert p.emit(ALPHA, heartbeat()) is None
    skipped = p.heads["alpha"]
    sealed = p.seal(ALPHA, heartbeat(in_flight=2), head=ChainHead(skipped.seq + 2, "cd" * 32))
    assert sealed.envelope.sender_seq == 4
    message = p.message(sealed)
    assert p.feed(message) is None
    assert p.applied(message.seq)
    assert p.state.get("chain_breaks", message.seq) == {
        "seq": message.seq,
        "sender": "alpha",
        "expected_seq": 2,
        "got_seq": 4,
    }
    head = p.state.get("chain_heads", "alpha")
    assert head is not None
    assert head["sender_seq"] == 4
    # The chain continues from the new head; the skipped positions are now replays.
    assert p.emit(ALPHA, heartbeat()) is None
    late = p.message(p.seal(ALPHA, heartbeat(), head=skipped))
    rejection = p.feed(late)
    assert rejection is not None
    assert rejection.reason == "replayed"
    assert len(p.state.rows["chain_breaks"]) == 1


def test_the_first_event_of_a_sender_must_not_claim_a_predecessor() -> None:
    p = Projection()
    p.issue(ALPHA)
    rejection = p.emit(ALPHA, heartbeat(), head=ChainHead(0, "ef" * 32))
    assert rejection == Rejection("chain_fork", "prev_hash does not match sender_seq 0")


def test_operator_key_may_not_speak_for_an_agent() -> None:
    p = Projection()
    rejection = p.emit(Identity("alpha", OPERATOR.signing_key), heartbeat())
    assert rejection is not None
    assert rejection.reason == "wrong_sender"


def test_only_the_trusted_operator_key_speaks_as_operator() -> None:
    p = Projection()
    other_operator = Identity.from_seed(OPERATOR_ID, bytes([9]) * 32)
    rejection = p.emit(other_operator, TaskAssignment(task_id="t", role="router"))
    assert rejection is not None
    assert rejection.reason == "unknown_signer"


def test_an_agent_limited_to_some_types_may_emit_only_those() -> None:
    p = Projection()
    p.issue(ALPHA, allowed_types=["result"])
    assert p.emit(OPERATOR, TaskAssignment(task_id="t1", role="router")) is None
    assert p.emit(ALPHA, Result(task_id="t1")) is None
    rejection = p.emit(ALPHA, heartbeat())
    assert rejection == Rejection("not_permitted", "agent_heartbeat", in_chain=True)


def test_an_external_agent_may_not_emit_what_is_reserved_for_internal_ones() -> None:
    p = Projection()
    p.issue(ALPHA, trust_level="external")
    assert p.emit(OPERATOR, TaskAssignment(task_id="t1", role="router")) is None
    assert p.emit(ALPHA, Result(task_id="t1")) is None  # answering its own work is fine
    rejection = p.emit(ALPHA, TaskAssignment(task_id="t2", role="payments"))
    assert rejection == Rejection(
        "not_permitted", "task_assignment is for internal agents", in_chain=True
    )
    assert p.quarantined(p.seq) == "not_permitted"
    p.issue(BETA)  # internal, the default
    assert p.emit(BETA, TaskAssignment(task_id="t3", role="payments")) is None


@pytest.mark.parametrize(
    "payload",
    [
        AgentKilled(agent_id="*"),
        AgentRevived(agent_id="alpha"),
        CredentialRevoked(public_key="0" * 64),
        CredentialIssued(credential=b"x", signature=bytes(64)),
    ],
    ids=lambda p: type(p).__name__,
)
def test_control_types_are_for_the_operator_only(payload: Payload) -> None:
    p = Projection()
    p.issue(ALPHA, allowed_types=["*", "agent_killed", "agent_revived", "credential_revoked"])
    rejection = p.emit(ALPHA, payload)
    assert rejection is not None
    assert rejection.reason == "not_permitted"


def test_kill_all_then_revive() -> None:
    p = Projection()
    p.issue(ALPHA)
    p.issue(BETA)
    assert p.emit(OPERATOR, AgentKilled(agent_id="*", reason="stop")) is None
    for agent in (ALPHA, BETA):
        assert p.emit(agent, heartbeat(agent.agent_id)) == Rejection(
            "killed", "stop", in_chain=True
        )
    # The operator is never stopped by its own switch.
    assert p.emit(OPERATOR, TaskAssignment(task_id="t", role="router")) is None
    assert p.emit(OPERATOR, AgentRevived(agent_id="*")) is None
    # Revived: alpha's next event follows its rejected one, which still moved the chain on.
    message = p.message(p.seal(ALPHA, heartbeat()))
    assert p.feed(message) is None
    assert p.state.rows["chain_breaks"] == {}


def test_reviving_one_agent_leaves_a_kill_all_in_force() -> None:
    p = Projection()
    p.issue(ALPHA)
    assert p.emit(OPERATOR, AgentKilled(agent_id="*")) is None
    assert p.emit(OPERATOR, AgentKilled(agent_id="alpha")) is None
    assert p.emit(OPERATOR, AgentRevived(agent_id="alpha")) is None
    rejection = p.emit(ALPHA, heartbeat())
    assert rejection is not None
    assert rejection.reason == "killed"


def test_revocation_wins_over_other_reasons() -> None:
    p = Projection()
    p.issue(ALPHA, expires_at=1)
    assert p.emit(OPERATOR, CredentialRevoked(public_key=ALPHA.public_key, reason="x")) is None
    assert p.emit(OPERATOR, AgentKilled(agent_id="alpha")) is None
    assert p.emit(ALPHA, AgentKilled(agent_id="beta")) == Rejection("revoked", "x")


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"agent_id": OPERATOR_ID}, id="names-the-operator"),
        pytest.param({"issuer": BETA.public_key}, id="other-issuer"),
    ],
)
def test_bad_credentials_signed_by_the_operator(change: dict[str, Any]) -> None:
    p = Projection()
    fields: dict[str, Any] = {
        "agent_id": "alpha",
        "role": "router",
        "public_key": ALPHA.public_key,
        "issuer": OPERATOR.public_key,
        "issued_at": 0,
    }
    body = encode(Credential(**{**fields, **change}))
    payload = CredentialIssued(credential=body, signature=OPERATOR.sign(CREDENTIAL_DOMAIN, body))
    rejection = p.emit(OPERATOR, payload)
    assert rejection is not None
    assert rejection.reason == "bad_credential"
    assert p.state.rows["credentials"] == {}
    # ... and the key it names stays unknown.
    assert p.emit(ALPHA, heartbeat()) == Rejection("unknown_signer", ALPHA.public_key[:16])


def test_a_credential_that_is_not_a_credential() -> None:
    p = Projection()
    body = b"\x93\x01\x02\x03"
    payload = CredentialIssued(credential=body, signature=OPERATOR.sign(CREDENTIAL_DOMAIN, body))
    rejection = p.emit(OPERATOR, payload)
    assert rejection is not None
    assert rejection.reason == "bad_credential"


def test_a_credential_signature_is_not_an_event_signature() -> None:
    """Domain separation: an event signature over the credential bytes does not vouch for it."""
    p = Projection()
    body = encode(
        Credential(
            agent_id="alpha",
            role="router",
            public_key=ALPHA.public_key,
            issuer=OPERATOR.public_key,
            issued_at=0,
        )
    )
    payload = CredentialIssued(credential=body, signature=OPERATOR.sign(EVENT_DOMAIN, body))
    rejection = p.emit(OPERATOR, payload)
    assert rejection == Rejection("bad_credential", "operator signature does not match")


def test_a_workflow_event_without_a_workflow_id_is_malformed() -> None:
    p = Projection()
    sealed = p.seal(OPERATOR, WorkflowSubmitted(pattern="pipeline"))
    message = p.message(sealed, subject=f"swarmlog.{NS}.operator.wf..workflow_submitted")
    checked = check(message, NS)
    assert checked.envelope == sealed.envelope
    assert checked.rejection is not None
    assert checked.rejection.reason == "malformed"


def test_replayed_takes_precedence_over_duplicate_id() -> None:
    p = Projection()
    p.issue(ALPHA)
    message = p.message(p.seal(ALPHA, heartbeat()))
    assert p.feed(message) is None
    again = p.message(message.data, subject=message.subject)
    assert p.feed(again) == Rejection("replayed", "sender_seq 1 <= head 1")


def test_without_verification_signatures_and_signers_are_not_checked() -> None:
    p = Projection()
    message = bad_signature(p)
    checked = check(message, NS, verify=False)
    assert checked.rejection is None
    assert checked.envelope is not None
    assert admit(p.state, checked, OPERATOR.public_key, verify=False) is None
    stranger = p.message(p.seal(Identity("gamma", STRANGER.signing_key), heartbeat("gamma")))
    checked = check(stranger, NS, verify=False)
    assert admit(p.state, checked, OPERATOR.public_key, verify=False) is None
    assert admit(p.state, check(stranger, NS), OPERATOR.public_key) == Rejection(
        "unknown_signer", STRANGER.public_key[:16]
    )


def test_check_hashes_the_body() -> None:
    p = Projection()
    sealed = p.seal(OPERATOR, TaskAssignment(task_id="t", role="router"))
    checked = check(p.message(sealed), NS)
    assert checked == Checked(
        checked.message, sealed.envelope, event_hash(decode_signed(sealed.data).body), None
    )
    assert checked.body_hash == sealed.head.hash


def test_touches_names_the_rows_admit_reads() -> None:
    p = Projection()
    envelope = p.seal(ALPHA, heartbeat()).envelope
    keys = touches(envelope)
    for needed in [
        ("chain_heads", ("alpha",)),
        ("credentials", (ALPHA.public_key,)),
        ("kill_switches", ("alpha",)),
        ("kill_switches", ("*",)),
        ("agents", ("alpha",)),
    ]:
        assert needed in keys


# --- hostile bytes that once crashed `check` (regressions) ----------------------------------------


def _signed_with(body: bytes, who: Identity = ALPHA) -> bytes:
    return signed_data(body, who.sign(EVENT_DOMAIN, body))


def _assignment_body(input_: Any) -> bytes:
    envelope = Envelope(
        id="0" * 26,
        sender="alpha",
        signer=ALPHA.public_key,
        sender_seq=1,
        prev_hash="",
        occurred_at=0,
        payload=TaskAssignment(task_id="t", role="router", input=input_),
    )
    return encode(envelope)


SUBJECT = f"swarmlog.{NS}.alpha.work.router.normal.t"


def test_invalid_utf8_is_malformed() -> None:
    body = _assignment_body("\u00e9")
    bad = body.replace("\u00e9".encode(), b"\xff\xfe")
    assert bad != body
    checked = check(StoredMessage(1, SUBJECT, _signed_with(bad)), NS)
    assert checked.rejection is not None
    assert checked.rejection.reason == "malformed"


def test_deep_nesting_is_malformed() -> None:
    body = _assignment_body([])
    nested = body.replace(msgspec.msgpack.encode([]), b"\x91" * 100_000 + b"\x90")
    data = _signed_with(nested)
    assert len(data) < MAX_EVENT_BYTES
    checked = check(StoredMessage(1, SUBJECT, data), NS)
    assert checked.rejection is not None
    assert checked.rejection.reason == "malformed"


def test_a_msgpack_extension_in_a_json_field_is_malformed() -> None:
    """A signed, permitted event whose ``input`` is no JSON value must not reach the fold."""
    p = Projection()
    p.issue(ALPHA)
    body = _assignment_body(msgspec.msgpack.Ext(1, b"x"))
    message = p.message(_signed_with(body), subject=SUBJECT)
    rejection = p.feed(message)
    assert rejection is not None
    assert rejection.reason == "malformed"


# --- time and order ------------------------------------------------------------------------------


def test_a_backdated_event_stored_after_expiry_is_expired() -> None:
    """The server's storage time cannot be backdated by the signer."""
    p = Projection()
    p.issue(ALPHA, expires_at=5_000)
    on_time = p.message(p.seal(ALPHA, heartbeat(), now=4_000), stored_at=5_000)
    assert p.feed(on_time) is None
    late = p.message(p.seal(ALPHA, heartbeat(), now=4_001), stored_at=5_001)
    assert p.feed(late) == Rejection("expired", "expired at 5000")


def test_an_id_that_does_not_match_the_clock_is_malformed() -> None:
    p = Projection()
    sealed = p.seal(OPERATOR, TaskAssignment(task_id="t", role="router"), now=7_000_000)
    envelope = msgspec.structs.replace(sealed.envelope, occurred_at=9_000_000)
    body = encode(envelope)
    data = _signed_with(body, OPERATOR)
    checked = check(p.message(data, subject=subject_for(NS, envelope)), NS)
    assert checked.rejection is not None
    assert checked.rejection.reason == "malformed"
    # Within the same millisecond the id still matches.
    same_ms = msgspec.structs.replace(sealed.envelope, occurred_at=7_999_999)
    data = _signed_with(encode(same_ms), OPERATOR)
    assert check(p.message(data, subject=subject_for(NS, same_ms)), NS).rejection is None


def test_identity_is_checked_before_the_chain_and_the_chain_before_authority() -> None:
    p = Projection()
    p.issue(ALPHA)
    first = p.message(p.seal(ALPHA, heartbeat()))
    assert p.feed(first) is None
    assert p.emit(OPERATOR, AgentKilled(agent_id="alpha", reason="k")) is None
    # A killed agent's replay is a replay, its forged link a fork, its next event "killed".
    assert p.feed(p.message(first.data, subject=first.subject)) is not None
    assert p.quarantined(p.seq) == "replayed"
    forged = p.seal(ALPHA, heartbeat(), head=ChainHead(1, "12" * 32))
    assert p.feed(p.message(forged)) == Rejection(
        "chain_fork", "prev_hash does not match sender_seq 1"
    )
    assert p.emit(ALPHA, heartbeat(), head=ChainHead(1, first_hash(first))) == Rejection(
        "killed", "k", in_chain=True
    )
    # A revoked key is refused before its chain position is even looked at.
    assert p.emit(OPERATOR, CredentialRevoked(public_key=ALPHA.public_key, reason="r")) is None
    assert p.feed(p.message(first.data, subject=first.subject)) == Rejection("revoked", "r")


def first_hash(message: StoredMessage) -> str:
    return event_hash(decode_signed(message.data).body)


def test_an_event_refused_for_authority_keeps_the_chain_whole() -> None:
    p = Projection()
    p.issue(ALPHA, allowed_types=["agent_heartbeat"])
    assert p.emit(ALPHA, heartbeat()) is None
    refused = p.message(p.seal(ALPHA, Result(task_id="t1")))
    assert p.feed(refused) == Rejection("not_permitted", "result", in_chain=True)
    head = p.state.get("chain_heads", "alpha")
    assert head is not None
    assert head["sender_seq"] == 2
    assert head["hash"] == first_hash(refused)
    assert not p.applied(refused.seq)
    # The next event chains onto the refused one: no gap, no fork.
    assert p.emit(ALPHA, heartbeat()) is None
    assert p.state.rows["chain_breaks"] == {}
    # But its id was never applied, so it is not a duplicate either; re-sending it is a replay.
    assert p.feed(p.message(refused.data, subject=refused.subject)) is not None
    assert p.quarantined(p.seq) == "replayed"
