"""The trace follower and exporter (swarmlog.observability.traces) over a log in memory and a
receiver that records what it takes: what a follower sends as spans complete equals what is
derived from the whole log, a restarted follower sends nothing twice, an event not judged yet
is read again, a receiver that refuses is tried again; and the OTLP endpoint's checks."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from spanlog import NS, Log, model_call, workflow

from swarmlog.config import Settings
from swarmlog.control.eventstream import Event
from swarmlog.errors import ConfigError
from swarmlog.observability import traces
from swarmlog.observability.otlp import endpoint_of
from swarmlog.observability.spans import SpanRecord, derive_spans
from swarmlog.observability.traces import FollowState, export_traces, follow_traces, state_path
from swarmlog.schemas import payloads as p
from waiting import until


class FakeClient:
    """What the follower uses of a Client: settings, and events read from a log in memory
    (the projector's verdict withheld from a few seqs the first times they are read)."""

    def __init__(self, tmp: Path, log: Log, unjudged: dict[int, int] | None = None) -> None:
        self.settings = Settings(data_dir=tmp, namespace=NS)
        self.log = log
        self.unjudged = Counter(unjudged or {})
        self.reads: list[int] = []
        self.grown = asyncio.Event()

    def append(self, add: Callable[[Log], Any]) -> None:
        add(self.log)
        self.grown.set()

    async def events(
        self, *, after_seq: int = 0, follow: bool = False, **_: Any
    ) -> AsyncIterator[Event]:
        self.reads.append(after_seq + 1)
        seq = after_seq
        while True:
            for event in self.log.events[seq:]:
                seq = event.seq
                if self.unjudged[seq] > 0:
                    self.unjudged[seq] -= 1
                    event = msgspec.structs.replace(event, verified=None)
                yield event
            if not follow:
                return
            self.grown.clear()
            await self.grown.wait()

    async def workflow(self, workflow_id: str) -> object | None:
        known = {e.workflow_id for e in self.log.events}
        return object() if workflow_id in known else None


class FakeReceiver:
    """What the follower uses of OTLPTraces: it records the spans, or refuses a few times."""

    endpoint = "http://collector:4318/v1/traces"

    def __init__(self, refuse: int = 0) -> None:
        self.spans: list[SpanRecord] = []
        self.refuse = refuse

    def export(self, records: list[SpanRecord]) -> None:
        if self.refuse > 0:
            self.refuse -= 1
            raise ConfigError(f"could not export spans to {self.endpoint}: connection refused")
        self.spans.extend(records)


def open_second(log: Log) -> None:
    """wf-2 starts and its task runs (to be completed by :func:`close_second`)."""
    log.add(p.WorkflowSubmitted(pattern="pipeline"), "operator", wf="wf-2")
    log.add(p.TaskOffered(task_id="w2", capability="echo"), "conductor-1", wf="wf-2")
    log.add(p.TaskStarted(task_id="w2"), "echo-1", wf="wf-2")
    model_call(log, "w2", 1, "echo-1", wf="wf-2")


def close_second(log: Log) -> None:
    log.add(p.Result(task_id="w2"), "echo-1", wf="wf-2")
    log.add(p.WorkflowCompleted(status="succeeded"), "conductor-1", wf="wf-2")


async def run_follower(
    client: FakeClient,
    receiver: FakeReceiver,
    done: Callable[[], bool],
    notices: list[str] | None = None,
) -> int:
    """Follow until ``done()``, then stop it as SIGTERM would."""
    stop = asyncio.Event()
    state = FollowState(state_path(client.settings, receiver.endpoint))
    said = notices if notices is not None else []
    following = asyncio.create_task(
        follow_traces(
            client,  # type: ignore[arg-type]
            receiver,  # type: ignore[arg-type]
            state,
            stop=stop,
            notice=said.append,
            interval=0.01,
        )
    )
    await until(lambda: done() or following.done(), 10)
    stop.set()
    return await following


async def test_a_follower_sends_what_completes_and_a_restart_sends_nothing_twice(
    tmp_path: Path,
) -> None:
    log = Log()
    open_second(log)
    workflow(log)  # wf-1, complete
    client = FakeClient(tmp_path, log)
    first = FakeReceiver()
    complete = derive_spans(log.events, NS)  # wf-1's, and wf-2's model call
    assert {s.trace_key for s in complete} == {"workflow:wf-1", "workflow:wf-2"}
    done = await run_follower(client, first, lambda: len(first.spans) == len(complete))
    assert done == len(complete)
    assert first.spans == complete  # the same records, in the order they completed
    assert client.reads == [1]
    path = state_path(client.settings, first.endpoint)
    assert FollowState(path).load() == (log.events[-1].seq, 1)  # wf-2 is open: from its start
    assert path.stat().st_mode & 0o777 == 0o600

    # The rest of wf-2 completes now.
    client.append(close_second)
    second = FakeReceiver()
    full = derive_spans(log.events, NS)
    rest = [s for s in full if s not in first.spans]
    assert await run_follower(client, second, lambda: len(second.spans) == len(rest)) == len(rest)
    assert second.spans == rest
    assert client.reads == [1, 1]  # read again from wf-2's start...
    assert {s.span_id for s in first.spans}.isdisjoint(s.span_id for s in second.spans)
    assert FollowState(path).load() == (log.events[-1].seq, log.events[-1].seq + 1)

    # ...and with nothing open, a third run starts where the last one ended.
    third = FakeReceiver()
    assert (
        await run_follower(client, third, lambda: client.reads == [1, 1, len(log.events) + 1]) == 0
    )


async def test_an_event_not_judged_yet_is_read_again_before_anything_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(traces, "VERDICT_RETRY", 0.01)
    log = Log()
    workflow(log)
    result = next(e for e in log.events if e.type == "result")
    client = FakeClient(tmp_path, log, unjudged={result.seq: 2})
    receiver = FakeReceiver()
    full = derive_spans(log.events, NS)
    await run_follower(client, receiver, lambda: len(receiver.spans) == len(full))
    assert receiver.spans == full
    assert client.reads == [1, result.seq, result.seq]


async def test_a_receiver_that_refuses_is_tried_again(tmp_path: Path) -> None:
    log = Log()
    workflow(log)
    client = FakeClient(tmp_path, log)
    receiver = FakeReceiver(refuse=3)
    notices: list[str] = []
    full = derive_spans(log.events, NS)
    await run_follower(client, receiver, lambda: len(receiver.spans) == len(full), notices)
    assert receiver.spans == full
    assert notices[1:] == [
        f"could not export spans to {receiver.endpoint}: connection refused; trying again",
        f"sending to {receiver.endpoint} again",
    ]


async def test_an_export_sends_the_complete_spans_and_stops_at_an_unjudged_event(
    tmp_path: Path,
) -> None:
    log = Log()
    workflow(log)
    open_second(log)
    receiver = FakeReceiver()
    sent = await export_traces(FakeClient(tmp_path, log), receiver)  # type: ignore[arg-type]
    assert receiver.spans == derive_spans(log.events, NS)
    assert (sent.spans, sent.traces, sent.workflows) == (len(receiver.spans), 2, 2)
    assert (sent.pending, sent.position, sent.unjudged) == (3, log.events[-1].seq, None)

    held = next(e for e in log.events if e.type == "result")
    early = FakeReceiver()
    client = FakeClient(tmp_path, log, unjudged={held.seq: 1})
    partial = await export_traces(client, early, workflow_id="wf-1")  # type: ignore[arg-type]
    assert (partial.unjudged, partial.position) == (held.seq, held.seq - 1)
    assert early.spans == derive_spans(log.events[: held.seq - 1], NS)
    with pytest.raises(ConfigError, match="no workflow wf-none"):
        await export_traces(client, early, workflow_id="wf-none")  # type: ignore[arg-type]


def test_a_state_file_that_is_no_state_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{}")
    with pytest.raises(ConfigError, match="remove it to send every trace again"):
        FollowState(path).load()


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("http://localhost:4318", "http://localhost:4318/v1/traces"),
        ("http://localhost:4318/", "http://localhost:4318/v1/traces"),
        ("https://otel.example:443/api/traces", "https://otel.example:443/api/traces"),
        (" http://[::1]:4318 ", "http://[::1]:4318/v1/traces"),
    ],
)
def test_an_endpoint_is_a_receivers_traces_url(url: str, endpoint: str) -> None:
    assert endpoint_of(url) == endpoint


@pytest.mark.parametrize("url", ["ftp://x", "localhost:4318", "http://", "", "file:///etc"])
def test_an_endpoint_that_is_no_http_url_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="is not an http"):
        endpoint_of(url)
