# Over 400 lines: one fold of the log into spans, whose cases are read together.
"""Spans from the log (pure): verified events in stream order become a tree of span records,
each id derived from the event that opens the span, so deriving them again, from the whole log
or only from where a trace starts, gives the same spans.

One trace per workflow (its id derived from the namespace and the workflow id), or per task
submitted outside any workflow (from its task id)::

    invoke_workflow custom                 workflow_submitted ... workflow_completed
    └── task count                         first event of the task ... result / failed / cancelled
        ├── invoke_agent counter           task_started ... result / error (one per attempt)
        │   ├── chat gpt-4o                model_call_requested ... model_call_completed
        │   └── execute_tool word_count    tool_call_requested ... tool_call_completed
        └── invoke_agent counter           the next attempt
            └── task summarize             a subtask its attempt delegated

(A task that ended at once has no ``task_started``: its attempt runs from the ``started_at`` its
``result`` gives, within its task, to the result.)

Only events the projector verified become spans (a quarantined event never does; one not
folded yet is no event here, see :class:`SpanBuilder`). The other verified events of a trace
(routing, retries scheduled, escalations, checkpoints, clarifications, plan revisions) are span
events on the span they happen in. A span is complete when the event that ends it arrives; one
whose end never comes (its replica died, its task or workflow ended first) ends with its parent,
at the last moment it was heard of, with ``swarmlog.outcome`` ``unfinished``. A complete span
never changes with later events: what a live follower exports as it goes equals what an export
after the fact gives.

Attributes follow the OpenTelemetry GenAI semantic conventions (``gen_ai.operation.name`` is
``invoke_workflow``, ``invoke_agent``, ``chat`` or ``execute_tool``; ``gen_ai.request.model``,
``gen_ai.usage.input_tokens`` / ``output_tokens``, ``gen_ai.tool.name``, ``gen_ai.agent.name``
/ ``id``, ``gen_ai.conversation.id``), with swarmlog's own under ``swarmlog.``. No content
leaves: no prompt, answer, tool argument or result, task input or output.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import msgspec

from swarmlog.schemas import payloads as p

__all__ = [
    "MAX_SPAN_EVENTS",
    "AttributeValue",
    "LoggedEvent",
    "SpanBuilder",
    "SpanEvent",
    "SpanRecord",
    "derive_spans",
    "span_id_of",
    "trace_id_of",
]

TRACE_DOMAIN = "swarmlog/otel/trace/v1"
SPAN_DOMAIN = "swarmlog/otel/span/v1"
MAX_SPAN_EVENTS = 128
"""Span events kept on one span (the SDK's default limit); the count of those left out is the
attribute ``swarmlog.dropped_events``."""
_TEXT = 1024
"""The longest text attribute (a reason, an error message) kept, in characters."""

AttributeValue = str | bool | int | float
SpanKind = Literal["internal", "client"]
Role = Literal["workflow", "task", "attempt", "call"]


class LoggedEvent(Protocol):
    """What a span is derived from: an event of the log with the projector's verdict, as
    :class:`swarmlog.control.eventstream.Event` (``Client.events``) presents it."""

    @property
    def seq(self) -> int: ...
    @property
    def id(self) -> str | None: ...
    @property
    def type(self) -> str | None: ...
    @property
    def sender(self) -> str | None: ...
    @property
    def workflow_id(self) -> str | None: ...
    @property
    def occurred_at(self) -> int | None: ...
    @property
    def verified(self) -> bool | None: ...
    @property
    def payload(self) -> object: ...


class SpanEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event of the log that happened within a span (a retry scheduled, an escalation)."""

    name: str
    """The event's type."""
    time_ns: int
    attributes: dict[str, AttributeValue]


class SpanRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One complete span, ready for an exporter: ids in lower-case hex, times in ns since the
    epoch (the events' ``occurred_at``)."""

    trace_id: str
    """32 hex digits: :func:`trace_id_of` the workflow (or standalone task)."""
    span_id: str
    """16 hex digits: :func:`span_id_of` the event that opened it."""
    parent_span_id: str | None
    name: str
    kind: SpanKind
    start_ns: int
    end_ns: int
    error: str | None
    """``None``: status unset (it did not fail); else status error with this description."""
    attributes: dict[str, AttributeValue]
    events: tuple[SpanEvent, ...] = ()
    trace_key: str
    """``workflow:<id>`` or ``task:<id>``: what the trace is of."""
    start_seq: int
    """The stream sequence of the event that opened it."""
    end_seq: int
    """The stream sequence of the event after which it is complete."""


def _digest(domain: str, *parts: str) -> bytes:
    # The parts are names, ULIDs and a namespace, none of which may hold a NUL.
    return hashlib.sha256("\0".join((domain, *parts)).encode()).digest()


def _nonzero(digest: bytes, size: int) -> str:
    """The first ``size`` bytes of ``digest`` that are not all zero (an all-zero id is invalid
    in OpenTelemetry; the next window serves in that 2**-64 case), in hex."""
    for start in range(0, len(digest) - size + 1, size):
        window = digest[start : start + size]
        if any(window):
            return window.hex()
    raise ValueError("a digest of zeros")  # SHA-256 never gives one


def trace_id_of(namespace: str, kind: Literal["workflow", "task"], key: str) -> str:
    """A trace's id: the first 16 bytes of SHA-256 over
    ``"swarmlog/otel/trace/v1\\0<namespace>\\0<kind>\\0<id>"``, in hex."""
    return _nonzero(_digest(TRACE_DOMAIN, namespace, kind, key), 16)


def span_id_of(role: Role, event_id: str) -> str:
    """A span's id: the first 8 bytes of SHA-256 over ``"swarmlog/otel/span/v1\\0<role>\\0<event
    id>"``, in hex (``role``: one event may open a task and a call at once)."""
    return _nonzero(_digest(SPAN_DOMAIN, role, event_id), 8)


def _text(value: str) -> str:
    return value if len(value) <= _TEXT else value[: _TEXT - 1] + "…"


# Payload fields a span event carries: names, counts and reasons, never content (inputs,
# outputs, messages, plans, answers and questions stay in the log).
_EVENT_FIELDS = frozenset(
    {
        "action",
        "agent_id",
        "attempt",
        "capability",
        "code",
        "delay_ms",
        "dependency",
        "escalation_id",
        "final",
        "message",
        "mode",
        "priority",
        "reason",
        "request_id",
        "retryable",
        "role",
        "to",
        "version",
    }
)


@dataclass(eq=False)
class _Span:
    """A span not complete yet."""

    trace: _Trace
    role: Role
    span_id: str
    parent: _Span | None
    name: str
    kind: SpanKind
    start_ns: int
    start_seq: int
    attributes: dict[str, AttributeValue]
    last_ns: int
    """When it (or anything in it) was last heard of."""
    task_id: str = ""
    sender: str = ""
    call_id: str = ""
    events: list[SpanEvent] = field(default_factory=list)
    dropped_events: int = 0
    owned: list[_Span] = field(default_factory=list)
    """Open spans that end with it: a task's attempts, an attempt's calls (not a subtask: it
    may outlive the attempt that delegated it)."""
    ended: bool = False


@dataclass(eq=False)
class _Trace:
    key: str
    trace_id: str
    start_seq: int
    root: _Span | None = None
    tasks: dict[str, _Span] = field(default_factory=dict)
    """Open task spans by task id."""
    attempts: dict[tuple[str, str], _Span] = field(default_factory=dict)
    """Open attempts by (task id, agent)."""
    calls: dict[tuple[str, str], _Span] = field(default_factory=dict)
    """Open calls by (agent, call id)."""
    done: set[str] = field(default_factory=set)
    """Task ids whose span is complete: their later events are left out."""
    standalone: set[str] = field(default_factory=set)
    """A standalone trace's task ids (its root task and the subtasks delegated in it)."""


class SpanBuilder:
    """Feed it a namespace's events in stream order; each :meth:`feed` returns the spans that
    event completes.

    A trace starts at its ``workflow_submitted`` (or its standalone task's first offer or
    assignment): events of a trace whose start it did not see are left out, so a builder fed
    from :meth:`resume_seq` on derives the traces open there exactly as one fed from the start.
    An event whose verdict is not known yet (``verified`` ``None``) is left out as a
    quarantined one is, for good (a sequence is fed once): hold it, and what follows it, back
    until the projector has judged it, as :mod:`swarmlog.observability.traces` does.
    """

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._workflows: dict[str, _Trace] = {}
        self._tasks: dict[str, _Trace] = {}
        """Open standalone traces by each of their task ids."""
        self._last_seq = 0

    @property
    def open_spans(self) -> int:
        """Spans started and not complete yet."""
        traces = {id(t): t for t in (*self._workflows.values(), *self._tasks.values())}
        count = 0
        for trace in traces.values():
            count += len(trace.tasks) + len(trace.attempts) + len(trace.calls)
            count += trace.root is not None and trace.root.role == "workflow"
        return count

    def resume_seq(self) -> int | None:
        """The first stream sequence a builder must be fed from to derive every trace still
        open here (``None``: none is)."""
        starts = [t.start_seq for t in (*self._workflows.values(), *self._tasks.values())]
        return min(starts) if starts else None

    def feed(self, event: LoggedEvent) -> list[SpanRecord]:
        """The spans ``event`` completes (an event fed twice, or out of order, is ignored)."""
        if event.seq <= self._last_seq:
            return []
        self._last_seq = event.seq
        if event.verified is not True or event.id is None or event.sender is None:
            return []
        if event.occurred_at is None:
            return []
        raw = event.payload
        if event.workflow_id is None and not (isinstance(raw, dict) and "task_id" in raw):
            return []  # no trace is about it (credentials, agents, circuits)
        try:
            payload = msgspec.convert(raw, p.Payload)
        except (msgspec.ValidationError, ValueError, TypeError):
            return []  # verified events decode; anything else is nobody's span
        trace = self._trace_of(event, payload)
        if trace is None:
            return []
        return _Fold(self, trace, event, payload).run()

    def _trace_of(self, event: LoggedEvent, payload: p.Payload) -> _Trace | None:
        assert event.id is not None
        if event.workflow_id is not None:
            trace = self._workflows.get(event.workflow_id)
            if trace is None and isinstance(payload, p.WorkflowSubmitted):
                key = event.workflow_id
                trace_id = trace_id_of(self.namespace, "workflow", key)
                trace = _Trace(f"workflow:{key}", trace_id, event.seq)
                self._workflows[key] = trace
            return trace
        task_id = getattr(payload, "task_id", None)
        if not isinstance(task_id, str):
            return None
        trace = self._tasks.get(task_id)
        if trace is not None or not isinstance(payload, p.TaskOffered | p.TaskAssignment):
            return trace
        if payload.parent_task_id is not None:
            # A subtask joins its parent's trace, and never starts one: a builder fed from a
            # later point would not know the parent's.
            trace = self._tasks.get(payload.parent_task_id)
        else:
            trace = _Trace(
                f"task:{task_id}", trace_id_of(self.namespace, "task", task_id), event.seq
            )
        if trace is not None:
            trace.standalone.add(task_id)
            self._tasks[task_id] = trace
        return trace

    def _forget(self, trace: _Trace) -> None:
        """A trace whose root ended: its later events are left out."""
        if trace.key.startswith("workflow:"):
            self._workflows.pop(trace.key.removeprefix("workflow:"), None)
        for task_id in trace.standalone:
            self._tasks.pop(task_id, None)


class _Fold:
    """One event's effect on its trace."""

    def __init__(
        self, builder: SpanBuilder, trace: _Trace, event: LoggedEvent, payload: p.Payload
    ) -> None:
        assert event.id is not None
        assert event.sender is not None
        assert event.occurred_at is not None
        self.builder = builder
        self.trace = trace
        self.event = event
        self.payload = payload
        self.event_id: str = event.id
        self.sender: str = event.sender
        self.at: int = event.occurred_at
        self.seq = event.seq
        self.done: list[SpanRecord] = []

    def run(self) -> list[SpanRecord]:
        payload, trace = self.payload, self.trace
        match payload:
            case p.WorkflowSubmitted() if trace.root is None:
                trace.root = self._open(
                    "workflow",
                    None,
                    f"invoke_workflow {payload.pattern}",
                    {
                        "gen_ai.operation.name": "invoke_workflow",
                        "gen_ai.workflow.name": payload.pattern,
                        "swarmlog.workflow_id": trace.key.removeprefix("workflow:"),
                        "swarmlog.pattern": payload.pattern,
                    },
                )
            case p.WorkflowCompleted(status=status) if trace.root is not None:
                self._end(trace.root, self.at, status, None if status == "succeeded" else status)
            case _:
                task_id = getattr(payload, "task_id", None)
                if isinstance(task_id, str):
                    self._task_event(task_id)
                elif trace.root is not None:
                    self._annotate(trace.root)
        return self.done

    # -- tasks ------------------------------------------------------------------------------

    def _task_event(self, task_id: str) -> None:
        trace, payload = self.trace, self.payload
        task = trace.tasks.get(task_id)
        if task is None:
            if task_id in trace.done:
                return  # a late event of a task whose span is complete
            task = self._open_task(task_id)
            opened = True
        else:
            opened = False
        attempt = trace.attempts.get((task_id, self.sender))
        match payload:
            case p.TaskOffered() | p.TaskAssignment():
                if isinstance(payload, p.TaskAssignment):
                    task.attributes["swarmlog.role"] = payload.role
                if not opened:
                    self._annotate(task)
            case p.TaskStarted(attempt=number):
                self._open_attempt(task, task_id, number, attempt)
            case p.ModelCallRequested() | p.ToolCallRequested():
                self._open_call(task, attempt, payload)
            case p.ModelCallCompleted() | p.ToolCallCompleted():
                self._end_call(task, attempt, payload)
            case p.Result(cached=cached, began=began):
                if began is not None:
                    # A task that ended at once: its result says when its attempt began (an
                    # attempt of the same sender still open went nowhere: ended unfinished).
                    number, started = began
                    attempt = self._open_attempt(task, task_id, number, attempt)
                    # Not before its task, not after its end (senders' clocks disagree a little).
                    attempt.start_ns = max(task.start_ns, min(started, self.at))
                if attempt is not None:
                    self._end(attempt, self.at, "succeeded")
                task.attributes["swarmlog.cached"] = cached
                task.attributes["swarmlog.completed_by"] = self.sender
                self._end(task, self.at, "succeeded")
            case p.Error(code=code, message=message, retryable=retryable):
                if attempt is None:
                    self._annotate(task)
                else:
                    attempt.attributes["error.type"] = code
                    attempt.attributes["swarmlog.retryable"] = retryable
                    why = f"{code}: {message}" if message else code
                    self._end(attempt, self.at, "errored", why)
            case p.TaskFailed(final=True, reason=reason):
                self._end(task, self.at, "failed", reason or "failed")
            case p.TaskFailed(reason=reason) if attempt is not None:
                self._end(attempt, self.at, "errored", reason or "failed")
            case p.TaskCompleted():
                self._end(task, self.at, "succeeded")
            case p.TaskCancelled(reason=reason):
                self._end(
                    task, self.at, "cancelled", f"cancelled: {reason}" if reason else "cancelled"
                )
            case p.TaskHeartbeat():
                self._heard(attempt or task)  # a sign of life, too frequent for a span event
            case _:
                if not opened:
                    self._annotate(attempt or task)

    def _open_attempt(self, task: _Span, task_id: str, number: int, earlier: _Span | None) -> _Span:
        """The span of the sender's attempt ``number`` at ``task_id``, opened now."""
        if earlier is not None:  # the same agent again: its earlier try went nowhere
            self._end(earlier, earlier.last_ns, "unfinished")
        attributes: dict[str, AttributeValue] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.id": self.sender,
            "swarmlog.task_id": task_id,
            "swarmlog.attempt": number,
        }
        name = "invoke_agent"  # the convention's name when the agent's is not known
        role = task.attributes.get("swarmlog.role")
        if isinstance(role, str):
            attributes["gen_ai.agent.name"] = role
            name = f"invoke_agent {role}"
        attempt = self._open("attempt", task, name, attributes, owner=task)
        attempt.task_id = task_id
        self.trace.attempts[(task_id, self.sender)] = attempt
        return attempt

    def _open_task(self, task_id: str) -> _Span:
        """The span of a task, opened by its first event in the trace: under the attempt that
        delegated it (or its parent task), else under the workflow."""
        trace, payload = self.trace, self.payload
        parent = trace.root
        parent_task_id = getattr(payload, "parent_task_id", None)
        attributes: dict[str, AttributeValue] = {"swarmlog.task_id": task_id}
        if isinstance(parent_task_id, str):
            attributes["swarmlog.parent_task_id"] = parent_task_id
            delegating = trace.attempts.get((parent_task_id, self.sender))
            parent = delegating or trace.tasks.get(parent_task_id) or parent
        what = task_id
        if isinstance(payload, p.TaskOffered | p.TaskAssignment):
            attributes["swarmlog.priority"] = payload.priority
            if payload.capability:
                attributes["swarmlog.capability"] = payload.capability
                what = payload.capability
            if isinstance(payload, p.TaskOffered):
                attributes["swarmlog.mode"] = payload.mode
            else:
                what = payload.capability or payload.role
        task = self._open("task", parent, f"task {what}", attributes)
        task.task_id = task_id
        if trace.root is None:
            trace.root = task  # a standalone task's trace
        trace.tasks[task_id] = task
        return task

    # -- calls ------------------------------------------------------------------------------

    def _open_call(
        self, task: _Span, attempt: _Span | None, call: p.ModelCallRequested | p.ToolCallRequested
    ) -> _Span:
        key = (self.sender, call.call_id)
        earlier = self.trace.calls.get(key)
        if earlier is not None:  # asked again by the same agent: the earlier went unanswered
            self._end(earlier, earlier.last_ns, "unfinished")
        attributes: dict[str, AttributeValue] = {
            "gen_ai.conversation.id": call.task_id,
            "swarmlog.task_id": call.task_id,
            "swarmlog.call_id": call.call_id,
            "swarmlog.call_index": call.call_index,
        }
        kind: SpanKind
        if isinstance(call, p.ModelCallRequested):
            name, kind = f"chat {call.model}", "client"
            attributes["gen_ai.operation.name"] = "chat"
            attributes["gen_ai.request.model"] = call.model
        else:
            name, kind = f"execute_tool {call.tool}", "internal"
            attributes["gen_ai.operation.name"] = "execute_tool"
            attributes["gen_ai.tool.name"] = call.tool
            if call.server:
                attributes["swarmlog.tool.server"] = call.server
        owner = attempt or task
        span = self._open("call", owner, name, attributes, kind=kind, owner=owner)
        span.task_id, span.call_id = call.task_id, call.call_id
        self.trace.calls[key] = span
        return span

    def _end_call(
        self, task: _Span, attempt: _Span | None, answer: p.ModelCallCompleted | p.ToolCallCompleted
    ) -> None:
        call = self.trace.calls.get((self.sender, answer.call_id))
        if call is None:
            # An answer with no request in the trace (a refusal, a journal published by hand):
            # a span of its own, as long as the agent says the call took.
            call = self._open_call(task, attempt, _request_of(answer))
            call.start_ns = max(0, self.at - answer.duration_ms * 1_000_000)
        call.attributes["swarmlog.duration_ms"] = answer.duration_ms
        if isinstance(answer, p.ModelCallCompleted) and answer.usage is not None:
            usage = answer.usage
            if usage.model:
                call.attributes["gen_ai.response.model"] = usage.model
            call.attributes["gen_ai.usage.input_tokens"] = usage.prompt_tokens
            call.attributes["gen_ai.usage.output_tokens"] = usage.completion_tokens
        error: str | None = None
        if answer.status != "ok":
            call.attributes["error.type"] = answer.status
            error = answer.error or answer.status
        self._end(call, self.at, answer.status, error)

    # -- spans ------------------------------------------------------------------------------

    def _open(
        self,
        role: Role,
        parent: _Span | None,
        name: str,
        attributes: dict[str, AttributeValue],
        *,
        kind: SpanKind = "internal",
        owner: _Span | None = None,
    ) -> _Span:
        attributes.update(
            {
                "swarmlog.seq": self.seq,
                "swarmlog.event_id": self.event_id,
                "swarmlog.sender": self.sender,
                "swarmlog.verified": True,
            }
        )
        span = _Span(
            trace=self.trace,
            role=role,
            span_id=span_id_of(role, self.event_id),
            parent=parent,
            name=name,
            kind=kind,
            start_ns=self.at,
            start_seq=self.seq,
            attributes=attributes,
            last_ns=self.at,
            sender=self.sender,
        )
        if owner is not None:
            owner.owned.append(span)
        self._heard(span)
        return span

    def _heard(self, span: _Span) -> None:
        """``span`` and the open spans it is in were heard of now."""
        at: _Span | None = span
        while at is not None and not at.ended:
            at.last_ns = max(at.last_ns, self.at)
            at = at.parent

    def _annotate(self, span: _Span) -> None:
        """The event as a span event of ``span``."""
        self._heard(span)
        if len(span.events) >= MAX_SPAN_EVENTS:
            span.dropped_events += 1
            return
        attributes: dict[str, AttributeValue] = {
            "swarmlog.seq": self.seq,
            "swarmlog.event_id": self.event_id,
            "swarmlog.sender": self.sender,
        }
        for name in self.payload.__struct_fields__:
            value = getattr(self.payload, name)
            if name in _EVENT_FIELDS and isinstance(value, str | bool | int | float):
                attributes[f"swarmlog.{name}"] = _text(value) if isinstance(value, str) else value
        span.events.append(
            SpanEvent(name=p.payload_type(self.payload), time_ns=self.at, attributes=attributes)
        )

    def _end(self, span: _Span, end_ns: int, outcome: str, error: str | None = None) -> None:
        """Complete ``span`` (and first what it owns that is still open, as unfinished)."""
        if span.ended:
            return
        trace = self.trace
        if span is trace.root:
            # The trace is over: what is still open in it ends first, unfinished, and its later
            # events are left out.
            for other in [*trace.tasks.values(), *trace.attempts.values(), *trace.calls.values()]:
                if other is not span:
                    self._end(other, other.last_ns, "unfinished")
            self.builder._forget(trace)
        for child in list(span.owned):
            self._end(child, child.last_ns, "unfinished")
        span.ended = True
        if span.parent is not None and span in span.parent.owned:
            span.parent.owned.remove(span)
        match span.role:
            case "task":
                trace.tasks.pop(span.task_id, None)
                trace.done.add(span.task_id)
            case "attempt":
                trace.attempts.pop((span.task_id, span.sender), None)
            case "call":
                trace.calls.pop((span.sender, span.call_id), None)
        attributes = dict(span.attributes)
        attributes["swarmlog.outcome"] = outcome
        attributes["swarmlog.end_seq"] = self.seq
        if span.dropped_events:
            attributes["swarmlog.dropped_events"] = span.dropped_events
        self.done.append(
            SpanRecord(
                trace_id=trace.trace_id,
                span_id=span.span_id,
                parent_span_id=span.parent.span_id if span.parent is not None else None,
                name=span.name,
                kind=span.kind,
                start_ns=span.start_ns,
                end_ns=max(span.start_ns, end_ns),  # senders' clocks may disagree a little
                error=_text(error) if error is not None else None,
                attributes=attributes,
                events=tuple(span.events),
                trace_key=trace.key,
                start_seq=span.start_seq,
                end_seq=self.seq,
            )
        )


def _request_of(
    answer: p.ModelCallCompleted | p.ToolCallCompleted,
) -> p.ModelCallRequested | p.ToolCallRequested:
    """The request an answer stands for when the request is not in the trace."""
    if isinstance(answer, p.ModelCallCompleted):
        return p.ModelCallRequested(
            task_id=answer.task_id,
            call_index=answer.call_index,
            call_id=answer.call_id,
            model=answer.model,
            digest="0" * 64,
        )
    return p.ToolCallRequested(
        task_id=answer.task_id,
        call_index=answer.call_index,
        call_id=answer.call_id,
        tool=answer.tool,
        server=answer.server,
        digest="0" * 64,
    )


def derive_spans(events: Iterable[LoggedEvent], namespace: str) -> list[SpanRecord]:
    """Every complete span of ``events`` (of ``namespace``), in the order they complete; the
    events are taken in stream order whatever order they come in."""
    builder = SpanBuilder(namespace)
    done: list[SpanRecord] = []
    for event in sorted(events, key=lambda e: e.seq):
        done.extend(builder.feed(event))
    return done
