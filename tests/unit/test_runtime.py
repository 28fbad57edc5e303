"""The agent runtime on the in-memory bus: results, retries with growing delays, escalation,
and priority order."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from swarmlog.agents.api import Agent, Context, TaskError, on
from swarmlog.agents.retry import RetryPolicy
from swarmlog.agents.runtime import AgentRuntime, Outcome
from swarmlog.bus.memory import MemoryLog
from swarmlog.projections.projector import Projector
from swarmlog.projections.store import ProjectionStore
from swarmlog.publisher import Publisher
from swarmlog.schemas.credentials import Credential
from swarmlog.schemas.payloads import TaskAssignment
from swarmlog.schemas.signing import Identity, issue_credential

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
        return str(task.input).upper()


class Setup:
    def __init__(self) -> None:
        self.log = MemoryLog("SWARMLOG_RT")
        self.operator = identity("operator")
        self.ops = Publisher(self.log, self.operator, NS)
        self.worker = identity("upper-1")

    async def start(self) -> AgentRuntime:
        credential = Credential(
            agent_id=self.worker.agent_id,
            role="upper",
            public_key=self.worker.public_key,
            issuer=self.operator.public_key,
            issued_at=1,
            capabilities=["text"],
        )
        await self.ops.publish(issue_credential(self.operator, credential))
        runtime = AgentRuntime(Upper(), self.log, Publisher(self.log, self.worker, NS))
        await runtime.start()
        return runtime

    async def assign(self, task_id: str, value: str, priority: str = "normal") -> None:
        await self.ops.publish(
            TaskAssignment(task_id=task_id, role="upper", priority=priority, input=value),  # type: ignore[arg-type]
            workflow_id="wf",
        )

    async def project(self, path: Path) -> ProjectionStore:
        store = ProjectionStore(path)
        projector = Projector(self.log, store, namespace=NS, operator_key=self.operator.public_key)
        await projector.run(follow=False)
        projector.close()
        return store


async def next_outcome(runtime: AgentRuntime, deadline: float = 10.0) -> Outcome:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        outcome = await runtime.step(wait=0.05)
        if outcome is not None:
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
    assert await runtime.step(wait=0.1) is None  # terminated: never delivered again
    store = await s.project(tmp_path / "p.duckdb")
    assert store.rows("SELECT status FROM tasks") == [("escalated",)]
    assert store.rows("SELECT count(*) FROM escalations WHERE task_id = 't1'") == [(1,)]
    retries = store.rows("SELECT count(*) FROM events WHERE type = 'task_retry_scheduled'")
    assert retries == [(2,)]
    store.close()


async def test_a_non_retryable_error_escalates_at_once(tmp_path: Path) -> None:
    s = Setup()
    runtime = await s.start()
    await s.assign("t1", "fatal")
    assert (await next_outcome(runtime)).status == "escalated"
    store = await s.project(tmp_path / "p.duckdb")
    assert store.rows("SELECT count(*) FROM events WHERE type = 'task_retry_scheduled'") == [(0,)]
    assert store.rows("SELECT status FROM tasks") == [("escalated",)]
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
