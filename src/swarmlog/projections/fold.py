# Over 400 lines: one case per event type of the union; split, the fold would be read in pieces.
"""The fold (pure): an admitted event becomes row changes in the projection state.

``apply(state, message, envelope, body_hash, verified)`` is deterministic: the same events in the
same order give the same rows, whichever process folds them and however they are batched.
Timestamps in rows come from the events, never from a clock. :func:`fold_checked` is the loop
around it that every folder runs (the projector, replay, audit, the simulation): admit each
checked message in stream order, then apply it or quarantine it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from swarmlog.bus.ports import StoredMessage
from swarmlog.projections.calls import fold_call
from swarmlog.projections.state import State
from swarmlog.projections.verify import Checked, Rejection, admit
from swarmlog.schemas.codec import decode_credential
from swarmlog.schemas.envelope import Envelope
from swarmlog.schemas.payloads import (
    AgentHeartbeat,
    AgentKilled,
    AgentLost,
    AgentRegistered,
    AgentRevived,
    AgentSeen,
    AgentStopped,
    BudgetExceeded,
    CircuitClosed,
    CircuitHalfOpened,
    CircuitOpened,
    ClarificationRequest,
    ClarificationResponse,
    CredentialIssued,
    CredentialRevoked,
    DeadlockDetected,
    Error,
    EscalationResolved,
    ModelCallCompleted,
    ModelCallRequested,
    Result,
    TaskAssignment,
    TaskCancelled,
    TaskCheckpointed,
    TaskClaimed,
    TaskCompleted,
    TaskEscalated,
    TaskFailed,
    TaskHeartbeat,
    TaskOffered,
    TaskRetryScheduled,
    TaskStarted,
    TokenUsage,
    ToolCallCompleted,
    ToolCallRequested,
    WorkflowCompleted,
    WorkflowPlanned,
    WorkflowRevised,
    WorkflowSubmitted,
)

__all__ = ["apply", "fold_checked", "quarantine", "to_json"]

_json = msgspec.json.Encoder()
_MAX_TOKENS = 2**62


def to_json(value: Any) -> str | None:
    """Column text of a JSON value (``None`` stays NULL)."""
    return None if value is None else _json.encode(value).decode()


def quarantine(
    state: State,
    message: StoredMessage,
    rejection: Rejection,
    envelope: Envelope | None,
    body_hash: str = "",
) -> None:
    """Record a message that must not be applied (an in-chain one still moves its chain on)."""
    chain_hash = None  # what `chain_heads` is derived from: only a message that moved it has it
    if rejection.in_chain and envelope is not None:
        _advance_chain(state, message.seq, envelope, body_hash)
        chain_hash = body_hash
    state.put(
        "quarantine",
        {
            "seq": message.seq,
            "subject": message.subject,
            "reason": rejection.reason,
            "detail": rejection.detail,
            "event_id": envelope.id if envelope else None,
            "sender": envelope.sender if envelope else None,
            "size": len(message.data),
            "sender_seq": envelope.sender_seq if envelope else None,
            "hash": chain_hash,
            "stored_at": message.stored_at,
        },
    )


def fold_checked(
    state: State, checked: Iterable[Checked], operator_key: str, *, verify: bool = True
) -> list[tuple[int, str]]:
    """Admit and fold checked messages, in stream order, into ``state``; returns the
    ``(stream sequence, reason)`` of every message quarantined (the rest were applied)."""
    rejected: list[tuple[int, str]] = []
    for c in checked:
        rejection = admit(state, c, operator_key, verify=verify)
        if rejection is not None:
            quarantine(state, c.message, rejection, c.envelope, c.body_hash)
            rejected.append((c.message.seq, rejection.reason))
            continue
        assert c.envelope is not None
        apply(state, c.message, c.envelope, c.body_hash, verified=verify)
    return rejected


def apply(
    state: State, message: StoredMessage, envelope: Envelope, body_hash: str, *, verified: bool
) -> None:
    """Fold one admitted event into ``state``."""
    seq = message.seq
    payload = envelope.payload
    state.put(
        "events",
        {
            "seq": seq,
            "subject": message.subject,
            "id": envelope.id,
            "type": envelope.type,
            "workflow_id": envelope.workflow_id,
            "correlation_id": envelope.correlation_id,
            "causation_id": envelope.causation_id,
            "sender": envelope.sender,
            "recipient": envelope.recipient,
            "signer": envelope.signer,
            "sender_seq": envelope.sender_seq,
            "hash": body_hash,
            "occurred_at": envelope.occurred_at,
            "stored_at": message.stored_at,
            "verified": verified,
            "payload": _json.encode(payload).decode(),
        },
    )
    state.seen_ids.add(envelope.id)
    _advance_chain(state, seq, envelope, body_hash)
    at = envelope.occurred_at
    wf = envelope.workflow_id
    match payload:
        case CredentialIssued():
            c = decode_credential(payload.credential)
            caps = to_json(c.capabilities)
            known = state.get("credentials", c.public_key)
            revoked = bool(known and known["revoked"])  # re-issuing never un-revokes a key
            state.put(
                "credentials",
                {
                    "public_key": c.public_key,
                    "agent_id": c.agent_id,
                    "role": c.role,
                    "trust_level": c.trust_level,
                    "capabilities": caps,
                    "allowed_types": to_json(c.allowed_types),
                    "tools": to_json(c.tools),
                    "mcp_servers": to_json(c.mcp_servers),
                    "issued_at": c.issued_at,
                    "expires_at": c.expires_at,
                    "revoked": revoked,
                    "revoked_reason": known["revoked_reason"] if known else None,
                    "issued_seq": seq,
                },
            )
            agent = state.get("agents", c.agent_id)
            # A new credential neither registers nor revives an agent, nor undoes its leaving.
            kept = ("registered", "killed", "lost", "stopped")
            status = agent["status"] if agent and agent["status"] in kept else "issued"
            _agent(
                state,
                c.agent_id,
                seq,
                role=c.role,
                capabilities=caps,
                trust_level=c.trust_level,
                public_key=c.public_key,
                status=status,
            )
        case CredentialRevoked():
            # Only an issued key has a row to revoke (the verifier refuses the others; this
            # keeps an unverified replay from inventing a credential row).
            if state.get("credentials", payload.public_key) is not None:
                state.upsert(
                    "credentials",
                    (payload.public_key,),
                    revoked=True,
                    revoked_reason=payload.reason,
                )
        case AgentKilled():
            state.upsert(
                "kill_switches",
                (payload.agent_id,),
                active=True,
                reason=payload.reason,
                updated_seq=seq,
            )
            if payload.agent_id != "*" and state.get("agents", payload.agent_id):
                _agent(state, payload.agent_id, seq, status="killed")
        case AgentRevived():
            state.upsert("kill_switches", (payload.agent_id,), active=False, updated_seq=seq)
            agent = state.get("agents", payload.agent_id)
            if agent is not None and agent["status"] == "killed":
                status = "registered" if agent["registered_at"] is not None else "issued"
                _agent(state, payload.agent_id, seq, status=status)
        case AgentRegistered():
            agent = state.get("agents", payload.agent_id)
            killed = agent is not None and agent["status"] == "killed"
            _agent(
                state,
                payload.agent_id,
                seq,
                role=payload.role,
                capabilities=to_json(payload.capabilities),
                tier=payload.tier,
                replica=payload.replica,
                dependencies=to_json(payload.dependencies),
                tools=to_json(payload.tools),
                mcp_servers=to_json(payload.mcp_servers),
                status="killed" if killed else "registered",
                registered_at=at,
                last_heartbeat_at=at,
                in_flight=0,
            )
        case AgentHeartbeat():
            _agent(state, payload.agent_id, seq, last_heartbeat_at=at, in_flight=payload.in_flight)
        case AgentStopped():
            agent = state.get("agents", payload.agent_id)
            if agent is not None and agent["status"] != "killed":
                _agent(state, payload.agent_id, seq, status="stopped", in_flight=0)
        case AgentLost():
            agent = state.get("agents", payload.agent_id)
            registered = agent["registered_at"] if agent is not None else None
            last = payload.last_seen_at
            # A lost about an earlier run (the replica registered again after its last
            # presence) is not applied: the watchdog judged a snapshot from before.
            earlier = last is not None and registered is not None and registered > last
            if agent is not None and agent["status"] == "registered" and not earlier:
                _agent(state, payload.agent_id, seq, status="lost", in_flight=0)
        case AgentSeen():
            agent = state.get("agents", payload.agent_id)
            if agent is not None and agent["status"] == "lost":
                _agent(state, payload.agent_id, seq, status="registered")
        case WorkflowSubmitted():
            _workflow(
                state,
                wf,
                seq,
                pattern=payload.pattern,
                status="running",
                input=to_json(payload.input),
                budget_tokens=payload.budget_tokens,
                submitted_by=envelope.sender,
                submitted_at=at,
            )
        case WorkflowPlanned() | WorkflowRevised():
            _workflow(state, wf, seq, plan=to_json(payload.plan), plan_version=payload.version)
        case WorkflowCompleted():
            _workflow(
                state,
                wf,
                seq,
                status=payload.status,
                result=to_json(payload.result),
                completed_at=at,
            )
            # Nobody is left to act on them: they close with the workflow, saying so.
            for row in _open_escalations(state, "workflow_id", wf):
                row.update(status="closed", resolution=f"workflow {payload.status}", resolved_at=at)
                state.put("escalations", row)
        case TaskAssignment():
            _task_posted(
                state,
                payload,
                envelope,
                seq,
                status="assigned",
                role=payload.role,
                attempt=payload.attempt,
                assigned_by=envelope.sender,
                parent_task_id=payload.parent_task_id,
            )
        case TaskOffered():
            # An offer names its parent only when delegated; a re-offer must not clear it.
            parent = {"parent_task_id": payload.parent_task_id} if payload.parent_task_id else {}
            _task_posted(
                state, payload, envelope, seq, status="offered", mode=payload.mode, **parent
            )
            if payload.parent_task_id and payload.mode == "routed":
                # The delegating agent waits for its subtask (until the subtask is settled).
                state.put(
                    "waits_for",
                    {
                        "ref": payload.task_id,
                        "kind": "subtask",
                        "waiter": envelope.sender,
                        "waits_on": payload.task_id,
                        "task_id": payload.parent_task_id,
                        "workflow_id": wf,
                        "since": at,
                    },
                )
        case TaskClaimed():
            _task(
                state, payload.task_id, envelope, seq, status="claimed", claimed_by=payload.agent_id
            )
        case TaskStarted():
            _task(state, payload.task_id, envelope, seq, status="running", attempt=payload.attempt)
        case TaskHeartbeat() | TaskCheckpointed():
            _task(state, payload.task_id, envelope, seq)
        case (
            ModelCallRequested() | ModelCallCompleted() | ToolCallRequested() | ToolCallCompleted()
        ):
            _task(state, payload.task_id, envelope, seq)  # a sign of life, like a heartbeat
            if isinstance(payload, ModelCallRequested | ModelCallCompleted):
                _release(state, payload.task_id, payload.call_index)
            fold_call(state, payload, envelope, seq)
            if isinstance(payload, ModelCallRequested):
                _reserve(state, payload, envelope)
            if isinstance(payload, ModelCallCompleted) and payload.usage is not None:
                _spend_call(state, payload.task_id, envelope, payload.usage)
        case Result():
            _task(
                state,
                payload.task_id,
                envelope,
                seq,
                status="succeeded",
                output=to_json(payload.output),
                cached=payload.cached,
                completed_by=envelope.sender,
                # A task that ended at once says its attempt here, not in a task_started.
                **({} if payload.began is None else {"attempt": payload.began[0]}),
            )
            _settled(state, payload.task_id)
            if payload.usage is not None:
                used = payload.usage.prompt_tokens + payload.usage.completion_tokens
                # The journaled model calls in it were charged when they were made.
                task = state.get("tasks", payload.task_id)
                used = max(0, used - ((task or {}).get("call_tokens") or 0))
                _spend(state, "agent", envelope.sender, used)
                if wf is not None:
                    _spend(state, "workflow", wf, used)
        case Error():
            _task(
                state,
                payload.task_id,
                envelope,
                seq,
                # One attempt failed: a retry, a fallback or an escalation follows.
                status="errored",
                error=f"{payload.code}: {payload.message}",
            )
        case TaskCompleted():
            _task(state, payload.task_id, envelope, seq, status="succeeded")
        case TaskFailed():
            status = "failed" if payload.final else "errored"
            _task(state, payload.task_id, envelope, seq, status=status, error=payload.reason)
            if payload.final:
                _settled(state, payload.task_id)
        case TaskRetryScheduled():
            _task(
                state,
                payload.task_id,
                envelope,
                seq,
                status="retry_scheduled",
                attempt=payload.attempt,
            )
        case TaskEscalated():
            _task(state, payload.task_id, envelope, seq, status="escalated")
            # One failure, one escalation: while the task has an open one (a redelivery, or the
            # watchdog, escalating it again), the event is on the log but opens no second one,
            # which a human could resolve a second time (two retries of one task).
            if not _open_escalations(state, "task_id", payload.task_id):
                ended = _ended(state, wf)
                state.put(
                    "escalations",
                    {
                        "escalation_id": envelope.id,
                        "task_id": payload.task_id,
                        "workflow_id": wf,
                        "reason": payload.reason,
                        "status": "open" if ended is None else "closed",
                        "created_at": at,
                        "resolution": None if ended is None else f"workflow {ended}",
                        "resolved_at": None if ended is None else at,
                    },
                )
        case EscalationResolved():
            _task(state, payload.task_id, envelope, seq)
            state.upsert(
                "escalations",
                (payload.escalation_id,),
                status="resolved",
                resolution=payload.action,
                resolved_at=at,
            )
        case TaskCancelled():
            _task(state, payload.task_id, envelope, seq, status="cancelled", error=payload.reason)
            _settled(state, payload.task_id)
        case ClarificationRequest():
            state.put(
                "waits_for",
                {
                    "ref": payload.request_id,
                    "kind": "clarification",
                    "waiter": envelope.sender,
                    "waits_on": payload.to,
                    "task_id": payload.task_id,
                    "workflow_id": wf,
                    "since": at,
                },
            )
            state.put(
                "clarifications",
                {
                    "request_id": payload.request_id,
                    "asker": envelope.sender,
                    "asked": payload.to,
                    "task_id": payload.task_id,
                    "workflow_id": wf,
                    "asked_at": at,
                    "answered_at": None,
                },
            )
        case ClarificationResponse():
            state.delete("waits_for", payload.request_id)
            asked = state.get("clarifications", payload.request_id)
            if asked is not None and asked["answered_at"] is None:
                state.upsert("clarifications", (payload.request_id,), answered_at=at)
        case DeadlockDetected(victim=str(victim)):
            state.delete("waits_for", victim)  # the victim gives its wait up: the cycle is broken
        case BudgetExceeded():
            flag = "soft_exceeded" if payload.limit == "soft" else "hard_exceeded"
            row = state.upsert("budgets", (payload.scope, payload.scope_id), **{flag: True})
            row["used_tokens"] = row["used_tokens"] or payload.used_tokens
        case CircuitOpened():
            state.put(
                "breakers",
                {
                    "circuit": payload.circuit,
                    "state": "open",
                    "reason": payload.reason,
                    "changed_at": at,
                },
            )
        case CircuitHalfOpened():
            state.put(
                "breakers",
                {"circuit": payload.circuit, "state": "half_open", "reason": "", "changed_at": at},
            )
        case CircuitClosed():
            state.put(
                "breakers",
                {
                    "circuit": payload.circuit,
                    "state": "closed",
                    "reason": payload.reason,
                    "changed_at": at,
                },
            )
        case _:
            pass  # recorded in `events` only (deadlocks, snapshots, ...)


def _open_escalations(state: State, column: str, value: str | None) -> list[dict[str, Any]]:
    """The open escalations whose ``column`` is ``value`` (all of them are at hand: see
    :func:`~swarmlog.projections.verify.touches_where`), in the order they were opened."""
    if value is None:
        return []
    found = [
        row
        for row in state.rows["escalations"].values()
        if row[column] == value and row["status"] == "open"
    ]
    return sorted(found, key=lambda row: (row["created_at"], row["escalation_id"]))


def _ended(state: State, workflow_id: str | None) -> str | None:
    """How the workflow ended (``succeeded``, ``failed``, ``cancelled``), or ``None`` while it
    runs (or when there is none)."""
    row = state.get("workflows", workflow_id) if workflow_id is not None else None
    status = row["status"] if row is not None else None
    return status if status in ("succeeded", "failed", "cancelled") else None


def _settled(state: State, task_id: str) -> None:
    """A subtask is settled: whoever delegated it waits no more."""
    row = state.get("tasks", task_id)
    if row is not None and row.get("parent_task_id"):
        state.delete("waits_for", task_id)


def _advance_chain(state: State, seq: int, envelope: Envelope, body_hash: str) -> None:
    head = state.get("chain_heads", envelope.sender)
    expected = (head["sender_seq"] if head else 0) + 1
    if envelope.sender_seq != expected:
        state.put(
            "chain_breaks",
            {
                "seq": seq,
                "sender": envelope.sender,
                "expected_seq": expected,
                "got_seq": envelope.sender_seq,
            },
        )
    state.put(
        "chain_heads",
        {
            "sender": envelope.sender,
            "sender_seq": envelope.sender_seq,
            "hash": body_hash,
            "seq": seq,
        },
    )


def _agent(state: State, agent_id: str, seq: int, **changes: Any) -> None:
    state.upsert("agents", (agent_id,), updated_seq=seq, **changes)


def _workflow(state: State, workflow_id: str | None, seq: int, **changes: Any) -> None:
    state.upsert("workflows", (workflow_id,), updated_seq=seq, **changes)


def _task(state: State, task_id: str, envelope: Envelope, seq: int, **changes: Any) -> None:
    existing = state.get("tasks", task_id)
    if existing is None or existing["created_at"] is None:
        changes.setdefault("created_at", envelope.occurred_at)
    if envelope.workflow_id is not None:
        changes.setdefault("workflow_id", envelope.workflow_id)
    state.upsert("tasks", (task_id,), updated_at=envelope.occurred_at, updated_seq=seq, **changes)


def _task_posted(
    state: State,
    payload: TaskAssignment | TaskOffered,
    envelope: Envelope,
    seq: int,
    **changes: Any,
) -> None:
    """A task offered or assigned: the fields both carry, and ``changes``."""
    _task(
        state,
        payload.task_id,
        envelope,
        seq,
        capability=payload.capability,
        priority=payload.priority,
        input=to_json(payload.input),
        **changes,
    )


def _spend_call(state: State, task_id: str, envelope: Envelope, usage: TokenUsage) -> None:
    """A journaled model call's tokens, charged to its agent and workflow as the call is made
    (an attempt that fails, is killed or runs out of budget spent them all the same), and kept
    on its task: the result's usage counts them again."""
    used = usage.prompt_tokens + usage.completion_tokens
    _spend(state, "agent", envelope.sender, used)
    if envelope.workflow_id is not None:
        _spend(state, "workflow", envelope.workflow_id, used)
    task = state.get("tasks", task_id)
    state.upsert("tasks", (task_id,), call_tokens=((task or {}).get("call_tokens") or 0) + used)


def _reserve(state: State, payload: ModelCallRequested, envelope: Envelope) -> None:
    """Decide, in log order, whether a model call may hold the tokens it reserved of its
    workflow's budget: only if the tokens used and those that calls still in flight hold leave
    room for them all. The call's replica reads the verdict before it asks the model, so calls
    of one workflow that run at once on different replicas cannot together cross its budget,
    which each would respect alone. A call that names another workflow than its task's is not
    admitted."""
    tokens = payload.reserved_tokens
    if not tokens:
        return
    workflow_id = envelope.workflow_id
    task = state.get("tasks", payload.task_id)
    workflow = state.get("workflows", workflow_id) if workflow_id is not None else None
    admitted = False
    if workflow is not None and (task is None or task["workflow_id"] in (None, workflow_id)):
        budget = state.upsert("budgets", ("workflow", workflow_id))
        reserved = budget["reserved_tokens"] or 0
        limit = workflow["budget_tokens"]
        admitted = limit is None or (budget["used_tokens"] or 0) + reserved + tokens <= limit
        if admitted:
            budget["reserved_tokens"] = min(reserved + tokens, _MAX_TOKENS)
    state.upsert(
        "model_calls",
        (payload.task_id, payload.call_index),
        reserved_tokens=tokens,
        admitted=admitted,
        holding_tokens=tokens if admitted else 0,
    )


def _release(state: State, task_id: str, call_index: int) -> None:
    """A call's answer, or the same call asked again, gives back what it held of its budget."""
    call = state.get("model_calls", task_id, call_index)
    if call is None or not call["holding_tokens"] or call["workflow_id"] is None:
        return
    budget = state.upsert("budgets", ("workflow", call["workflow_id"]))
    budget["reserved_tokens"] = max(0, (budget["reserved_tokens"] or 0) - call["holding_tokens"])
    state.upsert("model_calls", (task_id, call_index), holding_tokens=0)


def _spend(state: State, scope: str, scope_id: str, tokens: int) -> None:
    row = state.upsert("budgets", (scope, scope_id))
    # Saturate: a flood of maximal counts must never overflow the BIGINT column and wedge the
    # projector.
    row["used_tokens"] = min((row["used_tokens"] or 0) + tokens, _MAX_TOKENS)
    if row["soft_exceeded"] is None:
        row["soft_exceeded"] = False
        row["hard_exceeded"] = False
