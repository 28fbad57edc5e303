"""The agent runtime on the in-memory bus: results, retries with growing delays, escalation,
and priority order."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from fakes import RUNNING, RecordingDelivery
from swarmlog.agents.api import Agent, Context, TaskError, on
from swarmlog.agents.policy.killflags import KillFlag, flag_key
from swarmlog.agents.policy.outputs import check_output
from swarmlog.agents.policy.resultcache import CacheEntry, cache_key
from swarmlog.agents.policy.retry import RetryPolicy
from swarmlog.agents.policy.routing import AgentView
from swarmlog.agents.publisher import Publisher
from swarmlog.agents.roles.router import Router
from swarmlog.agents.runtime import AgentRuntime, Outcome
from swarmlog.agents.settlement import crash_traceback
from swarmlog.bus.memory import MemoryLog
from swarmlog.projections.projector import Projector
from swarmlog.projections.store import ProjectionStore
from swarmlog.schemas.codec import decode_envelope, decode_signed
from swarmlog.schemas.credentials import Credential
from swarmlog.schemas.payloads import (
    MAX_TRACEBACK,
    AgentStopped,
    ClarificationRequest,
    Error,
    Result,
    TaskAssignment,
    TaskCancelled,
    TaskEscalated,
    TaskOffered,
)
from swarmlog.schemas.presence import Presence, open_presence
from swarmlog.schemas.signing import Identity, issue_credential
from waiting import eventually, until

NS = "rt"
FAST = RetryPolicy(initial_delay=0.01, multiplier=2, max_delay=1, max_attempts=3, jitter=0)


def identity(name: str) -> Identity:
    return Identity.from_seed(name, hashlib.sha256(name.encode()).digest())


class Upper(Agent):
    role = "upper"
    capabilities = ("text",)
    retry = FAST

    @on(TaskAssignment)
    async def run(self, task: TaskAssignment, ctx: Context) -> object:
        ctx.usage("offline", prompt_tokens=3, completion_tokens=2)
        if task.input == "boom":
            raise RuntimeError("it broke")
        if task.input == "fatal":
            raise TaskError("bad_input", "cannot be done", retryable=False)
        if task.input == "not a date":
            raise ValueError(f"{task.input!r} is not a date")  # the input's fault, for good
        if task.input == "slow":
            await asyncio.sleep(0.4)  # long work, longer than the ack wait
        if task.input == "forever":
            await asyncio.Event().wait()
        return str(task.input).upper()


class HandsOver(Upper):
    fallback_role = "spare"


pytestmark = pytest.mark.usefixtures("close_runtimes")


class Setup:
    def __init__(self) -> None:
        self.log = MemoryLog("SWARMLOG_RT")
        self.operator = identity("operator")
        self.ops = Publisher(self.log, self.operator, NS)
        self.worker = identity("upper-1")

    async def start(self, agent: Agent | None = None, **options: Any) -> AgentRuntime:
        return await self.replica(self.worker, agent, **options)

    async def replica(
        self, worker: Identity, agent: Agent | None = None, **options: Any
    ) -> AgentRuntime:
        agent = agent or Upper()
        credential = Credential(
            agent_id=worker.agent_id,
            role=agent.role,
            public_key=worker.public_key,
            issuer=self.operator.public_key,
            issued_at=1,
            capabilities=list(agent.capabilities),
        )
        issued = issue_credential(self.operator, credential)
        await self.ops.publish(issued)
        publisher = Publisher(self.log, worker, NS)
        runtime = AgentRuntime(agent, self.log, publisher, credential=issued, **options)
        await runtime.start()
        RUNNING.append(runtime)
        return runtime

    async def assign(
        self, task_id: str, value: str, priority: str = "normal", deadline_at: int | None = None
    ) -> None:
        await self.ops.publish(
            TaskAssignment(
                task_id=task_id,
                role="upper",
                priority=priority,  # type: ignore[arg-type]
                input=value,
                deadline_at=deadline_at,
            ),
            workflow_id="wf",
        )

    def types(self, task_id: str) -> list[str]:
        """The event types of one task's history, in stream order."""
        out = []
        for m in self.log._messages:
            parts = m.subject.split(".")
            if task_id in parts:
                out.append(parts[-1] if parts[3] == "task" else "task_assignment")
        return out

    async def project(self, path: Path) -> ProjectionStore:
        store = ProjectionStore(path)
        projector = Projector(self.log, store, namespace=NS, operator_key=self.operator.public_key)
        await projector.run(follow=False)
        projector.close()
        return store


async def next_outcome(runtime: AgentRuntime, deadline: float = 10.0) -> Outcome:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        outcomes = await runtime.step(wait=0.05)
        if outcomes:
            (outcome,) = outcomes  # concurrency 1: one at a time
            return outcome
    raise AssertionError("no task came")


async def test_a_result_is_published_and_projected(tmp_path: Path) -> None:
    s = Setup()
    runtime = await s.start()
    await s.assign("t1", "hello")
    assert await next_outcome(runtime) == Outcome("t1", "succeeded", 1)
    store = await s.project(tmp_path / "p.duckdb")
    assert store.rows("SELECT status, output, completed_by FROM tasks") == [
        ("succeeded", '"HELLO"', "upper-1")
    ]
    assert store.rows("SELECT used_tokens FROM budgets WHERE scope = 'agent'") == [(5,)]
    assert store.rows("SELECT status FROM agents WHERE agent_id = 'upper-1'") == [("registered",)]
    assert store.rows("SELECT count(*) FROM quarantine") == [(0,)]
    store.close()


async def test_failures_retry_with_growing_delays_then_escalate(tmp_path: Path) -> None:
    s = Setup()
    runtime = await s.start()
    await s.assign("t1", "boom")
    outcomes = [await next_outcome(runtime) for _ in range(3)]
    assert [o.status for o in outcomes] == ["retrying", "retrying", "escalated"]
    assert [o.attempt for o in outcomes] == [1, 2, 3]
    assert outcomes[0].delay < outcomes[1].delay
    assert await runtime.step(wait=0.1) == []  # terminated: never delivered again
    store = await s.project(tmp_path / "p.duckdb")
    assert store.rows("SELECT status FROM tasks") == [("escalated",)]
    assert store.rows("SELECT count(*) FROM escalations WHERE task_id = 't1'") == [(1,)]
    retries = store.rows("SELECT count(*) FROM events WHERE type = 'task_retry_scheduled'")
    assert retries == [(2,)]
    # A crash: each error carries where it happened, innermost frame and exception last.
    crashes = [msgspec.json.decode(p)["traceback"] for (p,) in store.rows(_ERRORS)]
    assert len(crashes) == 3
    for crash in crashes:
        assert crash.startswith("Traceback (most recent call last):")
        assert 'raise RuntimeError("it broke")' in crash
        assert crash.endswith("RuntimeError: it broke")
    store.close()


_ERRORS = "SELECT payload FROM events WHERE type = 'error' ORDER BY seq"


async def test_a_non_retryable_error_escalates_at_once(tmp_path: Path) -> None:
    s = Setup()
    runtime = await s.start()
    await s.assign("t1", "fatal")
    assert (await next_outcome(runtime)).status == "escalated"
    store = await s.project(tmp_path / "p.duckdb")
    assert store.rows("SELECT count(*) FROM events WHERE type = 'task_retry_scheduled'") == [(0,)]
    assert store.rows("SELECT status FROM tasks") == [("escalated",)]
    # The handler's own TaskError is one line: no traceback, not even an empty one encoded.
    ((payload,),) = store.rows(_ERRORS)
    assert msgspec.json.decode(payload) == {
        "type": "error",
        "task_id": "t1",
        "code": "bad_input",
        "message": "cannot be done",
        "retryable": False,
        "permanent": True,  # not retried: the work's own fault, which no circuit counts
    }
    store.close()


def test_a_crash_traceback_is_cut_to_its_last_lines_within_the_bound() -> None:
    def down(n: int) -> None:
        try:
            if n == 0:
                raise ValueError("at the bottom")
            down(n - 1)
        except ValueError as inner:
            raise ValueError("at the top" if n == 50 else f"at {n}") from inner

    try:
        down(50)  # 51 chained exceptions: far more than fit
    except ValueError as exc:
        error = exc
    whole = crash_traceback(error, limit=10**9)
    assert whole.startswith("Traceback (most recent call last):")
    assert len(whole) > MAX_TRACEBACK
    cut = crash_traceback(error)
    assert len(cut) <= MAX_TRACEBACK
    assert cut.startswith("(earlier lines cut: the agent's log has the whole traceback)\n")
    assert cut.endswith("from inner\nValueError: at the top")
    assert whole.endswith(cut.split("\n", 1)[1])  # the tail, from a line's start
    # An error event without one encodes as before it had the field (signatures still hold).
    assert b"traceback" not in msgspec.json.encode(Error(task_id="t", code="c"))


async def test_a_handlers_own_value_error_is_permanent_not_retried_nor_handed_over(
    tmp_path: Path,
) -> None:
    s = Setup()
    runtime = await s.start(HandsOver())
    await s.assign("t1", "not a date")
    assert await next_outcome(runtime) == Outcome("t1", "escalated", 1)
    assert s.types("t1") == ["task_assignment", "task_started", "error", "task_escalated"]
    store = await s.project(tmp_path / "p.duckdb")
    (error,) = store.rows("SELECT payload FROM events WHERE type = 'error'")
    said = json.loads(error[0])
    assert (said["code"], said["retryable"], said["permanent"]) == ("ValueError", False, True)
    (reason,) = store.rows("SELECT reason FROM escalations")
    assert reason == ("ValueError is not retryable (a permanent error)",)
    store.close()


@pytest.mark.parametrize("urgent", ["critical", "high"])
async def test_urgent_work_is_taken_before_background_work(urgent: str) -> None:
    s = Setup()
    runtime = await s.start()
    for i in range(3):
        await s.assign(f"bg{i}", "x", priority="low")
    await s.assign("urgent", "y", priority=urgent)
    first = await next_outcome(runtime)
    assert first.task_id == "urgent"


async def test_a_redelivered_assignment_with_a_result_is_not_run_again() -> None:
    s = Setup()
    first = await s.start()
    await s.assign("t1", "once")
    assert (await next_outcome(first)).status == "succeeded"
    # Another replica gets the same assignment again (the first crashed before its ack landed).
    other = await s.replica(identity("upper-2"))
    assignment = next(m for m in s.log._messages if ".work." in m.subject)
    again = RecordingDelivery(assignment, num_delivered=2)  # as after a crash before the ack
    assert (await other.handle(again)).status == "duplicate"
    assert again.settled == ["ack"]
    assert s.types("t1").count("result") == 1


async def test_a_kill_switch_stops_taking_work_and_revive_resumes() -> None:
    s = Setup()
    runtime = await s.start()
    flags = await s.log.flags()
    await flags.put(flag_key(agent_id="upper-1"), msgspec.json.encode(KillFlag("test")))
    await s.assign("t1", "x")
    end = time.monotonic() + 5
    while runtime.killed is None and time.monotonic() < end:
        await runtime.step(wait=0.01)
    assert runtime.killed == KillFlag("test")
    assert await runtime.step(wait=0.05) == []
    assert "task_started" not in s.types("t1")
    await flags.delete(flag_key(agent_id="upper-1"))
    assert (await next_outcome(runtime)).status == "succeeded"


async def test_a_kill_mid_task_hands_the_task_back_without_emitting() -> None:
    s = Setup()
    runtime = await s.start()
    flags = await s.log.flags()
    await s.assign("t1", "forever")
    handling = asyncio.create_task(next_outcome(runtime))
    await until(lambda: "task_started" in s.types("t1"))
    await flags.put(flag_key(role="upper"), msgspec.json.encode(KillFlag("stop")))
    outcome = await asyncio.wait_for(handling, 5)
    assert outcome.status == "handed_back"
    assert not {"result", "error"} & set(s.types("t1"))


async def test_work_past_its_deadline_fails_as_timed_out(tmp_path: Path) -> None:
    s = Setup()
    runtime = await s.start()
    await s.assign("late", "x", deadline_at=time.time_ns() - 1)
    await s.assign("slow", "slow", deadline_at=time.time_ns() + 100_000_000)
    assert {(await next_outcome(runtime)).status for _ in range(2)} == {"timed_out"}
    store = await s.project(tmp_path / "p.duckdb")
    assert store.rows("SELECT task_id, status, error FROM tasks ORDER BY 1") == [
        ("late", "failed", "timed out"),
        ("slow", "failed", "timed out"),
    ]
    store.close()


async def test_after_the_last_attempt_a_fallback_role_takes_the_task() -> None:
    s = Setup()
    runtime = await s.start(HandsOver())
    await s.assign("t1", "boom")
    outcomes = [await next_outcome(runtime) for _ in range(3)]
    assert [o.status for o in outcomes] == ["retrying", "retrying", "reassigned"]
    handed = [m for m in s.log._messages if ".work.spare." in m.subject]
    assert len(handed) == 1


async def presence_of(s: Setup, agent_id: str = "upper-1") -> Presence | None:
    raw = await (await s.log.presence()).get(agent_id)
    if raw is None:
        return None
    got = open_presence(
        raw,
        key=agent_id,
        namespace=NS,
        public_key=identity(agent_id).public_key,
        now=time.time_ns(),
    )
    assert isinstance(got, Presence), got
    return got


def _result(s: Setup, task_id: str) -> Result:
    (found,) = [
        e.payload
        for m in s.log._messages
        if isinstance((e := decode_envelope(decode_signed(m.data).body)).payload, Result)
        and e.payload.task_id == task_id
    ]
    assert isinstance(found, Result)
    return found


async def test_a_task_that_ends_at_once_says_when_it_started_in_its_result() -> None:
    s = Setup()
    runtime = await s.start()
    before = time.time_ns()
    await s.assign("t1", "quick")
    assert (await next_outcome(runtime)).status == "succeeded"
    assert s.types("t1") == ["task_assignment", "result"]  # no task_started of its own
    result = _result(s, "t1")
    assert result.attempt == 1
    assert result.started_at is not None
    assert before <= result.started_at <= time.time_ns()


async def test_long_work_is_kept_alive_not_redelivered_and_in_hand_off_the_log() -> None:
    s = Setup()
    runtime = await s.start(ack_wait=0.15, heartbeat=0.05)
    await s.assign("t1", "slow")
    outcome = asyncio.ensure_future(next_outcome(runtime))

    async def holding() -> bool:
        presence = await presence_of(s)
        return presence is not None and presence.tasks == ["t1"] and presence.load == 1

    await eventually(holding, 5)
    assert (await outcome).status == "succeeded"
    # Kept alive by in-progress acks and its replica's presence: no beat on the log.
    assert s.types("t1") == ["task_assignment", "task_started", "result"]
    assert _result(s, "t1").started_at is None  # its start is on the log, said once
    assert await runtime.step(wait=0.3) == []  # acked once, never handed out again
    assert s.types("t1").count("task_started") == 1

    async def idle() -> bool:
        presence = await presence_of(s)
        return presence is not None and presence.tasks == [] and presence.load == 0

    await eventually(idle, 5)


async def test_an_idle_replica_stays_present_off_the_log_and_says_when_it_stops() -> None:
    s = Setup()
    runtime = await s.start(heartbeat=0.02)
    first = await presence_of(s)
    assert first is not None  # present before it registered
    assert (first.role, first.capacity, first.every) == ("upper", 1, 0.02)
    seqs = {first.seq}
    events = len(s.log._messages)

    async def beats() -> bool:
        presence = await presence_of(s)
        assert presence is not None
        seqs.add(presence.seq)
        return len(seqs) >= 5

    await eventually(beats, 5)
    assert len(s.log._messages) == events  # four more beats, nothing on the log
    RUNNING.remove(runtime)
    await runtime.close("test over")
    last = decode_envelope(decode_signed(s.log._messages[-1].data).body)
    assert last.payload == AgentStopped(agent_id="upper-1", reason="test over")
    assert await presence_of(s) is None  # taken away, not left to expire


class Parallel(Upper):
    concurrency = 8
    running = 0
    all_in = asyncio.Event()

    @on(TaskAssignment)
    async def run(self, task: TaskAssignment, ctx: Context) -> object:
        if task.input == "together":
            Parallel.running += 1
            if Parallel.running == 5:
                Parallel.all_in.set()
            await asyncio.wait_for(Parallel.all_in.wait(), 5)  # only if all five run at once
        return await super().run(task, ctx)


async def test_a_replica_with_concurrency_runs_a_batch_together(tmp_path: Path) -> None:
    s = Setup()
    runtime = await s.start(Parallel())
    for i in range(5):
        await s.assign(f"t{i}", "together")
    await s.assign("bad", "fatal")
    outcomes = await runtime.step(wait=1)
    assert sorted((o.task_id, o.status) for o in outcomes) == [
        ("bad", "escalated"),
        *((f"t{i}", "succeeded") for i in range(5)),
    ]
    store = await s.project(tmp_path / "p.duckdb")
    assert store.rows("SELECT count(*) FROM tasks WHERE status = 'succeeded'") == [(5,)]
    assert store.rows("SELECT count(*) FROM quarantine") == [(0,)]
    store.close()


class Thinker(Agent):
    """Uses the rest of the context: checkpoints, questions, subtasks, shared state."""

    role = "thinker"
    capabilities = ("think",)
    retry = FAST

    @on(TaskAssignment)
    async def think(self, task: TaskAssignment, ctx: Context) -> object:
        match task.input:
            case "resume":
                if ctx.resumed is None:
                    await ctx.progress(0.5, "half way")
                    await ctx.checkpoint({"done": 3})
                    raise RuntimeError("crashed half way")
                return {"resumed": ctx.resumed}
            case "ask":
                return {"answer": await ctx.ask("sage-1", "what is six times seven?", timeout=5)}
            case "ask-nobody":
                return await ctx.ask("nobody", "hello?", timeout=0.05)
            case "delegate-briefly":
                return await ctx.delegate("upper", "one", timeout=0.3)
            case "delegate":
                first = await ctx.delegate("upper", "one")
                second = await ctx.delegate("upper", "two")
                return [first, second]
            case "query":
                return await ctx.query("SELECT 1 AS one")
            case "shaped":
                return {"n": 1}
            case _:
                return "not an object"


class Sage(Agent):
    role = "sage"

    @on(ClarificationRequest)
    async def answer(self, request: ClarificationRequest, ctx: Context) -> str:
        return "42" if "six times seven" in request.question else "?"


async def test_a_retry_resumes_from_the_last_checkpoint(tmp_path: Path) -> None:
    s = Setup()
    runtime = await s.replica(identity("thinker-1"), Thinker())
    await s.ops.publish(TaskAssignment(task_id="t1", role="thinker", input="resume"))
    first, second = await next_outcome(runtime), await next_outcome(runtime)
    assert (first.status, second.status) == ("retrying", "succeeded")
    assert s.types("t1").count("task_checkpointed") == 1
    store = await s.project(tmp_path / "p.duckdb")
    assert store.rows("SELECT output FROM tasks") == [('{"resumed":{"done":3}}',)]
    store.close()


async def test_a_question_is_answered_by_the_agent_asked(tmp_path: Path) -> None:
    s = Setup()
    await s.replica(identity("sage-1"), Sage())
    runtime = await s.replica(identity("thinker-1"), Thinker())
    await s.ops.publish(TaskAssignment(task_id="t1", role="thinker", input="ask"))
    assert (await next_outcome(runtime)).status == "succeeded"
    await s.ops.publish(TaskAssignment(task_id="t2", role="thinker", input="ask-nobody"))
    assert (await next_outcome(runtime)).status == "retrying"  # no answer in time
    store = await s.project(tmp_path / "p.duckdb")
    assert store.rows("SELECT output FROM tasks WHERE task_id = 't1'") == [('{"answer":"42"}',)]
    # The answered wait is gone from the wait-for graph; the unanswered one is still there.
    assert store.rows("SELECT waiter, waits_on, task_id FROM waits_for") == [
        ("thinker-1", "nobody", "t2")
    ]
    store.close()


async def test_delegated_subtasks_are_routed_run_and_awaited() -> None:
    s = Setup()
    helper = await s.replica(identity("upper-2"))

    async def agents() -> list[AgentView]:
        now = time.time_ns()
        return [AgentView("upper-2", "upper", frozenset({"upper"}), "registered", now)]

    router = Router(s.log, Publisher(s.log, identity("router-1"), NS), agents)
    await router.start()
    stop = asyncio.Event()

    async def serve() -> None:
        while not stop.is_set():
            await router.step(wait=0.01)
            await helper.step(wait=0.01)

    serving = asyncio.create_task(serve())
    try:
        runtime = await s.replica(identity("thinker-1"), Thinker())
        await s.ops.publish(TaskAssignment(task_id="t1", role="thinker", input="delegate"))
        outcome = await next_outcome(runtime)
    finally:
        stop.set()
        await serving
        await router.close()
    assert outcome.status == "succeeded"
    results = [
        decode_envelope(decode_signed(m.data).body).payload
        for m in s.log._messages
        if m.subject.endswith(".result")
    ]
    assert [(r.task_id, r.output) for r in results] == [  # type: ignore[union-attr]
        ("t1-d1", "ONE"),
        ("t1-d2", "TWO"),
        ("t1", ["ONE", "TWO"]),
    ]


async def test_a_parent_waits_for_its_escalated_subtask_and_is_not_retried(
    tmp_path: Path,
) -> None:
    s = Setup()
    runtime = await s.replica(identity("thinker-1"), Thinker())
    # The subtask failed for good at its role and waits for a human: the parent waits too.
    await s.ops.publish(TaskEscalated(task_id="t1-d1", reason="ValueError is not retryable"))
    await s.ops.publish(TaskAssignment(task_id="t1", role="thinker", input="delegate-briefly"))
    # Its own failure only at the timeout, and not retried: the subtask's state stays as it is.
    assert await next_outcome(runtime) == Outcome("t1", "escalated", 1)
    # A human answered it meanwhile in the next one: the parent goes on with the answer.
    await s.ops.publish(TaskEscalated(task_id="t2-d1", reason="ValueError is not retryable"))
    await s.ops.publish(TaskAssignment(task_id="t2", role="thinker", input="delegate-briefly"))
    await s.ops.publish(Result(task_id="t2-d1", output="ANSWERED"))
    assert await next_outcome(runtime) == Outcome("t2", "succeeded", 1)
    # A cancelled subtask fails its parent at once, for good.
    await s.ops.publish(TaskCancelled(task_id="t3-d1", reason="not worth it"))
    await s.ops.publish(TaskAssignment(task_id="t3", role="thinker", input="delegate-briefly"))
    assert await next_outcome(runtime) == Outcome("t3", "escalated", 1)
    store = await s.project(tmp_path / "p.duckdb")
    errors = store.rows(
        "SELECT json_extract_string(payload, '$.code') FROM events WHERE type = 'error'"
        " ORDER BY seq"
    )
    assert errors == [("subtask_escalated",), ("subtask_failed",)]
    assert store.rows("SELECT count(*) FROM events WHERE type = 'task_retry_scheduled'") == [(0,)]
    store.close()


async def test_output_must_be_json_and_match_the_declared_schema() -> None:
    s = Setup()
    runtime = await s.replica(identity("thinker-1"), Thinker())
    schema = {"type": "object", "required": ["n"]}
    for task_id, value in (("good", "shaped"), ("bad", "other")):
        await s.ops.publish(
            TaskAssignment(
                task_id=task_id, role="thinker", input=value, expected_output_schema=schema
            )
        )
    outcomes = [await next_outcome(runtime) for _ in range(4)]
    assert [(o.task_id, o.status) for o in outcomes] == [
        ("good", "succeeded"),
        ("bad", "retrying"),
        ("bad", "retrying"),
        ("bad", "escalated"),
    ]
    with pytest.raises(TaskError, match="not JSON"):
        check_output(object(), None)
    with pytest.raises(TaskError, match="schema is invalid"):
        check_output({}, {"type": "no-such-type"})


async def test_handlers_read_shared_state_through_the_runtime() -> None:
    s = Setup()

    async def query(sql: str) -> list[dict[str, Any]]:
        return [{"sql": sql}]

    runtime = await s.replica(identity("thinker-1"), Thinker(), query=query)  # type: ignore[arg-type]
    await s.ops.publish(TaskAssignment(task_id="t1", role="thinker", input="query"))
    assert (await next_outcome(runtime)).status == "succeeded"


class Quick(Upper):
    @on(TaskAssignment)
    async def run(self, task: TaskAssignment, ctx: Context) -> object:
        return "done"


async def test_a_graceful_stop_hands_back_work_that_does_not_finish() -> None:
    s = Setup()
    runtime = await s.start()
    await s.assign("long", "forever")
    await s.assign("next", "x")
    stop = asyncio.Event()
    running = asyncio.create_task(runtime.run(stop, grace=0.1))
    await until(lambda: "task_started" in s.types("long"))
    stop.set()
    await asyncio.wait_for(running, 5)  # it exits: the handler was cancelled after the grace
    other = await s.replica(identity("upper-2"), Quick())
    taken = [await next_outcome(other) for _ in range(2)]
    # Handed back at once (not after the ack wait): another replica has it right away.
    assert {o.task_id for o in taken} == {"long", "next"}


class Memo(Upper):
    cache_ttl = 60.0
    runs = 0

    @on(TaskAssignment)
    async def run(self, task: TaskAssignment, ctx: Context) -> object:
        Memo.runs += 1
        ctx.usage("offline", prompt_tokens=10, completion_tokens=5)
        return {"upper": str(task.input).upper()}


async def test_identical_work_is_answered_from_the_result_cache(tmp_path: Path) -> None:
    Memo.runs = 0
    s = Setup()
    runtime = await s.start(Memo())
    for task_id, value in (("t1", "same"), ("t2", "same"), ("t3", "other")):
        await s.assign(task_id, value)
    outcomes = [await next_outcome(runtime) for _ in range(3)]
    assert [o.status for o in outcomes] == ["succeeded"] * 3
    assert Memo.runs == 2  # t2 was not computed again
    store = await s.project(tmp_path / "p.duckdb")
    assert store.rows("SELECT task_id, cached, output FROM tasks ORDER BY 1") == [
        ("t1", False, '{"upper":"SAME"}'),
        ("t2", True, '{"upper":"SAME"}'),
        ("t3", False, '{"upper":"OTHER"}'),
    ]
    # A cached answer costs nothing: only the two computed ones are in the budget.
    assert store.rows("SELECT used_tokens FROM budgets WHERE scope = 'agent'") == [(30,)]
    store.close()


async def test_the_cache_serves_what_the_role_computed_and_not_what_another_planted(
    tmp_path: Path,
) -> None:
    Memo.runs = 0
    s = Setup()
    first = await s.start(Memo())
    await s.assign("t1", "same")
    assert (await next_outcome(first)).status == "succeeded"
    other = await s.replica(identity("upper-2"), Memo())
    await s.assign("t2", "same")
    assert (await next_outcome(other)).status == "succeeded"
    assert Memo.runs == 1  # answered from upper-1's entry: the cache is shared by the role
    # A replica of another role signs a result bound to upper's key and points the cache at it.
    key = cache_key("upper", other.model.name, "planted")
    forger = await s.replica(identity("lower-1"), Lower())
    forged = await forger.publisher.publish(
        Result(task_id="t-forged", output="PLANTED", cache_key=key)
    )
    assert forger._credential is not None
    await (await s.log.cache()).put(
        key, msgspec.json.encode(CacheEntry(forged.seq, forger._credential))
    )
    await s.assign("t3", "planted")
    assert (await next_outcome(other)).status == "succeeded"
    assert Memo.runs == 2  # computed for real
    store = await s.project(tmp_path / "p.duckdb")
    rows = store.rows("SELECT task_id, cached, output FROM tasks WHERE task_id IN ('t2', 't3')")
    assert sorted(rows) == [("t2", True, '{"upper":"SAME"}'), ("t3", False, '{"upper":"PLANTED"}')]
    store.close()


class Lower(Upper):
    role = "lower"


class Thrifty(Upper):
    budget_tokens = 18  # Upper records 5 tokens a task: soft (80 %) after 3, hard after 4


class ThriftyWithFallback(Thrifty):
    fallback_role = "cheap"


async def test_an_agent_over_its_token_budget_stops_spending(tmp_path: Path) -> None:
    s = Setup()
    runtime = await s.start(Thrifty())
    for i in range(5):
        await s.assign(f"t{i}", "x")
    done = [await next_outcome(runtime) for _ in range(4)]  # 20 tokens: past the budget
    assert [o.status for o in done] == ["succeeded"] * 4
    assert runtime.over_budget
    fifth = await next_outcome(runtime)
    assert (fifth.task_id, fifth.status) == ("t4", "escalated")  # no fallback: a human decides
    store = await s.project(tmp_path / "p.duckdb")
    alerts = store.rows("SELECT payload FROM events WHERE type = 'budget_exceeded' ORDER BY seq")
    limits = [msgspec.json.decode(p)["limit"] for (p,) in alerts]
    assert limits == ["soft", "hard"]
    store.close()


async def test_over_its_budget_an_agent_hands_work_to_its_fallback_role() -> None:
    s = Setup()
    runtime = await s.start(ThriftyWithFallback())
    for i in range(5):
        await s.assign(f"t{i}", "x")
    outcomes = [await next_outcome(runtime) for _ in range(5)]
    assert [o.status for o in outcomes] == ["succeeded"] * 4 + ["reassigned"]
    handed = [m.subject for m in s.log._messages if ".work.cheap." in m.subject]
    assert handed == [f"swarmlog.{NS}.upper-1.work.cheap.normal.t4"]


class Writer(Upper):
    tier = "small"

    @on(TaskAssignment)
    async def run(self, task: TaskAssignment, ctx: Context) -> object:
        return await ctx.complete(f"Summarise: {task.input}", system="Be brief.")


async def test_a_handler_asks_its_tiers_model_and_the_usage_is_on_the_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SWARMLOG_MODEL_SMALL", raising=False)
    s = Setup()
    runtime = await s.start(Writer())
    assert runtime.model.name == "offline-small"  # no SWARMLOG_MODEL_SMALL: the offline model
    await s.assign("t1", "the log is the truth")
    assert (await next_outcome(runtime)).status == "succeeded"
    (result,) = [
        p
        for m in s.log._messages
        if (p := decode_envelope(decode_signed(m.data).body).payload).__struct_config__.tag
        == "result"
    ]
    assert result.output.startswith("[offline-small ")  # type: ignore[attr-defined]
    assert "Summarise: the log is the truth" in result.output  # type: ignore[attr-defined]
    usage = result.usage  # type: ignore[attr-defined]
    assert usage.model == "offline-small"
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens > 0


async def test_a_delegated_subtask_is_a_wait_until_it_is_settled(tmp_path: Path) -> None:
    s = Setup()
    await s.ops.publish(TaskOffered(task_id="child", capability="x", parent_task_id="parent"))
    await s.ops.publish(
        TaskOffered(task_id="posted", capability="x", mode="swarm", parent_task_id="parent")
    )  # swarm work posted by a handler is not waited for
    store = await s.project(tmp_path / "during.duckdb")
    assert store.rows("SELECT ref, kind, waits_on, task_id FROM waits_for") == [
        ("child", "subtask", "child", "parent")
    ]
    store.close()
    await s.ops.publish(Result(task_id="child", output=1))
    store = await s.project(tmp_path / "after.duckdb")
    assert store.rows("SELECT count(*) FROM waits_for") == [(0,)]
    store.close()


class Searcher(Upper):
    dependencies = ("search",)

    @on(TaskAssignment)
    async def run(self, task: TaskAssignment, ctx: Context) -> object:
        raise TaskError("down", "no answer", retryable=False, dependency=str(task.input))


async def test_an_error_names_a_failed_dependency_only_when_the_agent_declared_it() -> None:
    s = Setup()
    runtime = await s.start(Searcher())
    await s.assign("t1", "search")
    await s.assign("t2", "billing")  # not declared: the error does not name it
    for _ in range(2):
        await next_outcome(runtime)
    errors = {
        p.task_id: p.dependency  # type: ignore[attr-defined]
        for m in s.log._messages
        if (p := decode_envelope(decode_signed(m.data).body).payload).__struct_config__.tag
        == "error"
    }
    assert errors == {"t1": "search", "t2": None}
    registered = next(
        p
        for m in s.log._messages
        if (p := decode_envelope(decode_signed(m.data).body).payload).__struct_config__.tag
        == "agent_registered"
    )
    assert registered.dependencies == ["search"]  # type: ignore[attr-defined]
