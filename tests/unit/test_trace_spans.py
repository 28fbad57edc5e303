"""Spans derived from the log (swarmlog.observability.spans): the tree a workflow's events make,
ids derived from the events (the same twice, in any order, from any point a trace starts), the
GenAI attributes, and what never becomes a span (quarantined, unjudged, content)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator

import msgspec
import pytest
from spanlog import MS, NS, SECRET, Log, model_call, tool_call, workflow

from swarmlog.observability.spans import (
    SpanBuilder,
    SpanRecord,
    derive_spans,
    span_id_of,
    trace_id_of,
)
from swarmlog.schemas import payloads as p


@pytest.fixture
def log() -> Log:
    log = Log()
    workflow(log)
    return log


def by_name(spans: list[SpanRecord]) -> dict[str, list[SpanRecord]]:
    """The spans by name, each list in start order."""
    out: dict[str, list[SpanRecord]] = {}
    for span in sorted(spans, key=lambda s: s.start_seq):
        out.setdefault(span.name, []).append(span)
    return out


def tree(spans: list[SpanRecord]) -> list[tuple[int, str, str]]:
    """The spans as (depth, name, outcome), depth-first in start order."""
    children: dict[str | None, list[SpanRecord]] = {}
    for span in spans:
        children.setdefault(span.parent_span_id, []).append(span)

    def walk(parent: str | None, depth: int) -> Iterator[tuple[int, str, str]]:
        for span in sorted(children.get(parent, []), key=lambda s: s.start_seq):
            yield depth, span.name, str(span.attributes["swarmlog.outcome"])
            yield from walk(span.span_id, depth + 1)

    return list(walk(None, 0))


def test_a_workflow_is_a_tree_of_tasks_attempts_and_calls(log: Log) -> None:
    spans = derive_spans(log.events, NS)
    assert tree(spans) == [
        (0, "invoke_workflow custom", "succeeded"),
        (1, "task count", "succeeded"),
        (2, "invoke_agent counter", "succeeded"),
        (3, "chat gpt-x", "ok"),
        (3, "execute_tool time.now", "ok"),
        (3, "chat gpt-x", "ok"),
        (1, "task count", "succeeded"),
        (2, "invoke_agent counter", "errored"),
        (2, "invoke_agent counter", "succeeded"),
        (3, "chat gpt-x", "ok"),
    ]
    assert {s.trace_id for s in spans} == {trace_id_of(NS, "workflow", "wf-1")}
    assert {s.trace_key for s in spans} == {"workflow:wf-1"}
    names = by_name(spans)
    (root,) = names["invoke_workflow custom"]
    assert root.parent_span_id is None
    assert root.error is None
    assert (root.start_ns, root.end_ns) == (log.events[0].occurred_at, log.events[-1].occurred_at)
    assert root.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert root.attributes["swarmlog.workflow_id"] == "wf-1"
    assert [e.name for e in root.events] == ["workflow_planned"]

    first_chat = names["chat gpt-x"][0]
    requested, completed = log.events[5], log.events[6]
    assert first_chat.span_id == span_id_of("call", str(requested.id))
    assert (first_chat.start_ns, first_chat.end_ns) == (
        requested.occurred_at,
        completed.occurred_at,
    )
    assert (first_chat.start_seq, first_chat.end_seq) == (requested.seq, completed.seq)
    assert first_chat.kind == "client"
    assert {
        k: first_chat.attributes[k]
        for k in (
            "gen_ai.operation.name",
            "gen_ai.request.model",
            "gen_ai.response.model",
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.output_tokens",
            "gen_ai.conversation.id",
            "swarmlog.call_id",
            "swarmlog.seq",
            "swarmlog.event_id",
            "swarmlog.sender",
            "swarmlog.verified",
        )
    } == {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-x",
        "gen_ai.response.model": "gpt-x-2025",
        "gen_ai.usage.input_tokens": 21,
        "gen_ai.usage.output_tokens": 5,
        "gen_ai.conversation.id": "s1",
        "swarmlog.call_id": "s1.m1",
        "swarmlog.seq": requested.seq,
        "swarmlog.event_id": requested.id,
        "swarmlog.sender": "counter-1",
        "swarmlog.verified": True,
    }
    (tool,) = names["execute_tool time.now"]
    assert tool.kind == "internal"
    assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
    assert tool.attributes["gen_ai.tool.name"] == "time.now"
    assert tool.attributes["swarmlog.tool.server"] == "time"
    assert tool.parent_span_id == first_chat.parent_span_id

    tasks = names["task count"]
    assert [t.attributes["swarmlog.task_id"] for t in tasks] == ["s1", "s2"]
    assert tasks[0].span_id == span_id_of("task", str(log.events[2].id))  # its offer
    assert [e.name for e in tasks[0].events] == ["task_assignment"]
    failed, retried = names["invoke_agent counter"][1:]
    assert failed.error == "model_error: 503 overloaded"
    assert failed.attributes["error.type"] == "model_error"
    assert failed.attributes["gen_ai.agent.id"] == "counter-2"
    assert failed.events == ()
    assert retried.attributes["swarmlog.attempt"] == 2
    assert retried.error is None


def test_events_between_attempts_are_span_events_of_the_task(log: Log) -> None:
    (_, s2) = by_name(derive_spans(log.events, NS))["task count"]
    assert [e.name for e in s2.events] == ["task_assignment", "task_retry_scheduled"]
    retry = s2.events[1]
    assert retry.attributes["swarmlog.attempt"] == 2
    assert retry.attributes["swarmlog.delay_ms"] == 500
    assert retry.attributes["swarmlog.sender"] == "counter-2"


def test_ids_are_the_same_derived_twice_and_in_any_order(log: Log) -> None:
    first = derive_spans(log.events, NS)
    shuffled = list(log.events)
    random.Random(7).shuffle(shuffled)
    again = derive_spans(shuffled, NS)
    assert again == first
    assert len({s.span_id for s in first}) == len(first)
    # the ids are exactly the documented digests
    wf = hashlib.sha256(b"swarmlog/otel/trace/v1\0default\0workflow\0wf-1").digest()[:16]
    assert first[0].trace_id == wf.hex()
    opener = log.events[5]
    span = hashlib.sha256(f"swarmlog/otel/span/v1\0call\0{opener.id}".encode()).digest()[:8]
    assert first[0].span_id == span.hex()
    # another namespace's workflow of the same id is another trace
    assert trace_id_of("other", "workflow", "wf-1") != first[0].trace_id


def test_a_complete_span_never_changes_and_a_builder_resumes_where_traces_start() -> None:
    log = Log()
    log.add(p.WorkflowSubmitted(pattern="pipeline"), "operator", wf="wf-2")
    workflow(log)  # wf-1, interleaved with wf-2's and a standalone task's events
    log.add(p.TaskOffered(task_id="a1", capability="echo"), "operator", wf=None)
    log.add(p.TaskOffered(task_id="w2", capability="echo"), "conductor-1", wf="wf-2")
    log.add(p.TaskStarted(task_id="a1"), "echo-1", wf=None)
    log.add(p.TaskStarted(task_id="w2"), "echo-2", wf="wf-2")
    model_call(log, "a1", 1, "echo-1", wf=None)
    log.add(p.Result(task_id="w2"), "echo-2", wf="wf-2")
    log.add(p.Result(task_id="a1"), "echo-1", wf=None)
    log.add(p.WorkflowCompleted(status="failed"), "conductor-1", wf="wf-2")
    full = derive_spans(log.events, NS)
    assert {s.trace_key for s in full} == {"workflow:wf-1", "workflow:wf-2", "task:a1"}
    by_id = {s.span_id: s for s in full}
    for cut in range(len(log.events) + 1):
        head = SpanBuilder(NS)
        early = [s for e in log.events[:cut] for s in head.feed(e)]
        assert all(by_id[s.span_id] == s for s in early)  # complete once, for good
        resume = head.resume_seq()
        if resume is None:
            assert len(early) == sum(1 for s in full if s.end_seq <= cut)
            continue
        tail = SpanBuilder(NS)
        later = [s for e in log.events[resume - 1 :] for s in tail.feed(e) if s.end_seq > cut]
        assert early + later == full


def test_one_workflow_alone_gives_its_spans_as_the_whole_log_does() -> None:
    log = Log()
    log.add(p.WorkflowSubmitted(pattern="pipeline"), "operator", wf="wf-2")
    workflow(log)
    log.add(p.WorkflowCompleted(status="succeeded"), "conductor-1", wf="wf-2")
    full = derive_spans(log.events, NS)
    alone = derive_spans([e for e in log.events if e.workflow_id == "wf-1"], NS)
    assert alone == [s for s in full if s.trace_key == "workflow:wf-1"]


def test_quarantined_and_unjudged_events_make_no_spans(log: Log) -> None:
    forged = Log()
    forged.add(p.WorkflowSubmitted(pattern="custom"), "operator")
    forged.add(p.TaskOffered(task_id="s1", capability="count"), "conductor-1")
    forged.add(p.TaskStarted(task_id="s1"), "counter-1")
    # a forged end of the task and of the workflow, quarantined: nothing ends
    forged.add(p.Result(task_id="s1"), "mallory", verified=False)
    forged.add(p.WorkflowCompleted(status="succeeded"), "mallory", verified=False)
    # a call not judged yet is no call
    forged.add(
        p.ModelCallRequested(
            task_id="s1", call_index=1, call_id="s1.m1", model="gpt-x", digest="1" * 64
        ),
        "counter-1",
        verified=None,
    )
    builder = SpanBuilder(NS)
    assert [s for e in forged.events for s in builder.feed(e)] == []
    assert builder.open_spans == 3  # workflow, task, attempt: still waiting for their ends
    forged.add(p.WorkflowCompleted(status="cancelled"), "conductor-1")
    ended = builder.feed(forged.events[-1])
    assert [(s.name, s.attributes["swarmlog.outcome"], s.error) for s in ended] == [
        ("invoke_agent", "unfinished", None),
        ("task count", "unfinished", None),
        ("invoke_workflow custom", "cancelled", "cancelled"),
    ]
    assert all(s.attributes["swarmlog.sender"] != "mallory" for s in ended)
    assert all(e.attributes["swarmlog.sender"] != "mallory" for s in ended for e in s.events)
    assert builder.open_spans == 0


def test_no_content_leaves(log: Log) -> None:
    assert SECRET.encode() in msgspec.json.encode(log.events)
    assert SECRET.encode() not in msgspec.json.encode(derive_spans(log.events, NS))


def test_a_crashed_attempt_ends_unfinished_when_another_finishes_the_task() -> None:
    log = Log()
    log.add(p.WorkflowSubmitted(pattern="custom"), "operator")
    log.add(p.TaskAssignment(task_id="c", role="crasher"), "operator")
    log.add(p.TaskStarted(task_id="c"), "crasher-1")
    model_call(log, "c", 1, "crasher-1")
    tool_call(log, "c", 2, "crasher-1", answer=False)  # killed while its tool ran
    died = log.events[-1]
    log.add(p.TaskStarted(task_id="c"), "crasher-2", at_ms=10_000)
    tool_call(log, "c", 2, "crasher-2")  # the at-least-once window: the same call again
    log.add(p.Result(task_id="c"), "crasher-2")
    spans = derive_spans(log.events, NS)
    # the workflow goes on: its span is not complete, its task's are (the parent comes later)
    (task,) = [s for s in spans if s.name == "task crasher"]
    assert task.parent_span_id == span_id_of("workflow", str(log.events[0].id))
    assert tree([*spans, _root_of(log)])[1:] == [
        (1, "task crasher", "succeeded"),
        (2, "invoke_agent crasher", "unfinished"),
        (3, "chat gpt-x", "ok"),
        (3, "execute_tool time.now", "unfinished"),
        (2, "invoke_agent crasher", "succeeded"),
        (3, "execute_tool time.now", "ok"),
    ]
    names = by_name(spans)
    victim, survivor = names["invoke_agent crasher"]
    assert victim.attributes["gen_ai.agent.id"] == "crasher-1"
    assert victim.end_ns == died.occurred_at  # when it was last heard of
    assert victim.end_seq == log.events[-1].seq  # known to be over when the task ended
    lost, redone = names["execute_tool time.now"]
    assert (lost.attributes["swarmlog.outcome"], lost.end_ns) == ("unfinished", died.occurred_at)
    assert lost.parent_span_id == victim.span_id
    assert redone.parent_span_id == survivor.span_id
    assert "invoke_workflow custom" not in names


def _root_of(log: Log) -> SpanRecord:
    """A stand-in for the workflow span not complete yet, to draw the tree under it."""
    opener = log.events[0]
    return SpanRecord(
        trace_id="0" * 32,
        span_id=span_id_of("workflow", str(opener.id)),
        parent_span_id=None,
        name="invoke_workflow custom",
        kind="internal",
        start_ns=0,
        end_ns=0,
        error=None,
        attributes={"swarmlog.outcome": "running"},
        trace_key="workflow:wf-1",
        start_seq=opener.seq,
        end_seq=opener.seq,
    )


def test_a_standalone_task_is_a_trace_with_its_delegated_subtasks() -> None:
    log = Log()
    log.add(p.TaskOffered(task_id="job", capability="research"), "operator", wf=None)
    log.add(p.TaskStarted(task_id="job"), "lead-1", wf=None)
    log.add(
        p.TaskOffered(task_id="sub", capability="search", parent_task_id="job"), "lead-1", wf=None
    )
    log.add(p.TaskStarted(task_id="sub"), "search-1", wf=None)
    model_call(log, "sub", 1, "search-1", wf=None)
    log.add(p.Result(task_id="sub"), "search-1", wf=None)
    log.add(p.Result(task_id="job"), "lead-1", wf=None)
    log.add(p.TaskHeartbeat(task_id="job"), "lead-1", wf=None)  # late: left out
    # a subtask whose parent's trace is not known starts none
    log.add(p.TaskOffered(task_id="orphan", capability="x", parent_task_id="gone"), "a", wf=None)
    spans = derive_spans(log.events, NS)
    assert tree(spans) == [
        (0, "task research", "succeeded"),
        (1, "invoke_agent", "succeeded"),
        (2, "task search", "succeeded"),
        (3, "invoke_agent", "succeeded"),
        (4, "chat gpt-x", "ok"),
    ]
    assert {s.trace_id for s in spans} == {trace_id_of(NS, "task", "job")}
    assert {s.trace_key for s in spans} == {"task:job"}


def test_events_of_a_workflow_whose_start_was_not_seen_are_left_out() -> None:
    log = Log()
    log.add(p.TaskStarted(task_id="s1"), "counter-1")
    log.add(p.Result(task_id="s1"), "counter-1")
    log.add(p.WorkflowCompleted(status="succeeded"), "conductor-1")
    assert derive_spans(log.events, NS) == []


def test_an_answer_without_its_request_is_a_span_as_long_as_the_call_took(log: Log) -> None:
    refused = Log()
    refused.add(p.WorkflowSubmitted(pattern="custom"), "operator")
    refused.add(p.TaskStarted(task_id="r"), "agent-1")
    refused.add(
        p.ToolCallCompleted(
            task_id="r",
            call_index=1,
            call_id="r.t1",
            tool="rm",
            status="refused",
            error="not granted",
            duration_ms=3,
        ),
        "agent-1",
    )
    builder = SpanBuilder(NS)
    (call,) = [s for e in refused.events for s in builder.feed(e)]
    assert call.name == "execute_tool rm"
    assert call.error == "not granted"
    assert call.attributes["error.type"] == "refused"
    assert call.end_ns - call.start_ns == 3 * MS


def test_span_events_are_bounded() -> None:
    log = Log()
    log.add(p.WorkflowSubmitted(pattern="custom"), "operator")
    for i in range(200):
        log.add(p.WorkflowRevised(version=i + 2), "conductor-1")
    log.add(p.WorkflowCompleted(status="succeeded"), "conductor-1")
    (root,) = derive_spans(log.events, NS)
    assert len(root.events) == 128
    assert root.attributes["swarmlog.dropped_events"] == 72


def test_a_task_that_ended_at_once_has_its_attempt_from_its_result() -> None:
    from spanlog import T0

    log = Log()
    log.add(p.TaskOffered(task_id="q", capability="count"), "operator", wf=None, at_ms=10)
    log.add(p.TaskAssignment(task_id="q", role="counter"), "router-1", wf=None, at_ms=12)
    started = T0 + 13 * MS
    log.add(
        p.Result(task_id="q", output=1, attempt=1, started_at=started),
        "counter-1",
        wf=None,
        at_ms=15,
    )
    spans = derive_spans(log.events, NS)
    assert tree(spans) == [(0, "task count", "succeeded"), (1, "invoke_agent counter", "succeeded")]
    (attempt,) = by_name(spans)["invoke_agent counter"]
    assert (attempt.start_ns, attempt.end_ns) == (started, T0 + 15 * MS)
    assert attempt.attributes["swarmlog.attempt"] == 1
    assert attempt.attributes["gen_ai.agent.id"] == "counter-1"
    # A start it claims outside its task (a sender's clock, or a lie) is kept within it.
    late = Log()
    late.add(p.TaskOffered(task_id="q", capability="count"), "operator", wf=None, at_ms=10)
    late.add(
        p.Result(task_id="q", output=1, attempt=1, started_at=T0 + 99 * MS),
        "counter-1",
        wf=None,
        at_ms=15,
    )
    (attempt,) = by_name(derive_spans(late.events, NS))["invoke_agent"]
    assert attempt.start_ns == T0 + 15 * MS


def test_a_restarted_replicas_quick_attempt_ends_its_earlier_one_unfinished() -> None:
    from spanlog import T0

    log = Log()
    log.add(p.TaskOffered(task_id="q", capability="count"), "operator", wf=None, at_ms=10)
    log.add(p.TaskStarted(task_id="q", attempt=1), "counter-1", wf=None, at_ms=13)
    # The replica crashed and came back under its id; the redelivery ended at once.
    log.add(
        p.Result(task_id="q", output=1, attempt=2, started_at=T0 + 500 * MS),
        "counter-1",
        wf=None,
        at_ms=501,
    )
    spans = derive_spans(log.events, NS)
    assert tree(spans) == [
        (0, "task count", "succeeded"),
        (1, "invoke_agent", "unfinished"),
        (1, "invoke_agent", "succeeded"),
    ]
    attempts = by_name(spans)["invoke_agent"]
    assert [a.attributes["swarmlog.attempt"] for a in attempts] == [1, 2]
    assert attempts[1].start_ns == T0 + 500 * MS
