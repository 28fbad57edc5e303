"""Property tests of verification and the fold over realistic, partly hostile event sequences.

A generator plays an operator and one to three credentialed agents emitting a mix of events, with
occasional tampering (a flipped byte, a replayed message, an unknown key, a wrong subject, a forged
chain link, a reused event id, a bad credential, a key speaking for another agent or for a task or
question that is not its own, a revoke of a key never issued, a far-off clock). Alongside it keeps
a small model of what the projection must decide for every message, written from the rules in
``verify.REASONS``, independently of ``admit``. The tests then check:

* the reference fold agrees with the model, message by message, and never applies a tampered one;
* folding is deterministic (same messages, same state hash);
* the DuckDB projector gives the reference state hash however the messages are batched, and a
  replay from the log (``Projector.run``) gives it too, also when resumed half way.

Messages carry a server storage time (``stored_at``: unknown, on time, late, or years away from
the signer's clock) next to the signer's clock, so expiry and the time bound are judged the way
the projection judges them. Keys come from seeds derived from
drawn integers, clocks and entropy are drawn or counted: every example is reproducible.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarmlog.bus.memory import MemoryLog
from swarmlog.bus.ports import Append, StoredMessage
from swarmlog.bus.subjects import stream_name, subject_for
from swarmlog.projections import state as state_module
from swarmlog.projections import store as store_module
from swarmlog.projections.fold import apply, quarantine
from swarmlog.projections.projector import Projector
from swarmlog.projections.state import State
from swarmlog.projections.statehash import state_hash
from swarmlog.projections.store import ProjectionStore
from swarmlog.projections.verify import MAX_AHEAD_NS, MAX_BEHIND_NS, REASONS, admit, check
from swarmlog.schemas.codec import decode_credential, decode_envelope, decode_signed, encode
from swarmlog.schemas.credentials import Credential
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
    Error,
    EscalationResolved,
    ModelCallCompleted,
    ModelCallRequested,
    Payload,
    Result,
    TaskAssignment,
    TaskClaimed,
    TaskEscalated,
    TaskOffered,
    TaskStarted,
    TokenUsage,
    ToolCallCompleted,
    ToolCallRequested,
    WorkflowCompleted,
    WorkflowSubmitted,
    model_call_id,
    tool_call_id,
)
from swarmlog.schemas.signing import (
    CONTROL_TYPES,
    CREDENTIAL_DOMAIN,
    OPERATOR_ID,
    ChainHead,
    Identity,
    Sealed,
    event_hash,
    issue_credential,
    seal,
    verify_signature,
)

NAMESPACE = "t"
STREAM = stream_name(NAMESPACE)

JOURNAL_KINDS = (
    "model_call_requested",
    "model_call_completed",
    "tool_call_requested",
    "tool_call_completed",
)
AGENT_KINDS = (
    "workflow_submitted",
    "task_assignment",
    "task_started",
    "result",
    "error",
    "clarification_request",
    "clarification_response",
    "agent_registered",
    "agent_heartbeat",
    "agent_stopped",
    "agent_lost",
    "agent_seen",
    "task_escalated",
    "task_offered",
    "task_claimed",
    *JOURNAL_KINDS,
)
#: The task flow is more frequent than the rest, so rows are updated across batches.
WEIGHTED_KINDS = (
    *AGENT_KINDS,
    *("task_assignment", "task_started", "clarification_request", "clarification_response"),
    *("task_offered", "task_claimed"),
    *("result", "result", "result"),
)
AGENT_IDS = ("alpha", "beta", "gamma-1", "d_2", "0")
ROLES = ("researcher", "router", "writer", "watchdog")
TASKS = ("t1", "t2", "t3", "t-4")
WORKFLOWS = ("w1", "w2")
REQUESTS = ("r1", "r2")
CAPABILITIES = ("web", "code", "a.b:c")
TOOLS = (("word_count", ""), ("shell", ""), ("time.now", "time"), ("git.log", "git"))
"""Tools (name, MCP server) a tool call may name; credentials grant some by name or server."""
FLIP_REASONS = frozenset({"malformed", "subject_mismatch", "bad_signature"})
YEAR = 365 * 86_400 * 1_000_000_000
HOLDER_KINDS = frozenset({"task_started", "result", "error", *JOURNAL_KINDS})
"""Of the generated kinds, those only a task's holder may emit."""
OVERSEERS = frozenset({"router", "watchdog"})
"""Roles that may escalate anyone's task."""
STATUS_AFTER = {
    "task_offered": "offered",
    "task_assignment": "assigned",
    "task_claimed": "claimed",
    "task_started": "running",
    "result": "succeeded",
    "error": "errored",
    "task_escalated": "escalated",
}

text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
small_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(text, children, max_size=3),
    max_leaves=6,
)


def seed(label: str, n: int) -> bytes:
    return hashlib.sha256(f"{label}:{n}".encode()).digest()


# --- the generator and its model ---------------------------------------------------------------


@dataclass
class CredentialModel:
    agent_id: str
    allowed: tuple[str, ...]
    expires_at: int | None
    revoked: bool = False
    role: str = ""
    capabilities: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()
    mcp_servers: tuple[str, ...] = ()


@dataclass
class TaskModel:
    """What the rules need of a task: who holds it, and whether it is open to a claim."""

    status: str
    role: str | None = None
    claimed_by: str | None = None
    mode: str | None = None
    capability: str | None = None


@dataclass
class Expected:
    """What the projection must do with one message."""

    reasons: frozenset[str] | None  # None: applied; else quarantined with one of these reasons
    tampered: bool
    kind: str
    chain_break: bool = False


@dataclass
class EventSequence:
    operator_key: str
    messages: list[StoredMessage]
    expected: list[Expected]
    escalations: dict[str, tuple[str, str | None, str]] = field(default_factory=dict)
    """What the model says the escalations table holds at the end."""

    def __repr__(self) -> str:  # keeps hypothesis' falsifying examples readable
        kinds = [f"{m.seq}:{e.kind}:{sorted(e.reasons or [])}" for m, e in self.expected_pairs()]
        return f"EventSequence({', '.join(kinds)})"

    def expected_pairs(self) -> list[tuple[StoredMessage, Expected]]:
        return list(zip(self.messages, self.expected, strict=True))

    @property
    def tampered(self) -> set[int]:
        return {m.seq for m, e in self.expected_pairs() if e.tampered}


@dataclass
class World:
    draw: st.DrawFn
    operator: Identity
    agents: dict[str, Identity] = field(default_factory=dict)
    now: int = 1_700_000_000_000_000_000
    counter: int = 0
    views: dict[str, ChainHead] = field(default_factory=dict)
    """Each sender's own idea of its chain head (it advances whatever the projection decides)."""
    # the model of the projection:
    credentials: dict[str, CredentialModel] = field(default_factory=dict)
    heads: dict[str, tuple[int, str]] = field(default_factory=dict)
    applied_ids: set[str] = field(default_factory=set)
    killed: set[str] = field(default_factory=set)
    asked: dict[str, str] = field(default_factory=dict)
    """Every clarification request, open or answered: request id -> the agent asked."""
    tasks: dict[str, TaskModel] = field(default_factory=dict)
    escalations: dict[str, tuple[str, str | None, str]] = field(default_factory=dict)
    """Every escalation opened: event id -> (task, workflow, open or closed). A task has at most
    one open; a workflow that ends closes its own, and one escalated after it ended is closed."""
    ended: dict[str, str] = field(default_factory=dict)
    """Workflows that ended (until submitted again), and how."""
    far_clocks: bool = False
    """Whether a message may be stored years away from its signer's clock (not while the
    agents' credentials are issued, so that every agent has one)."""
    messages: list[StoredMessage] = field(default_factory=list)
    expected: list[Expected] = field(default_factory=list)
    applied: list[tuple[StoredMessage, Envelope]] = field(default_factory=list)

    # -- sealing

    def tick(self) -> tuple[int, bytes]:
        self.now += self.draw(st.integers(0, 3_000_000_000), label="dt")
        self.counter += 1
        return self.now, self.counter.to_bytes(10, "big")

    def seal(
        self,
        identity: Identity,
        payload: Payload,
        *,
        head: ChainHead | None = None,
        advance: bool = True,
        clock: tuple[int, bytes] | None = None,
        **fields: Any,
    ) -> Sealed:
        now, entropy = clock or self.tick()
        current = self.views.get(identity.agent_id, ChainHead()) if head is None else head
        sealed = seal(identity, current, payload, now_ns=now, entropy=entropy, **fields)
        if advance:
            self.views[identity.agent_id] = sealed.head
        return sealed

    # -- the model: what admit must decide, from the rules in REASONS

    def model_admit(self, envelope: Envelope, stored_at: int) -> tuple[str | None, bool]:
        """The reason to quarantine (or None) and whether the event still moves its chain on.

        Identity first (who signed), then the sender's chain, then authority (may it say this):
        an event failing only authority is authentic and in sequence, so its chain advances.
        """
        type_ = envelope.type
        credential = self.credentials.get(envelope.signer)
        if envelope.signer == self.operator.public_key:
            if envelope.sender != OPERATOR_ID:
                return "wrong_sender", False
            if isinstance(envelope.payload, CredentialIssued) and not self.good_credential(
                envelope.payload
            ):
                return "bad_credential", False
        elif envelope.sender == OPERATOR_ID or credential is None:
            return "unknown_signer", False
        elif credential.revoked:
            return "revoked", False
        elif credential.agent_id != envelope.sender:
            return "wrong_sender", False
        elif credential.expires_at is not None and (
            max(envelope.occurred_at, stored_at) > credential.expires_at
        ):
            return "expired", False
        head_seq, head_hash = self.heads.get(envelope.sender, (0, ""))
        if envelope.sender_seq <= head_seq:
            return "replayed", False
        if envelope.id in self.applied_ids:
            return "duplicate_id", False
        if envelope.sender_seq == head_seq + 1 and envelope.prev_hash != head_hash:
            return "chain_fork", False
        if stored_at and not (
            stored_at - MAX_BEHIND_NS <= envelope.occurred_at <= stored_at + MAX_AHEAD_NS
        ):
            return "bad_timestamp", True
        if envelope.sender == OPERATOR_ID:
            payload = envelope.payload
            if (
                isinstance(payload, CredentialRevoked)
                and payload.public_key not in self.credentials
            ):
                return "unknown_signer", True  # revokes a key never issued
        else:
            assert credential is not None
            if type_ in CONTROL_TYPES or (
                "*" not in credential.allowed and type_ not in credential.allowed
            ):
                return "not_permitted", True
            if self.speaks_for_another(envelope, credential):
                return "not_permitted", True
            if self.not_its_task(envelope, credential):
                return "not_permitted", True
            if self.tool_not_granted(envelope, credential):
                return "not_permitted", True
            if envelope.sender in self.killed or "*" in self.killed:
                return "killed", True
        return None, False

    def speaks_for_another(self, envelope: Envelope, credential: CredentialModel) -> bool:
        """An agent may speak only for itself, within its credential."""
        payload = envelope.payload
        if isinstance(payload, AgentRegistered):
            return (
                payload.agent_id != envelope.sender
                or payload.role != credential.role
                or not set(payload.capabilities) <= set(credential.capabilities)
            )
        if isinstance(payload, AgentHeartbeat | AgentStopped | TaskClaimed):
            return payload.agent_id != envelope.sender
        if isinstance(payload, AgentLost | AgentSeen):
            return credential.role != "watchdog"  # only the watchdog judges presence
        if isinstance(payload, ClarificationRequest):
            return payload.request_id in self.asked  # an id is asked once
        if isinstance(payload, ClarificationResponse):
            # Only the agent asked answers, whether the question is still open or not.
            return self.asked.get(payload.request_id) != envelope.sender
        return False

    def tool_not_granted(self, envelope: Envelope, credential: CredentialModel) -> bool:
        """A tool call's tool must be granted by name, or be a tool of a granted server."""
        payload = envelope.payload
        if not isinstance(payload, ToolCallRequested | ToolCallCompleted):
            return False
        by_server = payload.server != "" and payload.server in credential.mcp_servers
        return payload.tool not in credential.tools and not by_server

    def not_its_task(self, envelope: Envelope, credential: CredentialModel) -> bool:
        """Whether an agent speaks to a task that is not its own to speak to."""
        payload = envelope.payload
        kind = envelope.type
        task_id = getattr(payload, "task_id", None)
        if task_id is None or kind not in (*STATUS_AFTER, *JOURNAL_KINDS):
            return False
        task = self.tasks.get(task_id)
        holds = task is not None and (
            task.claimed_by == envelope.sender
            or (task.role is not None and task.role == credential.role)
        )
        if kind == "task_offered":
            return task is not None  # a task is offered once
        if kind == "task_assignment":
            if task is None:
                return False  # new work, assigned directly
            if task.role is not None:
                return task.role != credential.role  # only its holder hands it over
            return (
                task.claimed_by is not None or task.mode == "swarm" or credential.role != "router"
            )
        if kind == "task_claimed":
            return (
                task is None
                or task.mode != "swarm"
                or task.claimed_by is not None
                or task.role is not None
                or task.status != "offered"
                or task.capability not in credential.capabilities
            )
        if kind == "task_escalated" and credential.role in OVERSEERS:
            return False
        return not holds

    def good_credential(self, payload: CredentialIssued) -> bool:
        key = self.operator.public_key
        if not verify_signature(key, CREDENTIAL_DOMAIN, payload.credential, payload.signature):
            return False
        credential = decode_credential(payload.credential)
        return credential.issuer == key and credential.agent_id != OPERATOR_ID

    def model_advance(self, envelope: Envelope, body_hash: str) -> bool:
        """Move the sender's chain head on; returns whether the event breaks the chain."""
        head_seq = self.heads.get(envelope.sender, (0, ""))[0]
        self.heads[envelope.sender] = (envelope.sender_seq, body_hash)
        return envelope.sender_seq != head_seq + 1

    def model_apply(self, envelope: Envelope) -> None:
        self.applied_ids.add(envelope.id)
        match envelope.payload:
            case CredentialIssued():
                c = decode_credential(envelope.payload.credential)
                known = self.credentials.get(c.public_key)
                self.credentials[c.public_key] = CredentialModel(
                    c.agent_id,
                    tuple(c.allowed_types),
                    c.expires_at,
                    revoked=bool(known and known.revoked),  # a revoked key stays revoked
                    role=c.role,
                    capabilities=tuple(c.capabilities),
                    tools=tuple(c.tools),
                    mcp_servers=tuple(c.mcp_servers),
                )
            case CredentialRevoked():
                if envelope.payload.public_key in self.credentials:
                    self.credentials[envelope.payload.public_key].revoked = True
            case AgentKilled():
                self.killed.add(envelope.payload.agent_id)
            case AgentRevived():
                self.killed.discard(envelope.payload.agent_id)
            case ClarificationRequest():
                self.asked[envelope.payload.request_id] = envelope.payload.to
            case TaskEscalated(task_id=task_id):
                wf = envelope.workflow_id
                if not any(
                    t == task_id and st_ == "open" for t, _, st_ in self.escalations.values()
                ):
                    status = "closed" if wf in self.ended else "open"
                    self.escalations[envelope.id] = (task_id, wf, status)
            case WorkflowSubmitted():
                self.ended.pop(str(envelope.workflow_id), None)
            case WorkflowCompleted(status=status):
                if envelope.workflow_id is not None:
                    self.ended[envelope.workflow_id] = status
                for key, (t, wf, st_) in self.escalations.items():
                    if wf == envelope.workflow_id and wf is not None and st_ == "open":
                        self.escalations[key] = (t, wf, "closed")
            case _:
                pass
        payload = envelope.payload
        if envelope.type in STATUS_AFTER:
            task_id = str(getattr(payload, "task_id", ""))
            task = self.tasks.setdefault(task_id, TaskModel(STATUS_AFTER[envelope.type]))
            task.status = STATUS_AFTER[envelope.type]
            match payload:
                case TaskOffered():
                    task.mode, task.capability = payload.mode, payload.capability
                case TaskAssignment():
                    task.role, task.capability = payload.role, payload.capability
                case TaskClaimed():
                    task.claimed_by = payload.agent_id
                case _:
                    pass

    # -- appending

    def append(
        self,
        sealed_or_data: Sealed | bytes,
        kind: str,
        *,
        tampered: bool = False,
        subject: str | None = None,
        stateless: frozenset[str] | None = None,
    ) -> None:
        """Append a message; ``stateless`` are the reasons when ``check`` must reject it."""
        seq = len(self.messages) + 1
        if isinstance(sealed_or_data, Sealed):
            data = sealed_or_data.data
            default_subject = subject_for(NAMESPACE, sealed_or_data.envelope)
        else:
            data = sealed_or_data
            default_subject = ""
        # The server's clock: unknown (0), or now, or a little later; rarely years away from the
        # signer's (a far-future or far-past date, which is never applied).
        stored_at = self.draw(st.sampled_from([0, self.now, self.now + 2_000_000_000]))
        if self.far_clocks and self.draw(st.integers(0, 15), label="far clock") == 0:
            stored_at = self.now + self.draw(st.sampled_from([-10 * YEAR, 30 * YEAR]))
            tampered = True
        message = StoredMessage(seq, subject or default_subject, data, stored_at)
        self.messages.append(message)
        if stateless is not None:
            self.expected.append(Expected(stateless, tampered, kind))
            return
        signed = decode_signed(data)
        envelope = decode_envelope(signed.body)
        reason, in_chain = self.model_admit(envelope, stored_at)
        body_hash = event_hash(signed.body)
        if reason is not None:
            gap = self.model_advance(envelope, body_hash) if in_chain else False
            self.expected.append(Expected(frozenset({reason}), tampered, kind, chain_break=gap))
            return
        gap = self.model_advance(envelope, body_hash)
        self.model_apply(envelope)
        self.expected.append(Expected(None, tampered, kind, chain_break=gap))
        self.applied.append((message, envelope))


def credential_for(world: World, agent: Identity) -> Credential:
    draw = world.draw
    allowed = ["*"]
    if draw(st.integers(0, 2), label="restricted") == 0:
        allowed = draw(st.lists(st.sampled_from(AGENT_KINDS), min_size=1, max_size=4, unique=True))
    expires_at = None
    if draw(st.integers(0, 3), label="expires") == 0:
        expires_at = world.now + draw(st.integers(0, 40)) * 1_000_000_000
    return Credential(
        agent_id=agent.agent_id,
        role=draw(st.sampled_from(ROLES)),
        public_key=agent.public_key,
        issuer=world.operator.public_key,
        issued_at=world.now,
        capabilities=draw(st.lists(st.sampled_from(CAPABILITIES), max_size=2)),
        allowed_types=allowed,
        expires_at=expires_at,
        tools=draw(st.lists(st.sampled_from([t for t, _ in TOOLS]), max_size=2, unique=True)),
        mcp_servers=draw(st.lists(st.sampled_from(["time", "git"]), max_size=1)),
    )


def task_for(world: World, agent: Identity, kind: str) -> str:
    """The task an event of ``kind`` names: often one the agent may speak to (it holds it, or
    may claim it), so that honest flows are as common as hostile ones."""
    draw = world.draw
    credential = world.credentials.get(agent.public_key)
    fitting: list[str] = []
    if credential is not None and kind in (*HOLDER_KINDS, "task_claimed", "task_assignment"):
        for task_id, task in world.tasks.items():
            if kind == "task_claimed":
                fits = task.mode == "swarm" and task.status == "offered" and task.role is None
                fits = fits and task.claimed_by is None
            else:
                fits = task.claimed_by == agent.agent_id or task.role == credential.role
            if fits:
                fitting.append(task_id)
    if fitting and draw(st.booleans(), label="fitting task"):
        return draw(st.sampled_from(sorted(fitting)), label="task")
    return draw(st.sampled_from(TASKS), label="task")


def agent_payload(world: World, agent: Identity, kind: str) -> tuple[Payload, dict[str, Any]]:
    """A payload of ``kind`` for ``agent`` (or the operator) and its envelope fields."""
    draw = world.draw
    task = task_for(world, agent, kind)
    workflow = draw(st.none() | st.sampled_from(WORKFLOWS), label="workflow")
    fields: dict[str, Any] = {"workflow_id": workflow}
    payload: Payload
    match kind:
        case "workflow_submitted":
            fields["workflow_id"] = draw(st.sampled_from(WORKFLOWS))
            payload = WorkflowSubmitted(
                pattern=draw(st.sampled_from(["supervisor", "pipeline", "debate", "swarm"])),
                input=draw(small_json),
                budget_tokens=draw(st.none() | st.integers(0, 10**6)),
            )
        case "task_assignment":
            # Mostly to the role of an agent there is, so that someone holds the task.
            roles = sorted({c.role for c in world.credentials.values()}) or list(ROLES)
            payload = TaskAssignment(
                task_id=task,
                role=draw(st.sampled_from(roles) | st.sampled_from(ROLES)),
                priority=draw(st.sampled_from(["critical", "high", "normal", "low"])),
                input=draw(small_json),
                attempt=draw(st.integers(1, 3)),
                parent_task_id=draw(st.none() | st.sampled_from(TASKS)),
            )
        case "task_started":
            payload = TaskStarted(task_id=task, attempt=draw(st.integers(1, 3)))
        case "result":
            usage = draw(
                st.none()
                | st.builds(
                    TokenUsage,
                    model=st.sampled_from(["", "small", "large"]),
                    prompt_tokens=st.integers(0, 10**6),
                    completion_tokens=st.integers(0, 10**6),
                )
            )
            payload = Result(
                task_id=task, output=draw(small_json), cached=draw(st.booleans()), usage=usage
            )
        case "error":
            payload = Error(
                task_id=task,
                code=draw(st.sampled_from(["timeout", "tool_failed", "E42"])),
                message=draw(text),
                retryable=draw(st.booleans()),
                traceback=draw(st.just("") | text),  # a crash's; none for a TaskError
            )
        case "clarification_request":
            payload = ClarificationRequest(
                request_id=draw(st.sampled_from(REQUESTS)),
                to=draw(st.sampled_from(AGENT_IDS)),
                question=draw(text),
                task_id=draw(st.none() | st.just(task)),
            )
        case "clarification_response":
            payload = ClarificationResponse(
                request_id=draw(st.sampled_from(REQUESTS)),
                to=draw(st.sampled_from(AGENT_IDS)),
                answer=draw(text),
                task_id=draw(st.none() | st.just(task)),
            )
        case "agent_registered":
            payload = AgentRegistered(
                agent_id=agent.agent_id,
                role=draw(st.sampled_from(ROLES)),
                capabilities=draw(st.lists(st.sampled_from(["web", "code"]), max_size=2)),
                tier=draw(st.sampled_from(["", "fast", "smart"])),
                replica=draw(st.sampled_from(["", "0", "1"])),
            )
        case "agent_heartbeat":
            payload = AgentHeartbeat(agent_id=agent.agent_id, in_flight=draw(st.integers(0, 9)))
        case "agent_stopped":
            about = draw(st.sampled_from([agent.agent_id] * len(AGENT_IDS) + list(AGENT_IDS)))
            payload = AgentStopped(agent_id=about, reason=draw(text))
        case "agent_lost" | "agent_seen":
            about = draw(st.sampled_from(AGENT_IDS))
            when = draw(st.integers(0, 2**40))
            payload = (
                AgentLost(agent_id=about, last_seen_at=draw(st.none() | st.just(when)))
                if kind == "agent_lost"
                else AgentSeen(agent_id=about, seen_at=when)
            )
        case "task_escalated":
            payload = TaskEscalated(task_id=task, reason=draw(text))
        case "task_offered":
            # Mostly what some agent can do, so that a swarm offer can be claimed.
            held = sorted({cap for c in world.credentials.values() for cap in c.capabilities})
            payload = TaskOffered(
                task_id=task,
                capability=draw(
                    st.sampled_from(held or CAPABILITIES) | st.sampled_from(CAPABILITIES)
                ),
                mode=draw(st.sampled_from(["routed", "swarm"])),
            )
        case "task_claimed":
            claimant = draw(st.sampled_from([agent.agent_id] * len(AGENT_IDS) + list(AGENT_IDS)))
            payload = TaskClaimed(task_id=task, agent_id=claimant)
        case "model_call_requested" | "model_call_completed":
            index = draw(st.integers(1, 3), label="call index")
            call = {"task_id": task, "call_index": index, "call_id": model_call_id(task, index)}
            if kind == "model_call_requested":
                payload = ModelCallRequested(
                    **call,
                    model="small",
                    digest=draw(st.sampled_from(["a" * 64, "b" * 64])),
                    messages=[{"role": "user", "content": draw(text)}],
                )
            else:
                status = draw(st.sampled_from(["ok", "error"]))
                payload = ModelCallCompleted(
                    **call,
                    model="small",
                    status=status,
                    reply={"role": "assistant", "content": draw(text)} if status == "ok" else {},
                    usage=TokenUsage(prompt_tokens=draw(st.integers(0, 10**6))),
                    duration_ms=draw(st.integers(0, 10**5)),
                )
        case "tool_call_requested" | "tool_call_completed":
            index = draw(st.integers(1, 3), label="call index")
            # Often a tool the agent is granted, so that honest calls are as common as the rest.
            mine = world.credentials.get(agent.public_key)
            granted = [
                (t, srv)
                for t, srv in TOOLS
                if mine is not None and (t in mine.tools or srv in mine.mcp_servers)
            ]
            tool, server = draw(st.sampled_from(granted or TOOLS) | st.sampled_from(TOOLS))
            call = {"task_id": task, "call_index": index, "call_id": tool_call_id(task, index)}
            if kind == "tool_call_requested":
                payload = ToolCallRequested(
                    **call, tool=tool, server=server, arguments=draw(small_json), digest="c" * 64
                )
            else:
                payload = ToolCallCompleted(
                    **call,
                    tool=tool,
                    server=server,
                    status=draw(st.sampled_from(["ok", "error", "refused"])),
                    result=draw(small_json),
                )
        case "escalation_resolved":  # an operator's event: only ever drawn as disallowed
            payload = EscalationResolved(
                escalation_id="01ARZ3NDEKTSV4RRFFQ69G5FAV",
                task_id=task,
                action=draw(st.sampled_from(["retry", "reassign", "answer", "cancel"])),
            )
        case "workflow_completed":
            fields["workflow_id"] = draw(st.sampled_from(WORKFLOWS))
            payload = WorkflowCompleted(
                status=draw(st.sampled_from(["succeeded", "failed", "cancelled"]))
            )
        case "agent_killed":
            payload = AgentKilled(
                agent_id=draw(st.sampled_from([*world.agents, "*"])), reason=draw(text)
            )
        case "agent_revived":
            payload = AgentRevived(agent_id=draw(st.sampled_from([*world.agents, "*"])))
        case "credential_revoked":
            # Mostly a key that was issued; sometimes one that never was.
            target = world.agents[draw(st.sampled_from(sorted(world.agents)))].public_key
            if draw(st.integers(0, 3), label="never issued") == 0:
                target = Identity.from_seed("rogue", seed("never", draw(st.integers(0, 99))))
                target = target.public_key
            payload = CredentialRevoked(public_key=target, reason=draw(text))
        case "circuit_opened":
            payload = CircuitOpened(circuit=draw(text), reason=draw(text))
        case "circuit_closed":
            payload = CircuitClosed(circuit=draw(text))
        case "circuit_half_opened":
            payload = CircuitHalfOpened(circuit=draw(text))
        case "budget_exceeded":
            payload = BudgetExceeded(
                scope=draw(st.sampled_from(["agent", "workflow"])),
                scope_id=draw(st.sampled_from([*AGENT_IDS, *WORKFLOWS])),
                limit=draw(st.sampled_from(["soft", "hard"])),
                used_tokens=draw(st.integers(0, 10**6)),
                budget_tokens=draw(st.integers(0, 10**6)),
            )
        case _:
            raise AssertionError(kind)
    return payload, fields


OPERATOR_KINDS = (
    "workflow_submitted",
    "workflow_completed",
    "task_escalated",
    "task_assignment",
    "task_offered",
    "agent_killed",
    "agent_revived",
    "credential_revoked",
    "circuit_opened",
    "circuit_closed",
    "circuit_half_opened",
    "budget_exceeded",
)
#: The operator creates work more often than it does the rest, so agents have tasks to hold.
#: Escalations and workflows ending meet often enough that one closes the other.
WEIGHTED_OPERATOR_KINDS = (
    *OPERATOR_KINDS,
    *("task_assignment", "task_offered") * 3,
    *("task_escalated", "workflow_completed") * 2,
)
STEPS = (
    ["agent"] * 24
    + ["operator"] * 4
    + ["gap", "disallowed", "flip", "duplicate", "unknown_key", "wrong_subject"]
    + ["wrong_sender", "fork", "reused_id", "bad_credential"]
)


def step(world: World) -> None:
    draw = world.draw
    op = world.operator
    name = draw(st.sampled_from(sorted(world.agents)), label="agent")
    agent = world.agents[name]
    what = draw(st.sampled_from(STEPS), label="step")
    match what:
        case "agent" | "gap" | "disallowed":
            if what == "disallowed":
                kind = draw(st.sampled_from([*AGENT_KINDS, *CONTROL_TYPES - {"credential_issued"}]))
            else:
                allowed = world.credentials[agent.public_key].allowed
                kinds = WEIGHTED_KINDS if "*" in allowed else allowed
                kind = draw(st.sampled_from(kinds), label="kind")
            payload, fields = agent_payload(world, agent, kind)
            head = None
            if what == "gap":  # the agent's chain skips a position (a lost event)
                view = world.views.get(name, ChainHead())
                head = ChainHead(view.seq + draw(st.integers(1, 3)), view.hash)
            world.append(world.seal(agent, payload, head=head, **fields), what)
        case "operator":
            kind = draw(st.sampled_from(WEIGHTED_OPERATOR_KINDS), label="operator kind")
            payload, fields = agent_payload(world, op, kind)
            world.append(world.seal(op, payload, **fields), kind)
        case "flip":
            who = draw(st.sampled_from([agent, op]))
            payload, fields = agent_payload(world, who, "task_assignment")
            sealed = world.seal(who, payload, **fields)
            index = draw(st.integers(0, len(sealed.data) - 1), label="flip index")
            mask = draw(st.integers(1, 255), label="flip mask")
            data = (
                sealed.data[:index] + bytes([sealed.data[index] ^ mask]) + sealed.data[index + 1 :]
            )
            subject = subject_for(NAMESPACE, sealed.envelope)
            world.append(data, what, tampered=True, subject=subject, stateless=FLIP_REASONS)
        case "duplicate":
            if not world.applied:
                return
            original, _ = draw(st.sampled_from(world.applied), label="duplicated")
            world.append(original.data, what, tampered=True, subject=original.subject)
        case "unknown_key":
            rogue = Identity.from_seed(
                draw(st.sampled_from([*AGENT_IDS, OPERATOR_ID])),
                seed("rogue", draw(st.integers(0, 2**16))),
            )
            kind = draw(st.sampled_from(AGENT_KINDS))
            payload, fields = agent_payload(world, rogue, kind)
            head = ChainHead(draw(st.integers(0, 5)), "")
            sealed = world.seal(rogue, payload, head=head, advance=False, **fields)
            world.append(sealed, what, tampered=True)
        case "wrong_subject":
            payload, fields = agent_payload(world, agent, "agent_heartbeat")
            sealed = world.seal(agent, payload, **fields)
            right = subject_for(NAMESPACE, sealed.envelope)
            wrong = draw(
                st.sampled_from(
                    [
                        right.replace(f"swarmlog.{NAMESPACE}.", "swarmlog.other.", 1),
                        right + ".x",
                        right.rsplit(".", 1)[0] + ".agent_registered",
                        f"swarmlog.{NAMESPACE}.{OPERATOR_ID}.ctl.agent_killed",
                    ]
                )
            )
            assert wrong != right
            world.append(
                sealed,
                what,
                tampered=True,
                subject=wrong,
                stateless=frozenset({"subject_mismatch"}),
            )
        case "wrong_sender":
            other = draw(st.sampled_from([a for a in [*AGENT_IDS, OPERATOR_ID] if a != name]))
            key = draw(st.sampled_from([agent, op]))
            if key is op and other == OPERATOR_ID:
                other = name
            impostor = Identity(other, key.signing_key)
            payload, fields = agent_payload(world, impostor, "agent_heartbeat")
            sealed = world.seal(impostor, payload, advance=False, **fields)
            world.append(sealed, what, tampered=True)
        case "fork":
            seq, good = world.heads.get(name, (0, ""))
            forged = ChainHead(seq, hashlib.sha256(good.encode() + b"forged").hexdigest())
            payload, fields = agent_payload(world, agent, "agent_heartbeat")
            world.append(
                world.seal(agent, payload, head=forged, advance=False, **fields),
                what,
                tampered=True,
            )
        case "reused_id":
            if not world.applied:
                return
            _, earlier = draw(st.sampled_from(world.applied), label="id source")
            clock = (earlier.occurred_at, _entropy_of(earlier.id))
            payload, fields = agent_payload(world, agent, "agent_heartbeat")
            sealed = world.seal(agent, payload, clock=clock, **fields)
            assert sealed.envelope.id == earlier.id
            world.append(sealed, what, tampered=True)
        case "bad_credential":
            victim = Identity.from_seed("rogue", seed("victim", draw(st.integers(0, 99))))
            claims = Credential(
                agent_id=draw(st.sampled_from([name, OPERATOR_ID])),
                role="router",
                public_key=victim.public_key,
                issuer=op.public_key,
                issued_at=world.now,
            )
            if claims.agent_id == OPERATOR_ID:  # properly signed, but names the operator
                payload = issue_credential(op, claims)
            else:  # signed by a key that is not the operator's
                body = encode(claims)
                payload = CredentialIssued(
                    credential=body, signature=victim.sign(CREDENTIAL_DOMAIN, body)
                )
            world.append(world.seal(op, payload), what, tampered=True)
        case _:
            raise AssertionError(what)


def _entropy_of(event_id: str) -> bytes:
    crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    value = 0
    for c in event_id:
        value = value << 5 | crockford.index(c)
    return (value & ((1 << 80) - 1)).to_bytes(10, "big")


@st.composite
def sequences(draw: st.DrawFn, max_steps: int = 40) -> EventSequence:
    operator = Identity.from_seed(OPERATOR_ID, seed("operator", draw(st.integers(0, 2**32))))
    world = World(draw, operator)
    world.now += draw(st.integers(0, 10**18), label="epoch")
    names = draw(st.lists(st.sampled_from(AGENT_IDS), min_size=1, max_size=3, unique=True))
    for name in names:
        agent = Identity.from_seed(name, seed(name, draw(st.integers(0, 2**32))))
        world.agents[name] = agent
        world.append(
            world.seal(operator, issue_credential(operator, credential_for(world, agent))),
            "credential_issued",
        )
    world.far_clocks = True
    for _ in range(draw(st.integers(min(5, max_steps), max_steps), label="steps")):
        step(world)
    return EventSequence(operator.public_key, world.messages, world.expected, world.escalations)


# --- folding -------------------------------------------------------------------------------------


def reference_fold(messages: list[StoredMessage], operator_key: str) -> State:
    state = State()
    for message in messages:
        checked = check(message, NAMESPACE)
        rejection = admit(state, checked, operator_key)
        if rejection is not None:
            quarantine(state, message, rejection, checked.envelope, checked.body_hash)
        else:
            assert checked.envelope is not None
            apply(state, message, checked.envelope, checked.body_hash, verified=True)
    return state


def seqs(state: State, table: str) -> set[int]:
    return {key[0] for key in state.rows[table]}


@given(sequences())
@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_fold_agrees_with_the_model(sequence: EventSequence) -> None:
    state = reference_fold(sequence.messages, sequence.operator_key)
    applied = seqs(state, "events")
    quarantined = {seq: row["reason"] for (seq,), row in state.rows["quarantine"].items()}
    assert applied.isdisjoint(quarantined)
    assert applied | set(quarantined) == {m.seq for m in sequence.messages}
    assert set(quarantined.values()) <= set(REASONS)
    for message, expected in sequence.expected_pairs():
        if expected.reasons is None:
            assert message.seq in applied, (message.seq, expected, quarantined.get(message.seq))
        else:
            assert quarantined.get(message.seq) in expected.reasons, (message.seq, expected)
    # No tampered message is ever applied.
    assert sequence.tampered <= set(quarantined)
    # Gaps are applied but recorded.
    breaks = {m.seq for m, e in sequence.expected_pairs() if e.chain_break}
    assert seqs(state, "chain_breaks") == breaks
    # An event id is applied at most once.
    ids = [row["id"] for row in state.rows["events"].values()]
    assert len(ids) == len(set(ids))
    # One open escalation per task at most, closed with its workflow.
    escalations = {
        eid: (row["task_id"], row["workflow_id"], row["status"])
        for (eid,), row in state.rows["escalations"].items()
    }
    assert escalations == sequence.escalations


@given(sequences())
@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_fold_is_deterministic(sequence: EventSequence) -> None:
    first = reference_fold(sequence.messages, sequence.operator_key)
    second = reference_fold(list(sequence.messages), sequence.operator_key)
    assert first.rows == second.rows
    assert state_hash(first) == state_hash(second)


@given(sequences(), st.data())
@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_state_hash_is_sensitive_to_the_log(sequence: EventSequence, data: st.DataObject) -> None:
    """Dropping an applied message changes the state hash (the hash is not vacuous)."""
    state = reference_fold(sequence.messages, sequence.operator_key)
    applied = sorted(seqs(state, "events"))
    drop = data.draw(st.sampled_from(applied))
    fewer = [m for m in sequence.messages if m.seq != drop]
    assert state_hash(reference_fold(fewer, sequence.operator_key)) != state_hash(state)


# --- the DuckDB projector: batching, replay, resume ---------------------------------------------


def split(messages: list[StoredMessage], sizes: list[int]) -> list[list[StoredMessage]]:
    """Consecutive batches of the given sizes, cycling through them (all at once if none)."""
    batches, i, k = [], 0, 0
    while i < len(messages):
        size = sizes[k % len(sizes)] if sizes else len(messages)
        batches.append(messages[i : i + size])
        i, k = i + size, k + 1
    return batches


def store_seqs(store: ProjectionStore, table: str) -> set[int]:
    return {row[0] for row in store.rows(f"SELECT seq FROM {table}")}


batch_sizes = st.lists(st.integers(1, 8), max_size=6)


@given(sequences(max_steps=30), batch_sizes, batch_sizes, st.integers(0, 40))
@settings(
    deadline=None,
    max_examples=max(30, settings.default.max_examples // 4),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
def test_projector_matches_the_reference_fold(
    sequence: EventSequence, sizes_a: list[int], sizes_b: list[int], resume_at: int
) -> None:
    messages = sequence.messages
    reference = reference_fold(messages, sequence.operator_key)
    expected_hash = state_hash(reference)
    with tempfile.TemporaryDirectory() as tmp:
        # Live, batch by batch; after every batch the file equals the fold of that prefix.
        with ProjectionStore(Path(tmp) / "a.duckdb") as store:
            projector = Projector(
                MemoryLog(STREAM), store, namespace=NAMESPACE, operator_key=sequence.operator_key
            )
            try:
                for batch in split(messages, sizes_a):
                    result = projector.process(batch)
                    prefix = reference_fold(messages[: batch[-1].seq], sequence.operator_key)
                    assert store.state_hash() == state_hash(prefix)
                    assert store.position() == batch[-1].seq
                    assert result.applied + len(result.rejected) == len(batch)
            finally:
                projector.close()
            assert store.state_hash() == expected_hash
            assert store_seqs(store, "events") == seqs(reference, "events")
            assert sequence.tampered <= store_seqs(store, "quarantine")
            assert sequence.tampered.isdisjoint(store_seqs(store, "events"))

        # Live again with another split.
        with ProjectionStore(Path(tmp) / "b.duckdb") as store:
            projector = Projector(
                MemoryLog(STREAM), store, namespace=NAMESPACE, operator_key=sequence.operator_key
            )
            try:
                for batch in split(messages, sizes_b):
                    projector.process(batch)
            finally:
                projector.close()
            assert store.state_hash() == expected_hash

        # Replay from the log into a fresh file, stopping half way and resuming.
        with ProjectionStore(Path(tmp) / "c.duckdb") as store:
            position = asyncio.run(
                replay(messages, store, sequence.operator_key, min(resume_at, len(messages)))
            )
            assert position == len(messages)
            assert store.position() == len(messages)
            assert store.state_hash() == expected_hash


WRITE_PATHS: dict[str, tuple[Any, dict[str, int]]] = {
    # Past one row, every write takes the path of a large batch (Arrow tables: inserts,
    # replaces, updates of the columns that changed), which the small sequences here never reach.
    "bulk": (store_module, {"_SMALL": 1}),
    # Every update of rows storage holds in one UPDATE ... FROM (VALUES ...).
    "values": (store_module, {"_FEW_UPDATES": 0}),
    # No row kept between batches: every batch reads its rows from storage, and an offer's task
    # is presumed absent, so an offer that repeats a task id takes the refold.
    "forgetful": (state_module, {"RECENT_ROWS": 0}),
}


@given(sequences(max_steps=30), batch_sizes, st.sampled_from(sorted(WRITE_PATHS)))
@settings(
    deadline=None,
    max_examples=max(20, settings.default.max_examples // 6),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
def test_every_write_path_matches_the_reference_fold(
    sequence: EventSequence, sizes: list[int], path: str
) -> None:
    # After every batch the file equals the fold of that prefix.
    messages = sequence.messages
    with (
        tempfile.TemporaryDirectory() as tmp,
        mock.patch.multiple(WRITE_PATHS[path][0], **WRITE_PATHS[path][1]),
        ProjectionStore(Path(tmp) / "paths.duckdb") as store,
    ):
        projector = Projector(
            MemoryLog(STREAM), store, namespace=NAMESPACE, operator_key=sequence.operator_key
        )
        try:
            for batch in split(messages, sizes):
                projector.process(batch)
                prefix = reference_fold(messages[: batch[-1].seq], sequence.operator_key)
                assert store.state_hash() == state_hash(prefix)
        finally:
            projector.close()


async def replay(
    messages: list[StoredMessage], store: ProjectionStore, operator_key: str, stop_at: int
) -> int:
    stamps = iter([m.stored_at for m in messages])
    log = MemoryLog(STREAM, wall_clock=lambda: next(stamps))
    for message in messages:
        result = await log.append(Append(message.subject, message.data, f"m{message.seq}"))
        assert result.seq == message.seq
    stored = [m async for batch in log.read() for m in batch]
    assert [(m.seq, m.subject, m.data, m.stored_at) for m in stored] == [
        (m.seq, m.subject, m.data, m.stored_at) for m in messages
    ]
    projector = Projector(log, store, namespace=NAMESPACE, operator_key=operator_key)
    try:
        if stop_at:
            assert await projector.run(follow=False, until_seq=stop_at) == stop_at
            assert store.position() == stop_at
        return await projector.run(follow=False)
    finally:
        projector.close()


# --- an integer the store could not hold ---------------------------------------------------------


def test_an_out_of_range_integer_does_not_wedge_the_projector(tmp_path: Path) -> None:
    operator = Identity.from_seed(OPERATOR_ID, seed("operator", 0))
    agent = Identity.from_seed("alpha", seed("alpha", 0))
    credential = Credential(
        agent_id="alpha",
        role="router",
        public_key=agent.public_key,
        issuer=operator.public_key,
        issued_at=0,
    )
    issued = seal(
        operator, ChainHead(), issue_credential(operator, credential), now_ns=1, entropy=bytes(10)
    )
    big = seal(
        agent,
        ChainHead(),
        AgentHeartbeat(agent_id="alpha", in_flight=2**63),
        now_ns=2,
        entropy=b"\x00" * 9 + b"\x01",
    )
    messages = [
        StoredMessage(i + 1, subject_for(NAMESPACE, s.envelope), s.data)
        for i, s in enumerate([issued, big])
    ]
    with ProjectionStore(tmp_path / "x.duckdb") as store:
        projector = Projector(
            MemoryLog(STREAM), store, namespace=NAMESPACE, operator_key=operator.public_key
        )
        try:
            result = projector.process(messages)
        finally:
            projector.close()
        # The schema bounds integers to what the store holds: the event is malformed, not fatal.
        assert store.position() == 2
        assert result.rejected == [(2, "malformed")]
        assert store_seqs(store, "events") == {1}
