# Over 400 lines: every rule a reader applies to a message, in the order it applies them.
"""Verification (pure): is a stored message an event that may be applied?

Two stages. :func:`check` is stateless (size, decoding, subject, signature), so the projector
runs it in threads. :func:`admit` runs in stream order against the projection state (credential
chain to the operator, revocation, expiry, permission, kill switches, per-sender chain, duplicate
ids, the event's time against the server's, and authority: what the credential allows, and
whose task, question or claim the event speaks to). A message that fails either is never applied:
it is quarantined with one of the stable reason codes in :data:`REASONS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import msgspec

from swarmlog.bus.ports import StoredMessage
from swarmlog.bus.subjects import subject_for
from swarmlog.errors import SchemaError
from swarmlog.projections.state import Key, State
from swarmlog.schemas import payloads as p
from swarmlog.schemas.codec import (
    MAX_EVENT_BYTES,
    decode_credential,
    decode_envelope,
    decode_signed,
)
from swarmlog.schemas.credentials import tool_permitted
from swarmlog.schemas.envelope import Envelope
from swarmlog.schemas.ids import event_id_time_ms
from swarmlog.schemas.signing import (
    CONTROL_TYPES,
    CREDENTIAL_DOMAIN,
    INTERNAL_TYPES,
    OPERATOR_ID,
    ROUTER_ROLE,
    WATCHDOG_ROLE,
    ChainHead,
    event_hash,
    signed_validly,
    verify_signature,
)

__all__ = [
    "HOLDER_TYPES",
    "MAX_AHEAD_NS",
    "MAX_BEHIND_NS",
    "OVERSEEN_TYPES",
    "REASONS",
    "Checked",
    "Rejection",
    "admit",
    "chain_position",
    "check",
    "check_credential",
    "creates",
    "next_own_head",
    "time_problem",
    "touches",
    "touches_then",
    "touches_where",
]

REASONS: dict[str, str] = {
    "oversized": "the message is larger than the event size limit",
    "malformed": "the message is not a well-formed signed event",
    "subject_mismatch": "the event is stored under a subject other than the one it implies",
    "bad_signature": "the signature does not match the event body and signer key",
    "unknown_signer": "no operator-issued credential exists for the signer key",
    "wrong_sender": "the signer key does not belong to the sender the event names",
    "revoked": "the signer key was revoked by the operator",
    "expired": "the signer's credential had expired when the event was emitted",
    "not_permitted": "the signer's credential does not allow this event type",
    "killed": "the sender was stopped by a kill switch",
    "bad_credential": "a credential_issued event carries an invalid credential",
    "replayed": "the sender already emitted an event at this chain position (a replay)",
    "chain_fork": "the event does not chain onto the sender's previous event",
    "duplicate_id": "an event with this id was already applied",
    "bad_timestamp": "the event's occurred_at is too far from the time the server stored it",
}
"""Every reason a message can be quarantined for."""

MAX_AHEAD_NS = 5 * 60 * 1_000_000_000
"""How far an event's ``occurred_at`` may run ahead of the server's storage time of its message:
the clock skew tolerated between an agent's host and the server (5 minutes)."""
MAX_BEHIND_NS = 60 * 60 * 1_000_000_000
"""How far ``occurred_at`` may lag behind the storage time: an event is sealed just before it is
appended (and sealed again on a retry), so this covers skew and a client's reconnect buffering
with a wide margin (1 hour)."""

HOLDER_TYPES = frozenset(
    {
        "task_started",
        "task_heartbeat",
        "task_checkpointed",
        "task_completed",
        "task_retry_scheduled",
        "result",
        "error",
        "model_call_requested",
        "model_call_completed",
        "tool_call_requested",
        "tool_call_completed",
    }
)
"""Task lifecycle types only the task's holder may emit (besides the operator): a replica of the
role the task is assigned to, or the agent whose swarm claim won it. The call journal's events
are among them: a task's model and tool calls are its holder's."""
OVERSEEN_TYPES = frozenset({"task_failed", "task_escalated", "task_cancelled"})
"""Task lifecycle types the holder may emit, and so may the roles that oversee work: the router
(an offer it cannot route) and the watchdog (stalled or deadlocked work)."""
_OVERSEERS = frozenset({ROUTER_ROLE, WATCHDOG_ROLE})


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str
    detail: str = ""
    in_chain: bool = False
    """The event is authentic and in sequence, only not allowed: the sender's chain advances
    past it, so its next event is no gap."""


@dataclass(frozen=True, slots=True)
class Checked:
    """A stored message after the stateless checks."""

    message: StoredMessage
    envelope: Envelope | None
    body_hash: str
    rejection: Rejection | None


def check(message: StoredMessage, namespace: str, *, verify: bool = True) -> Checked:
    """Size, decoding, subject and (with ``verify``) signature: no state needed, thread-safe."""
    if len(message.data) > MAX_EVENT_BYTES:
        return Checked(
            message, None, "", Rejection("oversized", f"{len(message.data)} > {MAX_EVENT_BYTES}")
        )
    try:
        signed = decode_signed(message.data)
        envelope = decode_envelope(signed.body)
    except SchemaError as exc:
        return Checked(message, None, "", Rejection("malformed", exc.message[:500]))
    if event_id_time_ms(envelope.id) != envelope.occurred_at // 1_000_000 % (1 << 48):
        return Checked(
            message, envelope, "", Rejection("malformed", "id does not match occurred_at")
        )
    try:
        expected = subject_for(namespace, envelope)
    except SchemaError as exc:
        return Checked(message, envelope, "", Rejection("malformed", exc.message))
    if expected != message.subject:
        return Checked(message, envelope, "", Rejection("subject_mismatch", f"expected {expected}"))
    if verify and not signed_validly(envelope.signer, signed):
        return Checked(message, envelope, "", Rejection("bad_signature"))
    return Checked(message, envelope, event_hash(signed.body), None)


def next_own_head(
    head: ChainHead, message: StoredMessage, namespace: str, *, sender: str, signer: str
) -> ChainHead | None:
    """``sender``'s chain head after ``message``, as far as the sender itself can tell.

    For a publisher recovering its own chain (signing as ``sender`` with key ``signer``) from
    the messages under its prefix, in stream order after the one ``head`` stands at, without
    the projection's state. The new head when a reader would take ``message`` as the sender's
    next event; ``None`` when a reader rejects it, so the head stays where it was: whatever
    fails :func:`check` (junk, a bad signature, a wrong subject), an event of another sender or
    signed by another key (a reader's ``wrong_sender`` or ``unknown_signer``, unless that key is
    also the sender's: only the projection knows, see the publisher's hint), for the operator an
    identity the reader refuses (``bad_credential``, ...), and then, exactly as :func:`admit`
    orders them, a ``replayed`` copy of an earlier event or a ``chain_fork``.
    """
    checked = check(message, namespace)
    envelope = checked.envelope
    if checked.rejection is not None or envelope is None:
        return None
    if envelope.sender != sender or envelope.signer != signer:
        return None
    if sender == OPERATOR_ID and _check_identity(State(), envelope, signer, message.stored_at):
        return None
    if envelope.sender_seq <= head.seq:
        return None
    if envelope.sender_seq == head.seq + 1 and envelope.prev_hash != head.hash:
        return None
    return ChainHead(envelope.sender_seq, checked.body_hash)


def chain_position(message: StoredMessage, namespace: str, sender: str) -> ChainHead | None:
    """Where ``message`` sits in ``sender``'s chain, if it is a well-formed event of
    ``sender`` under a valid signature (by whichever key): to check that a chain head another
    reader reports is really stored where it says."""
    checked = check(message, namespace)
    envelope = checked.envelope
    if checked.rejection is not None or envelope is None or envelope.sender != sender:
        return None
    return ChainHead(envelope.sender_seq, checked.body_hash)


def touches(envelope: Envelope) -> list[tuple[str, Key]]:
    """The rows admitting and folding ``envelope`` may read: what a store must preload."""
    keys: list[tuple[str, Key]] = [
        ("chain_heads", (envelope.sender,)),
        ("credentials", (envelope.signer,)),
        ("kill_switches", (envelope.sender,)),
        ("kill_switches", ("*",)),
    ]
    payload = envelope.payload
    task_id = getattr(payload, "task_id", None)
    if task_id is not None:
        keys.append(("tasks", (task_id,)))
    if envelope.workflow_id is not None:
        keys += [
            ("workflows", (envelope.workflow_id,)),
            ("budgets", ("workflow", envelope.workflow_id)),
        ]
    match payload:
        case p.CredentialIssued():
            try:
                credential = decode_credential(payload.credential)
            except SchemaError:
                return keys
            keys += [("credentials", (credential.public_key,)), ("agents", (credential.agent_id,))]
        case p.CredentialRevoked():
            keys.append(("credentials", (payload.public_key,)))
        case p.AgentKilled() | p.AgentRevived():
            keys += [("kill_switches", (payload.agent_id,)), ("agents", (payload.agent_id,))]
        case p.AgentRegistered() | p.AgentHeartbeat() | p.AgentStopped():
            keys.append(("agents", (payload.agent_id,)))
        case p.AgentLost() | p.AgentSeen():
            keys.append(("agents", (payload.agent_id,)))
        case p.ClarificationRequest() | p.ClarificationResponse():
            keys += [
                ("waits_for", (payload.request_id,)),
                ("clarifications", (payload.request_id,)),
            ]
        case p.Result():
            keys.append(("budgets", ("agent", envelope.sender)))
        case p.BudgetExceeded():
            keys.append(("budgets", (payload.scope, payload.scope_id)))
        case p.EscalationResolved():
            keys.append(("escalations", (payload.escalation_id,)))
        case p.CircuitOpened() | p.CircuitClosed():
            keys.append(("breakers", (payload.circuit,)))
        case p.ModelCallRequested():
            keys.append(("model_calls", (payload.task_id, payload.call_index)))
        case p.ModelCallCompleted():
            keys += [
                ("model_calls", (payload.task_id, payload.call_index)),
                ("budgets", ("agent", envelope.sender)),  # charged as the call is made
            ]
        case p.ToolCallRequested() | p.ToolCallCompleted():
            keys.append(("tool_calls", (payload.task_id, payload.call_index)))
        case _:
            pass
    return keys


def creates(envelope: Envelope) -> list[tuple[str, Key]]:
    """Of the rows :func:`touches` names, those folding ``envelope`` creates, which storage
    should not hold yet: an offer's task (a task id is new; an agent's offer that repeats one
    is refused, the operator's is a re-offer). A store may presume them absent instead of
    asking (a point query, the dearest statement of an offer's commit), provided a wrong guess
    cannot pass: see :meth:`~swarmlog.projections.store.ProjectionStore.flush`."""
    if isinstance(envelope.payload, p.TaskOffered):
        return [("tasks", (envelope.payload.task_id,))]
    return []


def touches_then(state: State, envelope: Envelope) -> list[tuple[str, Key]]:
    """The rows folding ``envelope`` may read that only rows :func:`touches` names can tell:
    the budget of the workflow a model call holds tokens of (its call's, or its task's, which
    the envelope's ``workflow_id``, the sender's say, need not be). A store preloads these
    after those, so what the fold reads never depends on what it happened to keep."""
    payload = envelope.payload
    if not isinstance(payload, p.ModelCallRequested | p.ModelCallCompleted):
        return []
    call = state.get("model_calls", payload.task_id, payload.call_index)
    task = state.get("tasks", payload.task_id)
    workflows = {row["workflow_id"] for row in (call, task) if row and row["workflow_id"]}
    return [("budgets", ("workflow", w)) for w in sorted(workflows)]


def touches_where(envelope: Envelope) -> list[tuple[str, str, Any]]:
    """The rows folding ``envelope`` may read by a column other than their key, as ``(table,
    column, value)``: every such row is what a store must preload too. A task escalated reads
    the escalations of its task (one is opened only when none is open) and a workflow that ends
    those of the workflow (which it closes)."""
    payload = envelope.payload
    if isinstance(payload, p.TaskEscalated):
        return [("escalations", "task_id", payload.task_id)]
    if isinstance(payload, p.WorkflowCompleted) and envelope.workflow_id is not None:
        return [("escalations", "workflow_id", envelope.workflow_id)]
    return []


def admit(
    state: State, checked: Checked, operator_key: str, *, verify: bool = True
) -> Rejection | None:
    """The stateful checks, in stream order; ``None`` means the event may be applied.

    Order matters: first who signed (identity), then where the event sits in the sender's chain,
    then whether the sender may say it (authority). An event that fails only the last is
    authentic and in sequence, so it moves the sender's chain on even though it is quarantined.
    """
    if checked.rejection is not None:
        return checked.rejection
    envelope = checked.envelope
    assert envelope is not None
    if verify:
        rejection = _check_identity(state, envelope, operator_key, checked.message.stored_at)
        if rejection is not None:
            return rejection
    head = state.get("chain_heads", envelope.sender)
    head_seq = head["sender_seq"] if head else 0
    if envelope.sender_seq <= head_seq:
        return Rejection("replayed", f"sender_seq {envelope.sender_seq} <= head {head_seq}")
    if envelope.id in state.seen_ids:
        return Rejection("duplicate_id", envelope.id)
    if envelope.sender_seq == head_seq + 1 and envelope.prev_hash != (head["hash"] if head else ""):
        return Rejection("chain_fork", f"prev_hash does not match sender_seq {head_seq}")
    problem = time_problem(envelope.occurred_at, checked.message.stored_at)
    if problem:
        return Rejection("bad_timestamp", problem, in_chain=True)
    if verify:
        return _check_authority(state, envelope)
    return None


def time_problem(occurred_at: int, stored_at: int) -> str:
    """Why an event dated ``occurred_at`` cannot have been emitted around ``stored_at``, the
    server's storage time of its message (``""`` when it can, or when ``stored_at`` is unknown).

    Pure and judged only from the stored message, so a replay decides exactly as the projector
    did. The bounds are :data:`MAX_AHEAD_NS` and :data:`MAX_BEHIND_NS`.
    """
    if stored_at <= 0:
        return ""
    if occurred_at > stored_at + MAX_AHEAD_NS:
        return f"occurred_at is {_span(occurred_at - stored_at)} after the server stored it"
    if occurred_at < stored_at - MAX_BEHIND_NS:
        return f"occurred_at is {_span(stored_at - occurred_at)} before the server stored it"
    return ""


def _span(ns: int) -> str:
    seconds = ns // 1_000_000_000
    for unit, size in (("days", 86_400), ("hours", 3_600), ("minutes", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _check_identity(
    state: State, envelope: Envelope, operator_key: str, stored_at: int
) -> Rejection | None:
    if envelope.signer == operator_key:
        if envelope.sender != OPERATOR_ID:
            return Rejection("wrong_sender", "the operator key signs only as 'operator'")
        if isinstance(envelope.payload, p.CredentialIssued):
            return check_credential(envelope.payload, operator_key)
        return None
    if envelope.sender == OPERATOR_ID:
        return Rejection("unknown_signer", "not the operator key this projection trusts")
    credential = state.get("credentials", envelope.signer)
    if credential is None:
        return Rejection("unknown_signer", envelope.signer[:16])
    if credential["revoked"]:
        return Rejection("revoked", credential["revoked_reason"] or "")
    if credential["agent_id"] != envelope.sender:
        return Rejection("wrong_sender", f"key belongs to {credential['agent_id']}")
    expires = credential["expires_at"]
    # The server's storage time, when known, cannot be backdated by the signer.
    if expires is not None and max(envelope.occurred_at, stored_at) > expires:
        return Rejection("expired", f"expired at {expires}")
    return None


def _check_authority(state: State, envelope: Envelope) -> Rejection | None:
    if envelope.sender == OPERATOR_ID:
        return _check_operator(state, envelope)
    type_ = envelope.type
    credential = state.get("credentials", envelope.signer)
    assert credential is not None  # checked by _check_identity
    allowed = _json_list(credential["allowed_types"])
    if type_ in CONTROL_TYPES or ("*" not in allowed and type_ not in allowed):
        return Rejection("not_permitted", type_, in_chain=True)
    if credential["trust_level"] == "external" and type_ in INTERNAL_TYPES:
        return Rejection("not_permitted", f"{type_} is for internal agents", in_chain=True)
    speaks_for_another = _speaks_for_another(state, envelope, credential) or _task_authority(
        state, envelope, credential
    )
    if speaks_for_another:
        return Rejection("not_permitted", speaks_for_another, in_chain=True)
    ungranted = _ungranted_tool(envelope, credential)
    if ungranted:
        return Rejection("not_permitted", ungranted, in_chain=True)
    for target in (envelope.sender, "*"):
        switch = state.get("kill_switches", target)
        if switch is not None and switch["active"]:
            return Rejection("killed", switch["reason"] or "", in_chain=True)
    return None


def _speaks_for_another(state: State, envelope: Envelope, credential: dict[str, Any]) -> str:
    """Why an agent's payload claims what only another agent (or its credential) may say."""
    payload = envelope.payload
    sender = envelope.sender
    match payload:
        case p.AgentRegistered():
            if payload.agent_id != sender:
                return f"registers {payload.agent_id}, not itself"
            if payload.role != credential["role"]:
                return f"registers role {payload.role}, credential says {credential['role']}"
            extra = set(payload.capabilities) - set(_json_list(credential["capabilities"]))
            if extra:
                return f"claims capabilities its credential lacks: {sorted(extra)}"
        case p.AgentHeartbeat() | p.AgentStopped() | p.TaskClaimed():
            if payload.agent_id != sender:
                return f"speaks for {payload.agent_id}"
        case p.AgentLost() | p.AgentSeen():
            # Only the watchdog judges others' presence: an agent cannot take a rival out of
            # routing by calling it lost, nor bring a dead one back.
            if credential["role"] != WATCHDOG_ROLE:
                return f"{envelope.type} is the watchdog's to say, not {credential['role']}'s"
        case p.ClarificationRequest():
            if state.get("clarifications", payload.request_id) is not None:
                return f"asks under request id {payload.request_id}, which is taken"
        case p.ClarificationResponse():
            # Judged against the request, open or answered: only the agent asked ever answers.
            asked = state.get("clarifications", payload.request_id)
            if asked is None:
                return f"answers {payload.request_id}, a question never asked"
            if asked["asked"] != sender:
                return f"answers a question put to {asked['asked']}"
        case _:
            pass
    return ""


def _ungranted_tool(envelope: Envelope, credential: dict[str, Any]) -> str:
    """Why a journaled tool call names a tool the sender's credential does not grant (``""``
    when it grants it, or the event is no tool call).

    Judged by :func:`tool_permitted`, the rule the runtime refuses a call by before it
    journals anything: an honest agent never journals a call outside its credential (the model
    is told of the refusal in the tool's answer), so any such event is one to quarantine, also a
    ``tool_call_completed`` that says ``refused``."""
    payload = envelope.payload
    if not isinstance(payload, p.ToolCallRequested | p.ToolCallCompleted):
        return ""
    tools = _json_list(credential["tools"])
    servers = _json_list(credential["mcp_servers"])
    if tool_permitted(tools, servers, payload.tool, payload.server):
        return ""
    return f"tool {payload.tool} is not granted by {envelope.sender}'s credential"


def _task_authority(state: State, envelope: Envelope, credential: dict[str, Any]) -> str:
    """Why an agent may not say this about the task it names (``""`` when it may).

    A task is held by the role it is assigned to (any replica: the work queue is shared) or, in
    swarm mode, by the one agent whose claim won it. Only the holder speaks for its progress
    and outcome; the router assigns what is offered for routing, and a holder may hand its task
    over (a fallback role); a swarm offer is claimed once, by an agent with the capability.
    """
    payload = envelope.payload
    type_ = envelope.type
    role = credential["role"]
    match payload:
        case p.TaskOffered():
            if state.get("tasks", payload.task_id) is not None:
                return f"offers task {payload.task_id}, which exists already"
        case p.TaskAssignment():
            return _may_assign(state.get("tasks", payload.task_id), payload.task_id, role)
        case p.TaskClaimed():
            return _may_claim(state.get("tasks", payload.task_id), payload.task_id, credential)
        case _ if type_ in HOLDER_TYPES or (type_ in OVERSEEN_TYPES and role not in _OVERSEERS):
            task_id = str(getattr(payload, "task_id", ""))  # every such type names its task
            task = state.get("tasks", task_id)
            if not _holds(task, envelope.sender, role):
                return f"{type_} for task {task_id}, {_whose(task)}, not {envelope.sender}'s"
        case _:
            pass
    return ""


def _holds(task: dict[str, Any] | None, sender: str, role: str) -> bool:
    if task is None:
        return False
    return task["claimed_by"] == sender or (task["role"] is not None and task["role"] == role)


def _whose(task: dict[str, Any] | None) -> str:
    """Whose a task is, for a rejection's detail."""
    if task is None:
        return "which was never offered or assigned"
    if task["claimed_by"] is not None:
        return f"which {task['claimed_by']} claimed"
    if task["role"] is not None:
        return f"which is assigned to role {task['role']}"
    return "which is not assigned yet"


def _may_assign(task: dict[str, Any] | None, task_id: str, role: str) -> str:
    if task is None:
        return ""  # new work, assigned directly to a role
    if task["role"] is not None:
        if task["role"] == role:
            return ""  # its holder hands it over (a fallback role)
        return f"reassigns task {task_id}, {_whose(task)}"
    if task["claimed_by"] is not None:
        return f"assigns task {task_id}, {_whose(task)}"
    if task["mode"] == "swarm":
        return f"assigns task {task_id}, a swarm offer (it is claimed, not assigned)"
    if role != ROUTER_ROLE:
        return f"assigns task {task_id}, which is offered for the router to route"
    return ""


def _may_claim(task: dict[str, Any] | None, task_id: str, credential: dict[str, Any]) -> str:
    if task is None or task["mode"] != "swarm":
        return f"claims task {task_id}, which is not offered to the swarm"
    if task["claimed_by"] is not None or task["role"] is not None or task["status"] != "offered":
        return f"claims task {task_id}, {_whose(task)} ({task['status']})"
    if task["capability"] not in _json_list(credential["capabilities"]):
        return f"claims task {task_id}, which needs {task['capability']!r}: its credential lacks it"
    return ""


def _check_operator(state: State, envelope: Envelope) -> Rejection | None:
    """The operator may say anything but what names nothing: a revoke of a key never issued."""
    payload = envelope.payload
    revoked = payload.public_key if isinstance(payload, p.CredentialRevoked) else None
    if revoked is not None and state.get("credentials", revoked) is None:
        detail = f"revokes {revoked[:16]}..., a key that was never issued"
        return Rejection("unknown_signer", detail, in_chain=True)
    return None


def check_credential(payload: p.CredentialIssued, operator_key: str) -> Rejection | None:
    """Whether ``payload`` is a credential ``operator_key`` issued (``None``: it is); also used
    by agents on credentials they are shown outside the log (a result cache entry's signer)."""
    if not verify_signature(operator_key, CREDENTIAL_DOMAIN, payload.credential, payload.signature):
        return Rejection("bad_credential", "operator signature does not match")
    try:
        credential = decode_credential(payload.credential)
    except SchemaError as exc:
        return Rejection("bad_credential", exc.message[:500])
    if credential.issuer != operator_key:
        return Rejection("bad_credential", "issuer is not the operator key")
    if credential.agent_id == OPERATOR_ID:
        return Rejection("bad_credential", "no credential may name the operator")
    return None


@lru_cache(maxsize=1024)
def _json_list(text: str | None) -> tuple[str, ...]:
    # Called for every event with the signer's credential columns: a handful of distinct texts.
    return () if not text else tuple(msgspec.json.decode(text))
