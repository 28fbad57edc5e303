"""Protocol test vectors, made by swarmlog's own code from fixed keys, a fixed clock and fixed
entropy: every run writes the same bytes.

Run ``.venv/bin/python tests/vectors/generate.py`` to rewrite the JSON files next to this script
(after a reviewed protocol change: ``tests/contract/test_vectors.py`` fails until they match).
Importable too: :func:`build` returns every file's document by file name, :func:`render` its text.

Every file is ``{"version": 1, "about": ..., "vectors": [...]}``; each vector has a ``name``, the
``rule`` it shows and its data, bytes as lowercase hex. Wherever a key signs, the vector's
``keys`` give its 32-byte Ed25519 seed and its public key, so an outside verifier can check.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from swarmlog.bus.permissions import LOGIN_DOMAIN, login_for
from swarmlog.bus.ports import StoredMessage
from swarmlog.bus.subjects import subject_for
from swarmlog.errors import VerificationError
from swarmlog.projections.fold import fold_checked
from swarmlog.projections.state import State
from swarmlog.projections.streamchain import (
    CHAIN_DOMAIN,
    CHECKPOINT_DOMAIN,
    Checkpoint,
    StreamChain,
    sign_checkpoint,
    verify_checkpoint,
)
from swarmlog.projections.verify import (
    MAX_AHEAD_NS,
    MAX_BEHIND_NS,
    Rejection,
    check,
    check_credential,
)
from swarmlog.schemas import payloads as p
from swarmlog.schemas.batches import BATCH_DOMAIN, batch_message, leaf_hash, tree
from swarmlog.schemas.codec import (
    MAX_EVENT_BYTES,
    decode_envelope,
    decode_signed,
    encode,
    signed_data,
)
from swarmlog.schemas.credentials import Credential
from swarmlog.schemas.envelope import BatchProof, Envelope
from swarmlog.schemas.ids import new_event_id
from swarmlog.schemas.signing import (
    CONTROL_TYPES,
    CREDENTIAL_DOMAIN,
    EVENT_DOMAIN,
    OPERATOR_ID,
    ChainHead,
    Identity,
    Sealed,
    issue_credential,
    prepare,
    seal,
    sign_all,
)

__all__ = ["FILES", "build", "main", "render"]

VERSION = 1
NAMESPACE = "default"
T0 = 1_700_000_000_000_000_000
"""The fixed clock's start (ns): 2023-11-14T22:13:20Z."""
MS = 1_000_000
STORE_DELAY = 2 * MS
"""How long after an event's ``occurred_at`` the server stores it, unless a vector says."""

SEEDS: dict[str, bytes] = {
    OPERATOR_ID: bytes([1]) * 32,
    "alpha": bytes([2]) * 32,
    "beta": bytes([3]) * 32,
    "mallory": bytes([4]) * 32,
    "other-operator": bytes([9]) * 32,
}
"""Every identity's seed: ``bytes([i]) * 32``."""

HERE = Path(__file__).resolve().parent
FILES = (
    "encoding.json",
    "stateless.json",
    "sequences.json",
    "stream_chain.json",
    "checkpoint.json",
    "login.json",
    "credential.json",
    "batch.json",
)


def expect(got: object, want: object, what: str) -> None:
    """Refuse to write a vector that does not show what it is meant to."""
    if got != want:
        raise RuntimeError(f"{what}: swarmlog gives {got!r}, the vector is meant to show {want!r}")


def reason_of(rejection: Rejection | None) -> str | None:
    return None if rejection is None else rejection.reason


def identity(name: str, agent_id: str | None = None) -> Identity:
    """The fixed identity ``name`` (speaking as ``agent_id``, by default itself)."""
    return Identity.from_seed(agent_id or name, SEEDS[name])


OPERATOR = identity(OPERATOR_ID)
ALPHA = identity("alpha")
BETA = identity("beta")
MALLORY = identity("mallory")


def keys(*names: str) -> dict[str, dict[str, str]]:
    """The seeds and public keys of identities, for a vector."""
    return {n: {"seed": SEEDS[n].hex(), "public_key": identity(n).public_key} for n in names}


def entropy(n: int) -> bytes:
    """The fixed entropy of the ``n``-th event id of a file."""
    return n.to_bytes(10, "big")


def hexed(value: Any) -> Any:
    """``value`` (builtins, bytes left as bytes) with every bytes value as lowercase hex."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: hexed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [hexed(v) for v in value]
    return value


def as_json(struct: msgspec.Struct) -> Any:
    """A struct as JSON builtins (``msgspec.to_builtins``), bytes as hex."""
    return hexed(msgspec.to_builtins(struct, builtin_types=(bytes,)))


def credential(agent: Identity, role: str = "worker", **extra: Any) -> Credential:
    return Credential(
        agent_id=agent.agent_id,
        role=role,
        public_key=agent.public_key,
        issuer=OPERATOR.public_key,
        issued_at=T0,
        **extra,
    )


def document(about: str, vectors: list[dict[str, Any]]) -> dict[str, Any]:
    names = [v["name"] for v in vectors]
    expect(len(names), len(set(names)), f"distinct vector names ({names})")
    return {"version": VERSION, "about": about, "vectors": vectors}


def render(doc: dict[str, Any]) -> str:
    """A document's file text: two-space indented JSON, keys in the order written, ASCII."""
    return json.dumps(doc, indent=2, ensure_ascii=True) + "\n"


# --- encoding.json ------------------------------------------------------------------------------

ESCALATION_ID = new_event_id(T0, entropy(0))


def payload_examples() -> dict[str, tuple[p.Payload, dict[str, Any]]]:
    """One fixed, valid payload of every type, with the envelope fields it needs."""
    usage = p.TokenUsage(model="small-model", prompt_tokens=12, completion_tokens=5)
    wf = {"workflow_id": "w1"}
    examples: dict[str, tuple[p.Payload, dict[str, Any]]] = {
        "task_assignment": (
            p.TaskAssignment(
                task_id="t1",
                role="worker",
                capability="summarize",
                priority="high",
                input={"text": "the quick brown fox"},
            ),
            wf,
        ),
        "result": (
            # A task that ended at once: its result says when it started (no task_started).
            p.Result(
                task_id="t1",
                output={"summary": "a fox"},
                usage=usage,
                attempt=1,
                started_at=T0 - 3 * MS,
            ),
            {**wf, "causation_id": ESCALATION_ID},
        ),
        "error": (
            p.Error(task_id="t1", code="timeout", message="the model took too long"),
            wf,
        ),
        "clarification_request": (
            p.ClarificationRequest(
                request_id="r1", to="beta", question="Which format?", task_id="t1"
            ),
            {"recipient": "beta", "correlation_id": "r1"},
        ),
        "clarification_response": (
            p.ClarificationResponse(request_id="r1", to="beta", answer="Markdown", task_id="t1"),
            {"recipient": "beta", "correlation_id": "r1"},
        ),
        "workflow_submitted": (
            p.WorkflowSubmitted(pattern="pipeline", input={"topic": "foxes"}, budget_tokens=10_000),
            wf,
        ),
        "workflow_planned": (
            p.WorkflowPlanned(version=1, plan={"steps": [{"id": "t1", "role": "worker"}]}),
            wf,
        ),
        "workflow_revised": (
            p.WorkflowRevised(
                version=2,
                plan={"steps": [{"id": "t1", "role": "worker"}, {"id": "t2", "role": "writer"}]},
                reason="a step was missing",
            ),
            wf,
        ),
        "workflow_completed": (
            p.WorkflowCompleted(status="succeeded", result={"summary": "a fox"}),
            wf,
        ),
        "task_offered": (
            p.TaskOffered(task_id="t2", capability="summarize", mode="swarm", priority="low"),
            wf,
        ),
        "task_claimed": (p.TaskClaimed(task_id="t2", agent_id="alpha"), wf),
        "task_started": (p.TaskStarted(task_id="t1", attempt=1), wf),
        "task_heartbeat": (p.TaskHeartbeat(task_id="t1", progress=0.5, note="halfway"), wf),
        "task_checkpointed": (p.TaskCheckpointed(task_id="t1", data={"page": 3}), wf),
        "task_completed": (p.TaskCompleted(task_id="t1"), wf),
        "task_failed": (p.TaskFailed(task_id="t1", reason="gave up", final=True), wf),
        "task_retry_scheduled": (
            p.TaskRetryScheduled(task_id="t1", attempt=2, delay_ms=500),
            wf,
        ),
        "task_escalated": (p.TaskEscalated(task_id="t1", reason="needs a human"), wf),
        "escalation_resolved": (
            p.EscalationResolved(
                escalation_id=ESCALATION_ID, task_id="t1", action="answer", answer="yes"
            ),
            wf,
        ),
        "task_cancelled": (p.TaskCancelled(task_id="t1", reason="no longer needed"), wf),
        "model_call_requested": (
            p.ModelCallRequested(
                task_id="t1",
                call_index=1,
                call_id=p.model_call_id("t1", 1),
                model="small-model",
                digest="ab" * 32,
                messages=[{"role": "user", "content": "Summarize: the quick brown fox"}],
                reserved_tokens=100,
            ),
            wf,
        ),
        "model_call_completed": (
            p.ModelCallCompleted(
                task_id="t1",
                call_index=1,
                call_id=p.model_call_id("t1", 1),
                model="small-model",
                status="ok",
                reply={"role": "assistant", "content": "a fox"},
                usage=usage,
                duration_ms=120,
            ),
            wf,
        ),
        "tool_call_requested": (
            p.ToolCallRequested(
                task_id="t1",
                call_index=1,
                call_id=p.tool_call_id("t1", 1),
                tool="time.now",
                server="time",
                digest="cd" * 32,
                arguments={"zone": "UTC"},
            ),
            wf,
        ),
        "tool_call_completed": (
            p.ToolCallCompleted(
                task_id="t1",
                call_index=1,
                call_id=p.tool_call_id("t1", 1),
                tool="word_count",
                status="ok",
                result=4,
                duration_ms=3,
            ),
            wf,
        ),
        "agent_registered": (
            p.AgentRegistered(
                agent_id="alpha",
                role="worker",
                capabilities=["summarize"],
                tier="small",
                replica="r1",
                tools=[p.ToolPin(name="word_count", digest="ef" * 32)],
            ),
            {},
        ),
        "agent_heartbeat": (p.AgentHeartbeat(agent_id="alpha", in_flight=1), {}),
        "agent_stopped": (p.AgentStopped(agent_id="alpha", reason="SIGTERM"), {}),
        "agent_lost": (p.AgentLost(agent_id="beta", last_seen_at=T0 - 60_000 * MS), {}),
        "agent_seen": (p.AgentSeen(agent_id="beta", seen_at=T0), {}),
        "agent_killed": (p.AgentKilled(agent_id="alpha", reason="misbehaving"), {}),
        "agent_revived": (p.AgentRevived(agent_id="alpha"), {}),
        "credential_issued": (issue_credential(OPERATOR, credential(ALPHA)), {}),
        "credential_revoked": (
            p.CredentialRevoked(public_key=ALPHA.public_key, reason="key leaked"),
            {},
        ),
        "budget_exceeded": (
            p.BudgetExceeded(
                scope="workflow",
                scope_id="w1",
                limit="soft",
                used_tokens=9_000,
                budget_tokens=10_000,
            ),
            wf,
        ),
        "circuit_opened": (p.CircuitOpened(circuit="search-api", reason="5 failures"), {}),
        "circuit_closed": (p.CircuitClosed(circuit="search-api", reason="probe succeeded"), {}),
        "circuit_half_opened": (p.CircuitHalfOpened(circuit="search-api"), {}),
        "deadlock_detected": (
            p.DeadlockDetected(cycle=["t1", "t2", "t1"], victim="t2", to="beta", task_id="t2"),
            {},
        ),
        "snapshot_taken": (
            p.SnapshotTaken(seq=100, state_hash="12" * 32, name="nightly"),
            {},
        ),
    }
    missing = set(p.PAYLOAD_TYPES) ^ set(examples)
    expect(sorted(missing), [], "payload types without an example (or unknown)")
    return {t: examples[t] for t in p.PAYLOAD_TYPES}  # in declaration order


def encoding() -> dict[str, Any]:
    vectors = []
    for n, (type_, (payload, fields)) in enumerate(payload_examples().items(), start=1):
        signer = OPERATOR if type_ in CONTROL_TYPES else ALPHA
        sealed = seal(
            signer, ChainHead(), payload, now_ns=T0 + n * MS, entropy=entropy(n), **fields
        )
        signed = decode_signed(sealed.data)
        subject = subject_for(NAMESPACE, sealed.envelope)
        checked = check(StoredMessage(1, subject, sealed.data), NAMESPACE)
        expect(reason_of(checked.rejection), None, f"the verdict of valid/{type_}")
        vectors.append(
            {
                "name": f"valid/{type_}",
                "rule": f"a {type_} event encoded, signed and stored under its subject is valid",
                "keys": keys(signer.agent_id),
                "signer_public_key": signer.public_key,
                "sender": signer.agent_id,
                "subject": subject,
                "data": sealed.data.hex(),
                "body": signed.body.hex(),
                "signature": signed.signature.hex(),
                "envelope": as_json(decode_envelope(signed.body)),
                "expected": {"verdict": "valid"},
            }
        )
    return document(
        "One valid event of every payload type: data is the stored message (the MessagePack"
        " SignedEvent [body, signature]), body the MessagePack envelope, signature Ed25519 over"
        f" the event domain {EVENT_DOMAIN.hex()} followed by body; envelope is the decoded body"
        " as JSON. Each passes the stateless checks (size, decoding, id against occurred_at,"
        f" subject in namespace {NAMESPACE!r}, signature).",
        vectors,
    )


# --- stateless.json -----------------------------------------------------------------------------


def _flip(data: bytes, index: int, bit: int = 1) -> bytes:
    out = bytearray(data)
    out[index] ^= bit
    return bytes(out)


def stateless() -> dict[str, Any]:
    n = iter(range(1, 1000))

    def sealed(payload: p.Payload, who: Identity = ALPHA, **fields: Any) -> Sealed:
        i = next(n)
        return seal(who, ChainHead(), payload, now_ns=T0 + i * MS, entropy=entropy(i), **fields)

    good = sealed(p.Result(task_id="t1", output="forty-two"))
    good_subject = subject_for(NAMESPACE, good.envelope)

    # A signed map that is no envelope.
    junk_body = msgspec.msgpack.encode({"id": "not an envelope", "sender": "alpha"})
    junk = signed_data(junk_body, ALPHA.sign(EVENT_DOMAIN, junk_body))

    # An envelope whose id encodes another millisecond than its occurred_at.
    i = next(n)
    skewed = Envelope(
        id=new_event_id(T0 + i * MS + 5 * MS, entropy(i)),
        sender="alpha",
        signer=ALPHA.public_key,
        sender_seq=1,
        prev_hash="",
        occurred_at=T0 + i * MS,
        payload=p.TaskStarted(task_id="t1"),
    )
    skewed_body = encode(skewed)
    skewed_data = signed_data(skewed_body, ALPHA.sign(EVENT_DOMAIN, skewed_body))

    text = good.data.index(b"forty-two")
    # Signed with the credential domain: a signature for another use.
    i = next(n)
    prepared = prepare(
        ALPHA, ChainHead(), p.TaskStarted(task_id="t1"), now_ns=T0 + i * MS, entropy=entropy(i)
    )
    wrong_domain = signed_data(prepared.body, ALPHA.sign(CREDENTIAL_DOMAIN, prepared.body))

    # A JSON field holding a map whose key is nil: MessagePack carries it, JSON cannot.
    i = next(n)
    keyed = Envelope(
        id=new_event_id(T0 + i * MS, entropy(i)),
        sender="alpha",
        signer=ALPHA.public_key,
        sender_seq=1,
        prev_hash="",
        occurred_at=T0 + i * MS,
        payload=p.Result(task_id="t1", output={None: 1}),
    )
    keyed_body = msgspec.msgpack.encode(keyed)  # by hand: swarmlog's sealing refuses it
    keyed_data = signed_data(keyed_body, ALPHA.sign(EVENT_DOMAIN, keyed_body))

    cases: list[tuple[str, str, str, bytes, str]] = [
        (
            "malformed/non-json-key",
            "a JSON field holding a map whose key is nil (or a boolean, or an array) is"
            " malformed: it has no JSON form, even when correctly signed and stored under its"
            " subject",
            subject_for(NAMESPACE, keyed),
            keyed_data,
            "malformed",
        ),
        (
            "malformed/not-msgpack",
            "bytes that are not MessagePack (0xc1 is never used) are malformed",
            "swarmlog.default.alpha.task.t1.result",
            b"\xc1\xc1\xc1",
            "malformed",
        ),
        (
            "malformed/truncated",
            "a signed event cut short (its last 10 bytes missing) is malformed",
            good_subject,
            good.data[:-10],
            "malformed",
        ),
        (
            "malformed/bad-envelope",
            "a correctly signed body that does not decode as an envelope is malformed",
            "swarmlog.default.alpha.task.t1.result",
            junk,
            "malformed",
        ),
        (
            "malformed/id-time-mismatch",
            "an event whose id (a ULID) encodes another millisecond than its occurred_at is"
            " malformed, even when correctly signed and stored under its subject",
            subject_for(NAMESPACE, skewed),
            skewed_data,
            "malformed",
        ),
        (
            "subject_mismatch",
            "a valid signed event stored under another subject than the one it implies"
            " (here another task's) is quarantined",
            "swarmlog.default.alpha.task.t2.result",
            good.data,
            "subject_mismatch",
        ),
        (
            "bad_signature/bit-flipped-body",
            "one bit flipped in the body (the output 'forty-two' becomes 'gorty-two': it still"
            " decodes, under the same subject) breaks the signature",
            good_subject,
            _flip(good.data, text),
            "bad_signature",
        ),
        (
            "bad_signature/bit-flipped-signature",
            "one bit flipped in the signature (its last byte) breaks it",
            good_subject,
            _flip(good.data, len(good.data) - 1),
            "bad_signature",
        ),
        (
            "bad_signature/wrong-domain",
            "an event signed over the credential domain"
            f" ({CREDENTIAL_DOMAIN.hex()}) instead of the event domain is a bad signature: a"
            " signature made for one use never passes for another",
            subject_for(NAMESPACE, prepared.envelope),
            wrong_domain,
            "bad_signature",
        ),
    ]
    oversized_length = MAX_EVENT_BYTES + 1
    oversized = bytes(oversized_length)
    vectors: list[dict[str, Any]] = [
        {
            "name": "oversized",
            "rule": f"a message larger than {MAX_EVENT_BYTES} bytes is quarantined before it"
            " is decoded",
            "subject": good_subject,
            "max_event_bytes": MAX_EVENT_BYTES,
            "data_length": oversized_length,
            "data_fill": "00",
            "data_note": "data is data_fill repeated data_length times (written out it would"
            " be a megabyte of hex)",
            "expected": {"verdict": "quarantined", "reason": "oversized"},
        }
    ]
    for name, rule, subject, data, reason in cases:
        rejection = check(StoredMessage(1, subject, data), NAMESPACE).rejection
        expect(reason_of(rejection), reason, f"the verdict of {name}")
        vectors.append(
            {
                "name": name,
                "rule": rule,
                "keys": keys("alpha"),
                "subject": subject,
                "data": data.hex(),
                "expected": {"verdict": "quarantined", "reason": reason},
            }
        )
    rejection = check(StoredMessage(1, good_subject, oversized), NAMESPACE).rejection
    expect(reason_of(rejection), "oversized", "the verdict of oversized")
    return document(
        "Messages the stateless check quarantines (namespace 'default'): no projection state"
        " is needed to reject them. The checks run in this order: size, decoding (signed"
        " event, then envelope), the id's time against occurred_at, the subject, the"
        " signature.",
        vectors,
    )


# --- sequences.json -----------------------------------------------------------------------------


@dataclass
class Run:
    """One run of stored messages, built in stream order from the fixed identities."""

    name: str
    rule: str
    names: tuple[str, ...]
    """Whose keys the vector lists (the operator first)."""
    messages: list[StoredMessage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    intended: list[str] = field(default_factory=list)
    """The verdict each message is meant to show: ``applied`` or a reason."""
    heads: dict[str, ChainHead] = field(default_factory=dict)
    now: int = T0
    count: int = 0

    def emit(
        self,
        who: Identity,
        payload: p.Payload,
        note: str,
        *,
        expect: str = "applied",
        after: ChainHead | None = None,
        at: int | None = None,
        stored_at: int | None = None,
        same_id_as: StoredMessage | None = None,
        advance: bool = True,
        **fields: Any,
    ) -> Sealed:
        """Seal ``payload`` as ``who``'s next event (after ``after``, by default its head) and
        store it. ``at`` is its occurred_at (default: a millisecond after the last),
        ``stored_at`` the server's time (default: :data:`STORE_DELAY` later); ``same_id_as``
        reuses another message's clock and entropy, so its id."""
        self.now += MS
        self.count += 1
        occurred = self.now if at is None else at
        noise = entropy(self.count)
        if same_id_as is not None:
            envelope = decode_envelope(decode_signed(same_id_as.data).body)
            occurred = envelope.occurred_at
            noise = self._entropy_of[envelope.id]
        head = self.heads.get(who.agent_id, ChainHead()) if after is None else after
        sealed = seal(who, head, payload, now_ns=occurred, entropy=noise, **fields)
        self._entropy_of[sealed.id] = noise
        if advance:
            self.heads[who.agent_id] = sealed.head
        self.store(
            subject_for(NAMESPACE, sealed.envelope),
            sealed.data,
            note,
            expect=expect,
            stored_at=occurred + STORE_DELAY if stored_at is None else stored_at,
        )
        return sealed

    def store(
        self, subject: str, data: bytes, note: str, *, expect: str, stored_at: int | None = None
    ) -> StoredMessage:
        seq = len(self.messages) + 1
        when = self.now + STORE_DELAY if stored_at is None else stored_at
        message = StoredMessage(seq, subject, data, when)
        self.messages.append(message)
        self.notes.append(note)
        self.intended.append(expect)
        return message

    def issue(self, agent: Identity, note: str = "", **extra: Any) -> Sealed:
        cred = credential(agent, **extra)
        return self.emit(
            OPERATOR,
            issue_credential(OPERATOR, cred),
            note or f"the operator issues {agent.agent_id}'s credential (role {cred.role})",
        )

    def __post_init__(self) -> None:
        self._entropy_of: dict[str, bytes] = {}

    def vector(self) -> dict[str, Any]:
        state = State()
        checked = [check(m, NAMESPACE) for m in self.messages]
        rejected = dict(fold_checked(state, checked, OPERATOR.public_key))
        verdicts: list[dict[str, str]] = []
        for m in self.messages:
            reason = rejected.get(m.seq)
            verdicts.append(
                {"verdict": "applied"}
                if reason is None
                else {"verdict": "quarantined", "reason": reason}
            )
        got = [v.get("reason", "applied") for v in verdicts]
        expect(got, self.intended, f"the verdicts of {self.name}")
        times = [m.stored_at for m in self.messages]
        expect(times, sorted(times), f"the storage times of {self.name} (never decreasing)")
        breaks = [
            {k: row[k] for k in ("seq", "sender", "expected_seq", "got_seq")}
            for _, row in sorted(state.rows["chain_breaks"].items())
        ]
        return {
            "name": self.name,
            "rule": self.rule,
            "namespace": NAMESPACE,
            "operator_public_key": OPERATOR.public_key,
            "keys": keys(*self.names),
            "messages": [
                {
                    "seq": m.seq,
                    "subject": m.subject,
                    "stored_at": m.stored_at,
                    "data": m.data.hex(),
                    "note": note,
                }
                for m, note in zip(self.messages, self.notes, strict=True)
            ],
            "expected": {"verdicts": verdicts, "chain_breaks": breaks},
        }


def run_valid() -> Run:
    r = Run(
        "valid/credential-then-events",
        "the operator issues a credential; the agent's events, each chained onto the one"
        " before, are all applied",
        (OPERATOR_ID, "alpha"),
    )
    r.issue(ALPHA, capabilities=["summarize"])
    r.emit(
        OPERATOR,
        p.TaskAssignment(task_id="t1", role="worker", capability="summarize"),
        "the operator assigns task t1 to role worker",
    )
    r.emit(
        ALPHA,
        p.AgentRegistered(agent_id="alpha", role="worker", capabilities=["summarize"]),
        "alpha registers (its first event: sender_seq 1, prev_hash empty)",
    )
    r.emit(ALPHA, p.TaskStarted(task_id="t1"), "alpha starts t1, a task of its role")
    r.emit(ALPHA, p.Result(task_id="t1", output="a fox"), "alpha answers t1")
    return r


def run_unknown_signer() -> Run:
    r = Run(
        "unknown_signer",
        "an event signed by a key no credential_issued names is quarantined, as is one that"
        " names the operator as sender under another key than the trusted operator key",
        (OPERATOR_ID, "alpha", "mallory"),
    )
    r.issue(ALPHA)
    r.emit(
        MALLORY,
        p.AgentRegistered(agent_id="mallory", role="worker"),
        "mallory, who holds no credential, registers",
        expect="unknown_signer",
    )
    r.emit(
        identity("mallory", OPERATOR_ID),
        p.AgentKilled(agent_id="alpha", reason="forged"),
        "mallory's key signs a kill switch as sender 'operator'",
        expect="unknown_signer",
    )
    return r


def run_wrong_sender() -> Run:
    r = Run(
        "wrong_sender",
        "a key signs only as the agent its credential names, and the operator key only as"
        " 'operator'",
        (OPERATOR_ID, "alpha", "beta"),
    )
    r.issue(ALPHA)
    r.issue(BETA)
    r.emit(
        identity("alpha", "beta"),
        p.AgentStopped(agent_id="beta", reason="forged"),
        "alpha's key signs an event naming beta as sender",
        expect="wrong_sender",
    )
    r.emit(
        identity(OPERATOR_ID, "alpha"),
        p.AgentStopped(agent_id="alpha"),
        "the operator key signs an event naming alpha as sender",
        expect="wrong_sender",
    )
    return r


def run_revoked() -> Run:
    r = Run(
        "revoked",
        "once the operator revokes a key, its events are quarantined",
        (OPERATOR_ID, "alpha"),
    )
    r.issue(ALPHA)
    r.emit(ALPHA, p.AgentRegistered(agent_id="alpha", role="worker"), "alpha registers")
    r.emit(
        OPERATOR,
        p.CredentialRevoked(public_key=ALPHA.public_key, reason="key leaked"),
        "the operator revokes alpha's key",
    )
    r.emit(
        ALPHA,
        p.AgentStopped(agent_id="alpha"),
        "alpha's next event, signed by the revoked key",
        expect="revoked",
    )
    return r


def run_expired() -> Run:
    expires = T0 + 10 * MS
    r = Run(
        "expired",
        "an event is quarantined when its occurred_at or the server's storage time, whichever"
        " is later, is past its credential's expires_at (a signer cannot backdate it)",
        (OPERATOR_ID, "alpha"),
    )
    r.issue(ALPHA, expires_at=expires)
    r.emit(
        ALPHA,
        p.AgentRegistered(agent_id="alpha", role="worker"),
        f"alpha registers before its credential expires at {expires}",
    )
    r.emit(
        ALPHA,
        p.AgentHeartbeat(agent_id="alpha"),
        "alpha's event dated before the expiry, but stored after it",
        at=expires - MS,
        stored_at=expires + 5 * MS,
        expect="expired",
    )
    return r


def run_not_permitted_type() -> Run:
    r = Run(
        "not_permitted/type",
        "an event of a type the credential's allowed_types leave out is quarantined; the event"
        " is authentic and in sequence, so the sender's chain moves past it (its next event is"
        " no chain break)",
        (OPERATOR_ID, "alpha"),
    )
    r.issue(ALPHA, allowed_types=["agent_registered", "agent_stopped"])
    r.emit(ALPHA, p.AgentRegistered(agent_id="alpha", role="worker"), "alpha registers")
    r.emit(
        ALPHA,
        p.CircuitOpened(circuit="search-api"),
        "alpha opens a circuit: not among its allowed_types",
        expect="not_permitted",
    )
    r.emit(
        ALPHA,
        p.AgentStopped(agent_id="alpha"),
        "alpha stops, chained onto the quarantined event",
    )
    return r


def run_not_permitted_external() -> Run:
    r = Run(
        "not_permitted/external-internal-type",
        "an external agent may not emit an internal type (here task_offered), whatever its"
        " allowed_types say",
        (OPERATOR_ID, "alpha"),
    )
    r.issue(ALPHA, trust_level="external")
    r.emit(
        ALPHA,
        p.TaskOffered(task_id="t9", capability="summarize"),
        "external alpha offers a task",
        expect="not_permitted",
    )
    return r


def run_not_permitted_holder() -> Run:
    r = Run(
        "not_permitted/not-holder",
        "only the task's holder (a replica of the role it is assigned to) may report its result",
        (OPERATOR_ID, "alpha", "beta"),
    )
    r.issue(ALPHA)
    r.issue(BETA, role="writer")
    r.emit(
        OPERATOR,
        p.TaskAssignment(task_id="t1", role="writer"),
        "the operator assigns t1 to role writer",
    )
    r.emit(
        ALPHA,
        p.Result(task_id="t1", output="stolen"),
        "alpha (role worker) answers t1",
        expect="not_permitted",
    )
    r.emit(BETA, p.Result(task_id="t1", output="mine"), "beta (role writer) answers t1")
    return r


def run_killed() -> Run:
    r = Run(
        "killed",
        "while a kill switch is active for its sender (or '*'), an event is quarantined (in"
        " chain); after agent_revived the sender's next event is applied",
        (OPERATOR_ID, "alpha"),
    )
    r.issue(ALPHA)
    r.emit(OPERATOR, p.AgentKilled(agent_id="alpha", reason="runaway"), "the operator kills alpha")
    r.emit(
        ALPHA,
        p.AgentRegistered(agent_id="alpha", role="worker"),
        "alpha registers while killed",
        expect="killed",
    )
    r.emit(OPERATOR, p.AgentRevived(agent_id="alpha"), "the operator revives alpha")
    r.emit(ALPHA, p.AgentStopped(agent_id="alpha"), "alpha's next event")
    return r


def run_bad_credential() -> Run:
    r = Run(
        "bad_credential",
        "a credential_issued whose credential is not signed by the operator key over the"
        " credential domain is quarantined, and the key it names stays unknown",
        (OPERATOR_ID, "mallory"),
    )
    forged = credential(MALLORY)
    body = encode(forged)
    r.emit(
        OPERATOR,
        p.CredentialIssued(credential=body, signature=MALLORY.sign(CREDENTIAL_DOMAIN, body)),
        "an operator-signed credential_issued whose credential mallory signed itself",
        expect="bad_credential",
    )
    r.emit(
        MALLORY,
        p.AgentRegistered(agent_id="mallory", role="worker"),
        "mallory registers",
        expect="unknown_signer",
    )
    return r


def run_replayed() -> Run:
    r = Run(
        "replayed",
        "a copy of a sender's earlier event (sender_seq at or below its chain head) is"
        " quarantined as a replay, before the duplicate id is looked at",
        (OPERATOR_ID, "alpha"),
    )
    r.issue(ALPHA)
    r.emit(ALPHA, p.AgentRegistered(agent_id="alpha", role="worker"), "alpha registers")
    r.emit(ALPHA, p.AgentHeartbeat(agent_id="alpha"), "alpha's second event")
    first = r.messages[1]
    r.store(
        first.subject,
        first.data,
        "the first event of alpha again, at a new stream sequence",
        expect="replayed",
    )
    return r


def run_chain_fork() -> Run:
    r = Run(
        "chain_fork",
        "an event at the sender's next sender_seq whose prev_hash is not the hash of the"
        " sender's previous body is quarantined; the chain stays where it was",
        (OPERATOR_ID, "alpha"),
    )
    r.issue(ALPHA)
    first = r.emit(ALPHA, p.AgentRegistered(agent_id="alpha", role="worker"), "alpha registers")
    r.emit(
        ALPHA,
        p.AgentStopped(agent_id="alpha", reason="forked"),
        "alpha's sender_seq 2, chained onto another body than its first",
        after=ChainHead(1, "00" * 32),
        advance=False,
        expect="chain_fork",
    )
    r.emit(
        ALPHA,
        p.AgentHeartbeat(agent_id="alpha"),
        "alpha's sender_seq 2 chained onto its first event",
        after=first.head,
    )
    return r


def run_duplicate_id() -> Run:
    r = Run(
        "duplicate_id",
        "an event whose id was already applied is quarantined, whoever sends it",
        (OPERATOR_ID, "alpha", "beta"),
    )
    r.issue(ALPHA)
    r.issue(BETA)
    r.emit(ALPHA, p.AgentRegistered(agent_id="alpha", role="worker"), "alpha registers")
    r.emit(
        BETA,
        p.AgentRegistered(agent_id="beta", role="worker"),
        "beta registers under the id of alpha's event (same millisecond, same entropy)",
        same_id_as=r.messages[2],
        expect="duplicate_id",
    )
    return r


def run_bad_timestamp() -> Run:
    r = Run(
        "bad_timestamp",
        f"an event dated more than {MAX_AHEAD_NS // 60_000_000_000} minutes after (or"
        f" {MAX_BEHIND_NS // 3_600_000_000_000} hour before) the server stored it is"
        " quarantined; in chain, so the sender's next event is no chain break",
        (OPERATOR_ID, "alpha"),
    )
    r.issue(ALPHA)
    stored = r.now + 10 * MS
    r.emit(
        ALPHA,
        p.AgentRegistered(agent_id="alpha", role="worker"),
        "alpha registers with a clock 6 minutes ahead of the server's",
        at=stored + 6 * 60_000 * MS,
        stored_at=stored,
        expect="bad_timestamp",
    )
    r.now = stored
    r.emit(ALPHA, p.AgentHeartbeat(agent_id="alpha"), "alpha's next event, on time")
    return r


def run_chain_gap() -> Run:
    r = Run(
        "chain_gap",
        "an event whose sender_seq jumps past the sender's next one is applied, not"
        " quarantined, and the gap is recorded as a chain break; the missing event, stored"
        " later, is then a replay",
        (OPERATOR_ID, "alpha"),
    )
    r.issue(ALPHA)
    r.emit(ALPHA, p.AgentRegistered(agent_id="alpha", role="worker"), "alpha's sender_seq 1")
    head = r.heads["alpha"]
    missing = seal(
        ALPHA,
        head,
        p.AgentHeartbeat(agent_id="alpha", in_flight=1),
        now_ns=r.now + MS,
        entropy=entropy(100),
    )
    r.now += MS
    r.emit(
        ALPHA,
        p.AgentHeartbeat(agent_id="alpha", in_flight=2),
        "alpha's sender_seq 3 (sender_seq 2 is not on the stream yet)",
        after=missing.head,
    )
    r.store(
        subject_for(NAMESPACE, missing.envelope),
        missing.data,
        "alpha's sender_seq 2, stored late",
        expect="replayed",
        stored_at=missing.envelope.occurred_at + 10 * MS,
    )
    return r


RUNS: tuple[Callable[[], Run], ...] = (
    run_valid,
    run_unknown_signer,
    run_wrong_sender,
    run_revoked,
    run_expired,
    run_not_permitted_type,
    run_not_permitted_external,
    run_not_permitted_holder,
    run_killed,
    run_bad_credential,
    run_replayed,
    run_chain_fork,
    run_duplicate_id,
    run_bad_timestamp,
    run_chain_gap,
)


def sequences() -> dict[str, Any]:
    return document(
        "Runs of stored messages, each folded from an empty projection in stream order (the"
        " stateless check, then admit, then apply or quarantine) with the operator key"
        " operator_public_key as the root of trust: the verdict of each message, in order, and"
        " the chain breaks recorded (an applied event, or one quarantined in chain, whose"
        " sender_seq is not its sender's next). stored_at is the server's storage time (ns).",
        [make().vector() for make in RUNS],
    )


# --- stream_chain.json --------------------------------------------------------------------------

CHAIN_DATA = (b"first message", b"second message", b"third message")


def stream_chain() -> dict[str, Any]:
    def walk(seqs: list[int]) -> tuple[StreamChain, list[dict[str, Any]]]:
        chain = StreamChain()
        steps = []
        for seq, data in zip(seqs, [*CHAIN_DATA, b"fourth message"], strict=False):
            chain.add(seq, data)
            steps.append({"seq": seq, "data": data.hex(), "head": chain.hexhead})
        return chain, steps

    common = {"domain": CHAIN_DOMAIN.hex(), "initial_head": bytes(32).hex()}
    run, run_steps = walk([1, 2, 3])
    gap, gap_steps = walk([1, 2, 5, 6])
    return document(
        "The stream chain: head_0 is 32 zero bytes and head_n = sha256(domain || head_(n-1) ||"
        " seq as 8 bytes big-endian || sha256(data)), for each stored message in stream order;"
        " a sequence that does not follow the last is recorded as a gap (first, last missing).",
        [
            {
                "name": "stream-chain/run",
                "rule": "each message moves the head on; the head after the last is the chain's",
                **common,
                "messages": run_steps,
                "expected": {"head": run.hexhead, "position": run.position, "gaps": []},
            },
            {
                "name": "stream-chain/gap",
                "rule": "missing sequences (deleted messages) are reported as gaps, and the head"
                " still chains over the sequences present",
                **common,
                "messages": gap_steps,
                "expected": {
                    "head": gap.hexhead,
                    "position": gap.position,
                    "gaps": [list(g) for g in gap.gaps],
                },
            },
        ],
    )


# --- checkpoint.json ----------------------------------------------------------------------------


def checkpoint_text(cp: Checkpoint) -> str:
    """The file ``swarmlog audit checkpoint`` writes."""
    return (msgspec.json.format(msgspec.json.encode(cp)) + b"\n").decode()


def checkpoint() -> dict[str, Any]:
    chain = StreamChain()
    for seq, data in enumerate(CHAIN_DATA, start=1):
        chain.add(seq, data)
    unsigned = Checkpoint(
        namespace=NAMESPACE,
        seq=chain.position,
        head=chain.hexhead,
        created_at="2023-11-14T22:13:20+00:00",
        operator_key=OPERATOR.public_key,
    )
    valid = sign_checkpoint(OPERATOR, unsigned)
    altered = msgspec.structs.replace(valid, head="ff" * 32)
    other_operator = identity("other-operator")
    other = sign_checkpoint(
        other_operator, msgspec.structs.replace(unsigned, operator_key=other_operator.public_key)
    )
    cases = [
        (
            "checkpoint/valid",
            "a checkpoint signed by the operator key over the checkpoint domain and its body"
            " (the checkpoint's JSON with keys sorted and signature empty) verifies",
            valid,
            (OPERATOR_ID,),
            None,
        ),
        (
            "checkpoint/altered",
            "a checkpoint whose head was changed after signing does not verify",
            altered,
            (OPERATOR_ID,),
            "checkpoint_signature",
        ),
        (
            "checkpoint/other-operator",
            "a checkpoint signed by another operator is refused before its signature is checked",
            other,
            (OPERATOR_ID, "other-operator"),
            "checkpoint_operator",
        ),
    ]
    vectors = []
    for name, rule, cp, who, error in cases:
        try:
            verify_checkpoint(cp, OPERATOR.public_key)
            got = None
        except VerificationError as exc:
            got = exc.reason
        expect(got, error, f"the verdict of {name}")
        vectors.append(
            {
                "name": name,
                "rule": rule,
                "keys": keys(*who),
                "operator_public_key": OPERATOR.public_key,
                "domain": CHECKPOINT_DOMAIN.hex(),
                "checkpoint": checkpoint_text(cp),
                "signed_bytes": cp.body().hex(),
                "expected": {"verdict": "valid"}
                if error is None
                else {"verdict": "invalid", "error": error},
            }
        )
    return document(
        "Signed checkpoints of the stream chain (the stream-chain/run head at seq 3), as the"
        " file `swarmlog audit checkpoint` writes; verified against operator_public_key, the"
        " trusted operator key. signed_bytes is what the signature covers after the domain.",
        vectors,
    )


# --- login.json ---------------------------------------------------------------------------------


def login() -> dict[str, Any]:
    vectors = []
    for name, agent_id in (("login/agent", "alpha"), ("login/operator", OPERATOR_ID)):
        got = login_for(agent_id, SEEDS[agent_id])
        vectors.append(
            {
                "name": name,
                "rule": "the NATS login is an nkey user whose 32-byte seed is sha256(login domain"
                " || the Ed25519 seed)",
                "agent_id": agent_id,
                "login_domain": LOGIN_DOMAIN.hex(),
                "seed": SEEDS[agent_id].hex(),
                "public_key": identity(agent_id).public_key,
                "expected": {
                    "nkey_seed": got.seed,
                    "nkey_public_key": got.public_key,
                    "inbox_prefix": got.inbox_prefix,
                    "api_prefix": got.api_prefix,
                },
            }
        )
    return document(
        "NATS logins derived from Ed25519 seeds: seed is the agent's (or operator's) event"
        " signing seed, public_key its Ed25519 public key; the nkey pair is derived from it"
        " under its own domain, so a login nonce signature is never an event signature.",
        vectors,
    )


# --- credential.json ----------------------------------------------------------------------------


def credential_vectors() -> dict[str, Any]:
    cred = credential(
        ALPHA,
        capabilities=["summarize"],
        allowed_types=["*"],
        expires_at=T0 + 86_400_000 * MS,
        tools=["word_count"],
    )
    issued = issue_credential(OPERATOR, cred)
    flipped = _flip(issued.signature, 0)
    cases = [
        (
            "credential/valid",
            "a credential is valid when the operator key signed its MessagePack encoding over"
            " the credential domain and it names that key as issuer",
            issued.signature,
            None,
        ),
        (
            "credential/bad-signature",
            "a credential whose signature has one bit flipped is a bad credential",
            flipped,
            "bad_credential",
        ),
    ]
    vectors = []
    for name, rule, signature, reason in cases:
        rejection = check_credential(
            p.CredentialIssued(credential=issued.credential, signature=signature),
            OPERATOR.public_key,
        )
        expect(reason_of(rejection), reason, f"the verdict of {name}")
        vectors.append(
            {
                "name": name,
                "rule": rule,
                "keys": keys(OPERATOR_ID, "alpha"),
                "operator_public_key": OPERATOR.public_key,
                "domain": CREDENTIAL_DOMAIN.hex(),
                "fields": as_json(cred),
                "credential": issued.credential.hex(),
                "signature": signature.hex(),
                "expected": {"verdict": "valid"}
                if reason is None
                else {"verdict": "invalid", "reason": reason},
            }
        )
    return document(
        "Operator-signed credentials (the credential and signature of a credential_issued"
        " event): fields is the credential as JSON, credential its MessagePack bytes, signature"
        " the operator's Ed25519 signature over domain || credential.",
        vectors,
    )


# --- all ----------------------------------------------------------------------------------------

# --- batch.json -------------------------------------------------------------------------------


def batch() -> dict[str, Any]:
    prepared, head = [], ChainHead()
    for i, payload in enumerate(
        [
            p.TaskStarted(task_id="t1"),
            p.Result(task_id="t1", output="forty-two"),
            p.TaskCompleted(task_id="t1"),
        ]
    ):
        ready = prepare(ALPHA, head, payload, now_ns=T0 + (i + 1) * MS, entropy=entropy(i + 1))
        prepared.append(ready)
        head = ready.head
    sealed = sign_all(prepared, ALPHA)
    leaves = [leaf_hash(r.body) for r in prepared]
    root, paths = tree(leaves)
    signed = [decode_signed(s.data) for s in sealed]
    expect([s.proof for s in signed], [BatchProof(i, 3, paths[i]) for i in range(3)], "the proofs")
    subjects = [subject_for(NAMESPACE, s.envelope) for s in sealed]
    members = []
    for s, subject, leaf in zip(sealed, subjects, leaves, strict=True):
        expect(check(StoredMessage(1, subject, s.data), NAMESPACE).rejection, None, "a member")
        d = decode_signed(s.data)
        assert d.proof is not None
        members.append(
            {
                "subject": subject,
                "data": s.data.hex(),
                "body": d.body.hex(),
                "leaf": leaf.hex(),
                "index": d.proof.index,
                "path": [h.hex() for h in d.proof.path],
            }
        )
    vectors: list[dict[str, Any]] = [
        {
            "name": "batch/valid",
            "rule": "three events of alpha signed with one signature over the root of their"
            " tree: each message is [body, signature, [index, size, path]] and verifies alone",
            "keys": keys("alpha"),
            "size": 3,
            "root": root.hex(),
            "signed_message": (BATCH_DOMAIN + batch_message(3, root)).hex(),
            "signature": signed[0].signature.hex(),
            "messages": members,
            "expected": {"verdict": "valid"},
        }
    ]
    body, signature, proof = signed[1].body, signed[1].signature, signed[1].proof
    assert proof is not None
    flipped = bytearray(body)
    flipped[body.index(b"forty-two")] ^= 1
    one = BatchProof(proof.index, proof.size, proof.path)
    cases: list[tuple[str, str, bytes, str]] = [
        (
            "batch/altered-body",
            "one bit flipped in a batch member's body ('forty-two' becomes 'gorty-two') leads"
            " its path to another root: bad signature",
            signed_data(bytes(flipped), signature, one),
            "bad_signature",
        ),
        (
            "batch/wrong-index",
            "the same path under another index (0 instead of 1) leads to another root",
            signed_data(body, signature, BatchProof(0, 3, proof.path)),
            "bad_signature",
        ),
        (
            "batch/short-path",
            "a path one hash short of the tree's depth fits no tree of its size",
            signed_data(body, signature, BatchProof(1, 3, proof.path[:-1])),
            "bad_signature",
        ),
        (
            "batch/long-path",
            "a path one hash longer than the tree's depth fits no tree of its size",
            signed_data(body, signature, BatchProof(1, 3, [*proof.path, root])),
            "bad_signature",
        ),
        (
            "batch/wrong-size",
            "the same path in a tree said to be of 4 events: the signature covers the size",
            signed_data(body, signature, BatchProof(1, 4, proof.path)),
            "bad_signature",
        ),
        (
            "batch/proof-stripped",
            "a batch member without its proof: the signature is not over its body alone",
            signed_data(body, signature),
            "bad_signature",
        ),
        (
            "batch/proof-not-a-proof",
            "a third element that is not a proof (here a string) is malformed",
            msgspec.msgpack.encode((body, signature, "proof")),
            "malformed",
        ),
        (
            "batch/fourth-element",
            "an element after the proof is malformed: it would be unsigned, and readers' decoders"
            " could disagree on what they skip",
            msgspec.msgpack.encode((body, signature, one, "junk")),
            "malformed",
        ),
        (
            "batch/size-one",
            "a proof of a batch of one is malformed (an event alone is signed alone)",
            msgspec.msgpack.encode((body, signature, (0, 1, []))),
            "malformed",
        ),
    ]
    for name, rule, data, reason in cases:
        rejection = check(StoredMessage(1, subjects[1], data), NAMESPACE).rejection
        expect(reason_of(rejection), reason, f"the verdict of {name}")
        vectors.append(
            {
                "name": name,
                "rule": rule,
                "keys": keys("alpha"),
                "subject": subjects[1],
                "data": data.hex(),
                "expected": {"verdict": "quarantined", "reason": reason},
            }
        )
    single = seal(ALPHA, ChainHead(), p.TaskStarted(task_id="t2"), now_ns=T0, entropy=entropy(9))
    alone = decode_signed(single.data)
    nil = msgspec.msgpack.encode((alone.body, alone.signature, None))
    expect(
        check(StoredMessage(1, subject_for(NAMESPACE, single.envelope), nil), NAMESPACE).rejection,
        None,
        "nil proof",
    )
    vectors.append(
        {
            "name": "batch/nil-proof",
            "rule": "an event signed alone with a nil third element: no proof, its signature is"
            " over its body",
            "keys": keys("alpha"),
            "subject": subject_for(NAMESPACE, single.envelope),
            "data": nil.hex(),
            "expected": {"verdict": "valid"},
        }
    )
    return document(
        "Events signed in a batch (namespace 'default'): one Ed25519 signature by the signer"
        " over BATCH_DOMAIN || size (8 bytes, big-endian) || root, root the RFC 9162 Merkle"
        " tree head of the batch's bodies (leaf sha256(00 || body), node sha256(01 || left ||"
        " right)); each member carries its index, the size and its inclusion path.",
        vectors,
    )


BUILDERS: dict[str, Callable[[], dict[str, Any]]] = {
    "encoding.json": encoding,
    "stateless.json": stateless,
    "sequences.json": sequences,
    "stream_chain.json": stream_chain,
    "checkpoint.json": checkpoint,
    "login.json": login,
    "credential.json": credential_vectors,
    "batch.json": batch,
}
expect(tuple(BUILDERS), FILES, "the vector files")


def build() -> dict[str, dict[str, Any]]:
    """Every vector file's document, by file name."""
    return {name: make() for name, make in BUILDERS.items()}


def _written(target: Path) -> Iterator[tuple[Path, str]]:
    for name, doc in build().items():
        yield target / name, render(doc)


def main(argv: list[str] | None = None) -> int:
    """Write the vector files (next to this script, or into the directory given)."""
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else HERE
    for path, text in _written(target):
        changed = not path.exists() or path.read_text() != text
        path.write_text(text)
        doc = json.loads(text)
        print(f"{path}: {len(doc['vectors'])} vectors{' (changed)' if changed else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
