# Over 400 lines: the closed union of every event type; one file, so the union is read whole.
"""The swarm's language: one closed, tagged union of event payloads.

Every payload is a frozen msgspec struct tagged with its snake_case type name in the field
``type``. The four mission message kinds are tagged exactly ``task_assignment``, ``result``,
``error`` and ``clarification_request`` (answered by ``clarification_response``); the rest is the
lifecycle around them.

Evolution is by addition only: a new field gets a default, a tag and a field's type never change.
A breaking change gets a new struct with a new tag and an upcaster.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from swarmlog.schemas.types import (
    AgentId,
    Capability,
    EventId,
    Hash,
    Json,
    KeyId,
    Name,
    Priority,
    Role,
    Text,
    Timestamp,
    ToolName,
)

__all__ = [
    "JOURNAL_TYPES",
    "MAX_TRACEBACK",
    "PAYLOAD_TYPES",
    "AgentHeartbeat",
    "AgentKilled",
    "AgentLost",
    "AgentRegistered",
    "AgentRevived",
    "AgentSeen",
    "AgentStopped",
    "BudgetExceeded",
    "CircuitClosed",
    "CircuitHalfOpened",
    "CircuitOpened",
    "ClarificationRequest",
    "ClarificationResponse",
    "CredentialIssued",
    "CredentialRevoked",
    "DeadlockDetected",
    "Error",
    "EscalationResolved",
    "ModelCallCompleted",
    "ModelCallRequested",
    "Payload",
    "Result",
    "SnapshotTaken",
    "TaskAssignment",
    "TaskCancelled",
    "TaskCheckpointed",
    "TaskClaimed",
    "TaskCompleted",
    "TaskEscalated",
    "TaskFailed",
    "TaskHeartbeat",
    "TaskOffered",
    "TaskRetryScheduled",
    "TaskStarted",
    "TokenUsage",
    "ToolCallCompleted",
    "ToolCallRequested",
    "ToolPin",
    "WorkflowCompleted",
    "WorkflowPlanned",
    "WorkflowRevised",
    "WorkflowSubmitted",
    "model_call_id",
    "payload_type",
    "tool_call_id",
]

_Caps = Annotated[list[Capability], Meta(max_length=64)]
# Token counts stay far below 2**63 so that sums of them still fit a BIGINT column.
_Count = Annotated[int, Meta(ge=0, le=2**40)]
_Attempt = Annotated[int, Meta(ge=1, le=1000)]
_Reason = Annotated[str, Meta(max_length=4096)]
MAX_TRACEBACK = 4096
"""The most of a crashed handler's traceback an ``error`` event carries: its last frames and
the exception, enough to say where it crashed. Every event is signed, kept for good and read by
every folder, so a deep or chained traceback is cut; the whole one is in the agent's log."""
_Digest = Annotated[str, Meta(pattern=r"^[0-9a-f]{64}\Z")]
"""A SHA-256 digest in hex (required: never empty)."""
_CallIndex = Annotated[int, Meta(ge=1, le=10_000)]
_CallId = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9_-]*\.[mt][0-9]+\Z", max_length=80)]
_Server = Annotated[str, Meta(pattern=r"^([a-z0-9][a-z0-9_-]*)?\Z", max_length=64)]
"""An MCP server's name (a :data:`Name`), or empty for none."""
_Millis = Annotated[int, Meta(ge=0, le=2**40)]
_Message = dict[str, Json]
"""One message of a conversation, as ``msgspec.to_builtins`` gives it (``role``, ``content``,
``tool_calls``, ``tool_call_id``, ``name``)."""
_CACHE_KEY = r"^result\.[a-z0-9][a-z0-9_-]*\.[0-9a-f]{64}\Z"
"""A result cache key: ``result.<role>.<sha256>``."""


class _Payload(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", omit_defaults=True):
    """Base of every payload; the tag is the snake_case class name."""


class TokenUsage(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Model usage attached to a result."""

    model: Annotated[str, Meta(max_length=256)] = ""
    prompt_tokens: _Count = 0
    completion_tokens: _Count = 0


class ToolPin(msgspec.Struct, frozen=True, kw_only=True):
    """A tool an agent announces at registration, with the digest of its definition (name,
    description, parameter schema): a definition that changes afterwards is refused."""

    name: ToolName
    digest: _Digest


# --- the four mission message kinds -------------------------------------------------------------


class TaskAssignment(_Payload, frozen=True, tag="task_assignment"):
    """Work for a role: routed to ``role`` at ``priority``, answered by ``result`` or ``error``."""

    task_id: Name
    role: Role
    capability: Capability = ""
    priority: Priority = "normal"
    input: Json = None
    attempt: _Attempt = 1
    deadline_at: Timestamp | None = None
    parent_task_id: Name | None = None
    expected_output_schema: Json = None
    internal_only: bool = False
    """Its data must not reach an external agent: subtasks it delegates inherit this."""


class Result(_Payload, frozen=True, tag="result"):
    """A task's output."""

    task_id: Name
    output: Json = None
    cached: bool = False
    usage: TokenUsage | None = None
    cache_key: Annotated[str, Meta(pattern=_CACHE_KEY, max_length=160)] | None = None
    """The result cache key this output was computed for (see
    :mod:`swarmlog.agents.policy.resultcache`): signed with it, so a cache entry pointing at this
    event cannot be moved to another key."""
    attempt: _Attempt | None = None
    started_at: Timestamp | None = None
    """Set together by a task that ended at once (within ``STARTED_AFTER``, having published
    nothing before): the attempt and when it started (ns since the epoch), in place of a
    ``task_started`` event of its own. A task that ran longer has its ``task_started`` on the
    log and these unset."""

    @property
    def began(self) -> tuple[int, int] | None:
        """``(attempt, started_at)`` when the result says both (one alone says nothing)."""
        if self.attempt is None or self.started_at is None:
            return None
        return self.attempt, self.started_at


class Error(_Payload, frozen=True, tag="error"):
    """A task failed; ``retryable`` says whether another attempt may succeed."""

    task_id: Name
    code: Annotated[str, Meta(max_length=128)]
    message: _Reason = ""
    retryable: bool = True
    dependency: Name | None = None
    """The external dependency that failed (one the agent declared), if it was one."""
    traceback: Annotated[str, Meta(max_length=MAX_TRACEBACK)] = ""
    """A crashed handler's traceback, its last :data:`MAX_TRACEBACK` characters (empty for a
    ``TaskError`` the handler raised on purpose: its code and message say it all)."""
    permanent: bool = False
    """The failure is the work's own (a bad input, the handler's bug on it, a model's 4xx),
    not a sign that its role or dependency is unhealthy: it was not retried, and it counts
    toward no circuit breaker. Omitted when false, so older events encode as they were."""


class ClarificationRequest(_Payload, frozen=True, tag="clarification_request"):
    """An agent asks another agent (``to``) a question and waits for the response."""

    request_id: Name
    to: AgentId
    question: Text
    task_id: Name | None = None


class ClarificationResponse(_Payload, frozen=True, tag="clarification_response"):
    """The answer to a clarification request, addressed to the asker."""

    request_id: Name
    to: AgentId
    answer: Text
    task_id: Name | None = None


# --- workflow lifecycle ---------------------------------------------------------------------------


class WorkflowSubmitted(_Payload, frozen=True, tag="workflow_submitted"):
    """A workflow of ``pattern`` was started with ``input``."""

    pattern: Literal["supervisor", "pipeline", "debate", "swarm", "custom"]
    input: Json = None
    budget_tokens: _Count | None = None


class WorkflowPlanned(_Payload, frozen=True, tag="workflow_planned"):
    """A plan (a DAG of tasks) for a workflow."""

    version: Annotated[int, Meta(ge=1, le=1_000_000)] = 1
    plan: Json = None


class WorkflowRevised(_Payload, frozen=True, tag="workflow_revised"):
    """A new plan version; completed work is kept."""

    version: Annotated[int, Meta(ge=2, le=1_000_000)]
    plan: Json = None
    reason: _Reason = ""


class WorkflowCompleted(_Payload, frozen=True, tag="workflow_completed"):
    """A workflow ended."""

    status: Literal["succeeded", "failed", "cancelled"]
    result: Json = None


# --- task lifecycle -------------------------------------------------------------------------------


class TaskOffered(_Payload, frozen=True, tag="task_offered"):
    """A task for whoever has ``capability``.

    ``mode="routed"``: the router assigns it to the best role (capability, tier, load).
    ``mode="swarm"``: offered to every capable agent; the first claim wins.
    """

    task_id: Name
    capability: Capability
    priority: Priority = "normal"
    input: Json = None
    mode: Literal["routed", "swarm"] = "routed"
    deadline_at: Timestamp | None = None
    parent_task_id: Name | None = None
    """Set when a handler delegated it: the parent waits for its result."""
    avoid_roles: Annotated[list[Role], Meta(max_length=16)] = []
    """Roles the router passes over when another role can do it (a reassignment)."""
    internal_only: bool = False
    """Routed only to roles with no external replica (its data stays inside)."""


class TaskClaimed(_Payload, frozen=True, tag="task_claimed"):
    """Swarm mode: ``agent_id`` claims a task (one claim wins, by optimistic concurrency)."""

    task_id: Name
    agent_id: AgentId


class TaskStarted(_Payload, frozen=True, tag="task_started"):
    task_id: Name
    attempt: _Attempt = 1


class TaskHeartbeat(_Payload, frozen=True, tag="task_heartbeat"):
    task_id: Name
    progress: Annotated[float, Meta(ge=0.0, le=1.0)] | None = None
    note: _Reason = ""


class TaskCheckpointed(_Payload, frozen=True, tag="task_checkpointed"):
    """Partial work a handler saved: a retry or a reassigned task resumes from the last one."""

    task_id: Name
    data: Json = None


class TaskCompleted(_Payload, frozen=True, tag="task_completed"):
    task_id: Name


class TaskFailed(_Payload, frozen=True, tag="task_failed"):
    task_id: Name
    reason: _Reason = ""
    final: bool = False


class TaskRetryScheduled(_Payload, frozen=True, tag="task_retry_scheduled"):
    task_id: Name
    attempt: _Attempt
    delay_ms: _Count = 0


class TaskEscalated(_Payload, frozen=True, tag="task_escalated"):
    """A task needs a human; see ``swarmlog escalations``."""

    task_id: Name
    reason: _Reason = ""


class EscalationResolved(_Payload, frozen=True, tag="escalation_resolved"):
    """The operator's answer to an escalation; the work continues from it.

    ``retry`` (the same role again) and ``reassign`` (to ``role``) come with a new
    ``task_assignment``, ``answer`` with a ``result`` carrying ``answer``, ``cancel`` with a
    ``task_cancelled``, all signed by the operator.
    """

    escalation_id: EventId
    task_id: Name
    action: Literal["retry", "reassign", "answer", "cancel"]
    role: Role | None = None
    answer: Text = ""
    note: _Reason = ""


class TaskCancelled(_Payload, frozen=True, tag="task_cancelled"):
    task_id: Name
    reason: _Reason = ""


# --- the journal: every model call and tool call of a task ---------------------------------------


def model_call_id(task_id: str, call_index: int) -> str:
    """The id of a task's ``call_index``-th model call: ``<task_id>.m<call_index>``."""
    return f"{task_id}.m{call_index}"


def tool_call_id(task_id: str, call_index: int) -> str:
    """The id of a task's ``call_index``-th tool call: ``<task_id>.t<call_index>`` (also the
    idempotency key passed to a tool that accepts one)."""
    return f"{task_id}.t{call_index}"


def _check_tool_server(tool: str, server: str) -> None:
    if server:
        if not tool.startswith(server + ".") or len(tool) == len(server) + 1:
            raise ValueError(f"tool {tool!r} of MCP server {server!r} must be named {server}.TOOL")
    elif "." in tool:
        raise ValueError(f"tool {tool!r} has a server prefix but no server: set server")


class _Call(_Payload, frozen=True):
    """What every journal event starts with: which call of which task it is about.

    A shared base, no event of its own (:data:`PAYLOAD_TYPES` holds only its subclasses); its
    fields come first in every journal event, as they always have.
    """

    task_id: Name
    call_index: _CallIndex
    call_id: _CallId

    def _derived_call_id(self) -> str:
        """The one ``call_id`` this call may have (:func:`model_call_id`, :func:`tool_call_id`)."""
        raise NotImplementedError

    def __post_init__(self) -> None:
        # A call id is derived, never chosen: two events naming one call cannot disagree on it.
        expected = self._derived_call_id()
        if self.call_id != expected:
            raise ValueError(f"call_id is {self.call_id!r}, must be {expected!r}")


class _ModelCall(_Call, frozen=True):
    """A journal event of a model call: its ``call_id`` is ``<task_id>.m<call_index>``
    (:func:`model_call_id`)."""

    model: Annotated[str, Meta(max_length=256)]

    def _derived_call_id(self) -> str:
        return model_call_id(self.task_id, self.call_index)


class _ToolCall(_Call, frozen=True):
    """A journal event of a tool call: its ``call_id`` is ``<task_id>.t<call_index>``
    (:func:`tool_call_id`)."""

    tool: ToolName
    """A Python tool's name, or ``SERVER.TOOL`` for a tool of MCP server ``server``."""

    def _derived_call_id(self) -> str:
        return tool_call_id(self.task_id, self.call_index)


class ModelCallRequested(_ModelCall, frozen=True, tag="model_call_requested"):
    """A task is about to call a model: its ``call_index``-th model call (counted per task,
    stable across attempts, so a retry finds the call in the journal and reuses its answer)."""

    digest: _Digest
    """SHA-256 of the canonical request: messages, tools, output schema, options."""
    messages: Annotated[list[_Message], Meta(max_length=1024)] = msgspec.field(default_factory=list)
    """The messages added to the conversation since the task's previous model call."""
    tools: Annotated[list[ToolName], Meta(max_length=256)] = msgspec.field(default_factory=list)
    """The names of the tools offered to the model."""
    reserved_tokens: Annotated[int, Meta(ge=0, le=2**53)] = 0
    """Tokens of the workflow's budget the call holds while it runs (its prompt and the most its
    answer may take); 0: none. The projection admits or refuses the reservation in log order
    (``model_calls.admitted``) and the replica asks the model only once admitted."""


class ModelCallCompleted(_ModelCall, frozen=True, tag="model_call_completed"):
    """The answer to a journaled model call, or why there is none."""

    status: Literal["ok", "error"]
    reply: _Message = msgspec.field(default_factory=dict)
    """The assistant message (``role``, ``content``, ``tool_calls``); empty on error."""
    usage: TokenUsage | None = None
    duration_ms: _Millis = 0
    error: _Reason = ""


class ToolCallRequested(_ToolCall, frozen=True, tag="tool_call_requested"):
    """A task is about to call a tool: its ``call_index``-th tool call (counted per task)."""

    digest: _Digest
    """SHA-256 of the canonical arguments."""
    server: _Server = ""
    """The MCP server of the tool; empty for a Python tool."""
    arguments: Json = None
    definition: Hash = ""
    """The pin digest of the tool's definition (see :class:`ToolPin`)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_tool_server(self.tool, self.server)


class ToolCallCompleted(_ToolCall, frozen=True, tag="tool_call_completed"):
    """The outcome of a journaled tool call: ``refused`` when it was not made (not granted,
    a changed definition, an unknown tool)."""

    status: Literal["ok", "error", "refused"]
    server: _Server = ""
    result: Json = None
    error: _Reason = ""
    duration_ms: _Millis = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_tool_server(self.tool, self.server)


# --- agents and trust -----------------------------------------------------------------------------


class AgentRegistered(_Payload, frozen=True, tag="agent_registered"):
    """An agent replica came up."""

    agent_id: AgentId
    role: Role
    capabilities: _Caps = msgspec.field(default_factory=list)
    tier: Annotated[str, Meta(max_length=64)] = ""
    replica: Annotated[str, Meta(max_length=64)] = ""
    dependencies: Annotated[list[Name], Meta(max_length=64)] = msgspec.field(default_factory=list)
    """External services the agent calls (each gets a circuit breaker of its own)."""
    tools: Annotated[list[ToolPin], Meta(max_length=256)] = msgspec.field(default_factory=list)
    """The tools the agent has, each pinned to the digest of its definition."""
    mcp_servers: Annotated[list[Name], Meta(max_length=64)] = msgspec.field(default_factory=list)
    """The MCP servers its tools come from."""


class AgentHeartbeat(_Payload, frozen=True, tag="agent_heartbeat"):
    """A replica's periodic sign of life on the log, as earlier versions sent it every few
    seconds. No longer sent (liveness and load live in the presence bucket, see
    :mod:`swarmlog.schemas.presence`); still decoded and folded, so old logs replay the same."""

    agent_id: AgentId
    in_flight: _Count = 0


class AgentStopped(_Payload, frozen=True, tag="agent_stopped"):
    """A replica stopped on purpose (SIGTERM, ``agent stop``, ``down``): it takes no more work
    until it registers again. Emitted by the replica itself."""

    agent_id: AgentId
    reason: _Reason = ""


class AgentLost(_Payload, frozen=True, tag="agent_lost"):
    """The watchdog found a registered replica that has no fresh presence and never said it
    stopped (it crashed, hangs or was cut off)."""

    agent_id: AgentId
    last_seen_at: Timestamp | None = None
    """When its last authentic presence was put (its own clock); ``None`` when none was found.
    A lost that predates the replica's registration is about an earlier run: not applied."""


class AgentSeen(_Payload, frozen=True, tag="agent_seen"):
    """A replica found lost is present again (its presence is fresh): live once more."""

    agent_id: AgentId
    seen_at: Timestamp
    """When the fresh presence was put (its own clock)."""


class AgentKilled(_Payload, frozen=True, tag="agent_killed"):
    """Operator kill switch: ``agent_id`` (or ``*`` for all) may take or emit no more work."""

    agent_id: Annotated[str, Meta(pattern=r"^(\*|[a-z0-9][a-z0-9_-]*)\Z", max_length=64)]
    reason: _Reason = ""


class AgentRevived(_Payload, frozen=True, tag="agent_revived"):
    agent_id: Annotated[str, Meta(pattern=r"^(\*|[a-z0-9][a-z0-9_-]*)\Z", max_length=64)]


class CredentialIssued(_Payload, frozen=True, tag="credential_issued"):
    """The operator vouches for an agent key: ``credential`` is signed by the operator."""

    credential: Annotated[bytes, Meta(max_length=8192)]
    signature: Annotated[bytes, Meta(min_length=64, max_length=64)]


class CredentialRevoked(_Payload, frozen=True, tag="credential_revoked"):
    """The operator withdraws an agent key; events it signs from now on are rejected."""

    public_key: KeyId
    reason: _Reason = ""


# --- system ---------------------------------------------------------------------------------------


class BudgetExceeded(_Payload, frozen=True, tag="budget_exceeded"):
    scope: Literal["agent", "workflow"]
    scope_id: Name
    limit: Literal["soft", "hard"]
    used_tokens: _Count
    budget_tokens: _Count


class CircuitOpened(_Payload, frozen=True, tag="circuit_opened"):
    circuit: Annotated[str, Meta(max_length=128)]
    reason: _Reason = ""


class CircuitClosed(_Payload, frozen=True, tag="circuit_closed"):
    circuit: Annotated[str, Meta(max_length=128)]
    reason: _Reason = ""


class CircuitHalfOpened(_Payload, frozen=True, tag="circuit_half_opened"):
    """An open circuit's cool-down is over: a probe goes through; it closes or opens again."""

    circuit: Annotated[str, Meta(max_length=128)]


class DeadlockDetected(_Payload, frozen=True, tag="deadlock_detected"):
    """A cycle in the wait-for graph (``cycle``: its nodes, the first repeated at the end).

    With a ``victim`` (the reference of one wait on the cycle) the event is addressed ``to`` the
    agent holding that wait, which gives it up so the others proceed; without, it is reported
    and left to a human (an escalation).
    """

    cycle: Annotated[list[Name], Meta(max_length=10_000)]
    victim: Name | None = None
    to: AgentId | None = None
    task_id: Name | None = None
    """The task of the victim's wait, when it has one."""


class SnapshotTaken(_Payload, frozen=True, tag="snapshot_taken"):
    seq: _Count
    state_hash: Hash
    name: Annotated[str, Meta(max_length=256)] = ""


Payload = (
    TaskAssignment
    | Result
    | Error
    | ClarificationRequest
    | ClarificationResponse
    | WorkflowSubmitted
    | WorkflowPlanned
    | WorkflowRevised
    | WorkflowCompleted
    | TaskOffered
    | TaskClaimed
    | TaskStarted
    | TaskHeartbeat
    | TaskCheckpointed
    | TaskCompleted
    | TaskFailed
    | TaskRetryScheduled
    | TaskEscalated
    | EscalationResolved
    | TaskCancelled
    | ModelCallRequested
    | ModelCallCompleted
    | ToolCallRequested
    | ToolCallCompleted
    | AgentRegistered
    | AgentHeartbeat
    | AgentStopped
    | AgentLost
    | AgentSeen
    | AgentKilled
    | AgentRevived
    | CredentialIssued
    | CredentialRevoked
    | BudgetExceeded
    | CircuitOpened
    | CircuitClosed
    | CircuitHalfOpened
    | DeadlockDetected
    | SnapshotTaken
)
"""The closed union of every payload."""


def _leaves(base: type[_Payload]) -> Iterator[type[_Payload]]:
    """The payload types below ``base`` in declaration order: the classes nothing derives from
    (a shared base such as :class:`_Call` is no event type)."""
    for cls in base.__subclasses__():
        yield from _leaves(cls) if cls.__subclasses__() else (cls,)


PAYLOAD_TYPES: dict[str, type[_Payload]] = {
    str(cls.__struct_config__.tag): cls for cls in _leaves(_Payload)
}
"""Every payload type by its tag, in declaration order."""

JOURNAL_TYPES: tuple[str, ...] = tuple(
    str(cls.__struct_config__.tag) for cls in (*_leaves(_ModelCall), *_leaves(_ToolCall))
)
"""The call journal's event types: a task's model and tool calls, requested and completed."""


def payload_type(payload: msgspec.Struct) -> str:
    """The tag (``type``) of a payload."""
    return str(type(payload).__struct_config__.tag)
