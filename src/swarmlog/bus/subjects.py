"""The subject grammar (pure).

Every event is stored under::

    swarmlog.<namespace>.<sender>.<kind>.<key>...

where ``<sender>`` is the emitting agent's id (so a sender's chain head is the last message on
``swarmlog.<ns>.<sender>.>`` and the broker can restrict each agent to its own prefix), and
``<kind>`` is one of:

========  ======================================  =============================================
kind      rest of the subject                     events
========  ======================================  =============================================
work      ``<role>.<priority>.<task_id>``         task_assignment (what role consumers filter)
task      ``<task_id>.<type>``                    result, error, task_* lifecycle, the call
                                                  journal (model_call_*, tool_call_*)
msg       ``<recipient>.<type>``                  clarification_request / _response, a deadlock's
                                                  victim told to give up its wait
wf        ``<workflow_id>.<type>``                workflow_* lifecycle
agent     ``<agent_id>.<type>``                   agent_registered, agent_stopped, agent_lost,
                                                  agent_seen (agent_heartbeat: old logs)
ctl       ``<type>``                              operator control: credentials, kill switch
sys       ``<type>``                              budgets, circuits, deadlocks, snapshots
========  ======================================  =============================================

An aggregate (a task, a workflow) is every subject ``swarmlog.<ns>.*.<kind>.<id>.>``: optimistic
concurrency uses that filter with ``Nats-Expected-Last-Subject-Sequence-Subject``.
Request/reply services live outside the stream, under ``_swarmlog.<ns>.rpc.<name>``.

The server's own subjects a swarmlog login may need (the JetStream API, ``$JS.API.<...>``; acks,
``$JS.ACK.<stream>.<consumer>.>``; a KV bucket's keys, ``$KV.<bucket>.<key>``, stored in stream
``KV_<bucket>``) are spelled here too, so the broker's permissions and the adapters agree on them.
"""

from __future__ import annotations

from swarmlog.errors import SchemaError
from swarmlog.schemas.envelope import Envelope
from swarmlog.schemas.payloads import (
    AgentHeartbeat,
    AgentLost,
    AgentRegistered,
    AgentSeen,
    AgentStopped,
    ClarificationRequest,
    ClarificationResponse,
    DeadlockDetected,
    TaskAssignment,
)
from swarmlog.schemas.signing import CONTROL_TYPES

__all__ = [
    "JS_API",
    "ack_filter",
    "aggregate_filter",
    "assignment_filter",
    "bell_of",
    "bell_prefix",
    "cache_keys",
    "inbox_filter",
    "js_api",
    "kind_filter",
    "kv_bucket",
    "kv_filter",
    "kv_key",
    "kv_stream",
    "live_filter",
    "live_subject",
    "object_bucket",
    "offer_filter",
    "offer_subject",
    "role_work_filter",
    "rpc_subject",
    "sender_filter",
    "stream_name",
    "stream_subjects",
    "subject_for",
    "subject_matches",
    "task_event_filter",
    "task_subject",
    "work_filter",
    "work_priority",
    "workflow_event_filter",
]

_TASK_TYPES = frozenset(
    {
        "result",
        "error",
        "task_offered",
        "task_claimed",
        "task_started",
        "task_heartbeat",
        "task_checkpointed",
        "task_completed",
        "task_failed",
        "task_retry_scheduled",
        "task_escalated",
        "task_cancelled",
        "escalation_resolved",
        "model_call_requested",
        "model_call_completed",
        "tool_call_requested",
        "tool_call_completed",
    }
)


def stream_name(namespace: str) -> str:
    """``SWARMLOG_<NAMESPACE>``: the namespace's one append-only stream."""
    return "SWARMLOG_" + namespace.upper()


def kv_bucket(namespace: str, purpose: str) -> str:
    """A namespace's key-value bucket: ``flags`` (kill switches), ``cache`` (results) or
    ``presence`` (who is live, one key per agent id)."""
    return f"{stream_name(namespace)}_{purpose.upper()}"


def cache_keys(role: str) -> str:
    """The result-cache keys of ``role``'s entries start with this (``result.<role>``): the
    role in clear, so the broker lets only that role's replicas write them."""
    return f"result.{role}"


def object_bucket(namespace: str) -> str:
    """A namespace's object store, for projection snapshots."""
    return f"{stream_name(namespace)}_SNAPSHOTS"


def stream_subjects(namespace: str) -> list[str]:
    return [f"swarmlog.{namespace}.>"]


def sender_filter(namespace: str, sender: str) -> str:
    """Every event ``sender`` emitted; its last message is the sender's chain head."""
    return f"swarmlog.{namespace}.{sender}.>"


def aggregate_filter(namespace: str, kind: str, aggregate_id: str) -> str:
    """Every event of one aggregate (``kind`` is ``task`` or ``wf``), from any sender."""
    return f"swarmlog.{namespace}.*.{kind}.{aggregate_id}.>"


def work_filter(namespace: str, role: str, priority: str) -> str:
    """The task assignments for ``role`` at ``priority``: one durable consumer each."""
    return f"swarmlog.{namespace}.*.work.{role}.{priority}.*"


def role_work_filter(namespace: str, role: str) -> str:
    """Every task assignment for ``role``, at any priority (what an idle replica listens for)."""
    return f"swarmlog.{namespace}.*.work.{role}.>"


def work_priority(subject: str) -> str:
    """The priority level of a ``work`` subject."""
    parts = subject.split(".")
    return parts[5] if len(parts) > 5 else ""


def offer_filter(namespace: str) -> str:
    """Every task offer (what the router consumes)."""
    return f"swarmlog.{namespace}.*.task.*.task_offered"


def inbox_filter(namespace: str, agent_id: str) -> str:
    """Messages addressed to one agent (clarifications, a deadlock it must break)."""
    return f"swarmlog.{namespace}.*.msg.{agent_id}.>"


def offer_subject(namespace: str, task_id: str) -> str:
    """The offer of one task, from any sender."""
    return task_event_filter(namespace, task_id, "task_offered")


def task_event_filter(namespace: str, task_id: str, type_: str) -> str:
    """Events of one type (``result``, ``task_checkpointed``, ...) of one task (``*``: any task),
    from any sender."""
    return f"swarmlog.{namespace}.*.task.{task_id}.{type_}"


def task_subject(namespace: str, sender: str, task_id: str, type_: str) -> str:
    """The subject ``sender`` stores a task event of ``type_`` under."""
    return f"swarmlog.{namespace}.{sender}.task.{task_id}.{type_}"


def workflow_event_filter(namespace: str, workflow_id: str, type_: str) -> str:
    """Events of one type of one workflow, from any sender."""
    return f"swarmlog.{namespace}.*.wf.{workflow_id}.{type_}"


def kind_filter(namespace: str, kind: str) -> str:
    """Every event of one kind (``task``, ``wf``, ``msg``, ...), from any sender."""
    return f"swarmlog.{namespace}.*.{kind}.>"


def assignment_filter(namespace: str, task_id: str) -> str:
    """Every assignment of one task, to any role at any priority (one routing per offer)."""
    return f"swarmlog.{namespace}.*.work.*.*.{task_id}"


def live_subject(namespace: str, agent_id: str, task_id: str) -> str:
    """Where ``agent_id`` announces the partial text of ``task_id``'s model calls as it comes
    (outside the stream, never stored; only that agent's login may publish there)."""
    return f"_swarmlog.{namespace}.live.{agent_id}.{task_id}"


def live_filter(namespace: str, task_id: str = "*", agent_id: str = "*") -> str:
    """The partial text of ``task_id`` from any agent (or what ``agent_id`` may announce)."""
    return f"_swarmlog.{namespace}.live.{agent_id}.{task_id}"


def bell_prefix(namespace: str) -> str:
    """Where the stream republishes the headers of every event once stored (the doorbells'
    subjects): ``_swarmlog.<ns>.bell.<the event's subject after swarmlog.<ns>.>``.

    Doorbells cannot listen on the events' own subjects: an agent publishes into the streams'
    account through an import of its own, and nats-server never hands a message that came in
    through a service import on to another account's stream import (its guard against import
    loops), so another agent's subscription would hear only the operator's events. The stream's
    republish is the server's own publish inside that account, heard by every import; and it
    rings only once the event is stored."""
    return f"_swarmlog.{namespace}.bell"


def bell_of(namespace: str, subject: str) -> str:
    """The doorbell subject (or filter) of an event subject (or filter) of ``namespace``."""
    events = f"swarmlog.{namespace}."
    if not subject.startswith(events):
        raise ValueError(f"{subject} is not an event subject of namespace {namespace}")
    return f"{bell_prefix(namespace)}.{subject.removeprefix(events)}"


def rpc_subject(namespace: str, name: str) -> str:
    """A request/reply service subject (outside the stream, never stored)."""
    return f"_swarmlog.{namespace}.rpc.{name}"


JS_API = "$JS.API"
"""The JetStream API's subjects start with this."""


def js_api(*tokens: str) -> str:
    """A JetStream API subject: ``js_api("CONSUMER", "MSG", "NEXT", stream, consumer)``."""
    return ".".join((JS_API, *tokens))


def ack_filter(stream: str, consumer: str) -> str:
    """The subjects acks of ``consumer``'s deliveries go to."""
    return f"$JS.ACK.{stream}.{consumer}.>"


def kv_stream(bucket: str) -> str:
    """The stream that holds a KV bucket."""
    return f"KV_{bucket}"


def kv_key(bucket: str, key: str) -> str:
    """The subject of one key of a KV bucket (``key=""``: the prefix of them all)."""
    return f"$KV.{bucket}.{key}"


def kv_filter(bucket: str, keys: str = "") -> str:
    """Every key of a KV bucket, or every key under ``keys``."""
    return kv_key(bucket, f"{keys}.>" if keys else ">")


def subject_for(namespace: str, envelope: Envelope) -> str:
    """The one subject an event must be stored under; raises ``SchemaError`` if it has none."""
    payload = envelope.payload
    type_ = envelope.type
    prefix = f"swarmlog.{namespace}.{envelope.sender}"
    if isinstance(payload, TaskAssignment):
        return f"{prefix}.work.{payload.role}.{payload.priority}.{payload.task_id}"
    if type_ in _TASK_TYPES:
        return f"{prefix}.task.{payload.task_id}.{type_}"  # type: ignore[union-attr]
    if isinstance(payload, ClarificationRequest | ClarificationResponse):
        return f"{prefix}.msg.{payload.to}.{type_}"
    if isinstance(payload, DeadlockDetected) and payload.to is not None:
        return f"{prefix}.msg.{payload.to}.{type_}"  # the victim's inbox: it gives up its wait
    if type_.startswith("workflow_"):
        if envelope.workflow_id is None:
            raise SchemaError(f"a {type_} event needs a workflow_id (--workflow-id)")
        return f"{prefix}.wf.{envelope.workflow_id}.{type_}"
    if isinstance(payload, AgentRegistered | AgentHeartbeat | AgentStopped | AgentLost | AgentSeen):
        return f"{prefix}.agent.{payload.agent_id}.{type_}"
    if type_ in CONTROL_TYPES:
        return f"{prefix}.ctl.{type_}"
    return f"{prefix}.sys.{type_}"


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcard matching: ``*`` is one token, a final ``>`` is one or more tokens."""
    p_tokens = pattern.split(".")
    s_tokens = subject.split(".")
    for i, p in enumerate(p_tokens):
        if p == ">":
            return len(s_tokens) > i
        if i >= len(s_tokens) or (p != "*" and p != s_tokens[i]):
            return False
    return len(p_tokens) == len(s_tokens)
