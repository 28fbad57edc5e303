"""A namespace's log as the records `Client.events` yields, built event by event, for the
tests of traces (imported as ``spanlog``): a workflow with model and tool calls, a retry, and
content that must never reach a span."""

from __future__ import annotations

import msgspec

from swarmlog.control.eventstream import Event
from swarmlog.schemas import payloads as p
from swarmlog.schemas.ids import new_event_id

NS = "default"
MS = 1_000_000
T0 = 1_800_000_000_000 * MS
SECRET = "the-secret-prompt-words"
"""Content put in every input, message, argument, result and output: it must not leave."""


class Log:
    """A namespace's log as :class:`Event` records, one appended per call."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def add(
        self,
        payload: p.Payload,
        sender: str,
        *,
        wf: str | None = "wf-1",
        at_ms: int | None = None,
        verified: bool | None = True,
    ) -> Event:
        seq = len(self.events) + 1
        at = T0 + (at_ms if at_ms is not None else seq * 10) * MS
        event = Event(
            seq=seq,
            subject=f"swarmlog.{NS}.x",
            type=p.payload_type(payload),
            id=new_event_id(at, seq.to_bytes(10, "big")),
            sender=sender,
            signer="0" * 64,
            workflow_id=wf,
            occurred_at=at,
            intact=True,
            problem=None if verified is not False else "not_permitted",
            verified=verified,
            payload=msgspec.to_builtins(payload),
        )
        self.events.append(event)
        return event


def model_call(log: Log, task: str, index: int, sender: str, *, wf: str | None = "wf-1") -> None:
    call = {"task_id": task, "call_index": index, "call_id": f"{task}.m{index}", "model": "gpt-x"}
    log.add(
        p.ModelCallRequested(
            **call, digest="1" * 64, messages=[{"role": "user", "content": SECRET}]
        ),
        sender,
        wf=wf,
    )
    log.add(
        p.ModelCallCompleted(
            **call,
            status="ok",
            reply={"role": "assistant", "content": SECRET},
            usage=p.TokenUsage(model="gpt-x-2025", prompt_tokens=20 + index, completion_tokens=5),
            duration_ms=7,
        ),
        sender,
        wf=wf,
    )


def tool_call(log: Log, task: str, index: int, sender: str, *, answer: bool = True) -> None:
    call = {"task_id": task, "call_index": index, "call_id": f"{task}.t{index}"}
    log.add(
        p.ToolCallRequested(
            **call,
            tool="time.now",
            server="time",
            digest="2" * 64,
            arguments={"q": SECRET},
        ),
        sender,
    )
    if answer:
        log.add(
            p.ToolCallCompleted(**call, tool="time.now", server="time", status="ok", result=SECRET),
            sender,
        )


def workflow(log: Log) -> None:
    """wf-1: s1 runs (chat, tool, chat) and succeeds; s2 fails once, then succeeds."""
    log.add(p.WorkflowSubmitted(pattern="custom", input={"plan": SECRET}), "operator")
    log.add(p.WorkflowPlanned(plan={"steps": SECRET}), "conductor-1")
    log.add(p.TaskOffered(task_id="s1", capability="count", input=SECRET), "conductor-1")
    log.add(p.TaskAssignment(task_id="s1", role="counter", capability="count"), "router-1")
    log.add(p.TaskStarted(task_id="s1"), "counter-1")
    model_call(log, "s1", 1, "counter-1")
    tool_call(log, "s1", 1, "counter-1")
    model_call(log, "s1", 2, "counter-1")
    log.add(p.Result(task_id="s1", output=SECRET), "counter-1")
    log.add(p.TaskOffered(task_id="s2", capability="count"), "conductor-1")
    log.add(p.TaskAssignment(task_id="s2", role="counter", capability="count"), "router-1")
    log.add(p.TaskStarted(task_id="s2"), "counter-2")
    log.add(p.Error(task_id="s2", code="model_error", message="503 overloaded"), "counter-2")
    log.add(p.TaskRetryScheduled(task_id="s2", attempt=2, delay_ms=500), "counter-2")
    log.add(p.TaskStarted(task_id="s2", attempt=2), "counter-1")
    model_call(log, "s2", 1, "counter-1")
    log.add(p.Result(task_id="s2", output=SECRET), "counter-1")
    log.add(p.WorkflowCompleted(status="succeeded", result=SECRET), "conductor-1")
