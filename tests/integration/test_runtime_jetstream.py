"""The agent runtime on a real nats-server: work queues per priority, retries via nak delay."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest
from swarmkit import Swarm

from swarmlog.agents.api import Agent, Context, TaskError, on
from swarmlog.agents.policy.retry import RetryPolicy
from swarmlog.agents.runtime import AgentRuntime, Outcome
from swarmlog.projections.projector import Projector
from swarmlog.projections.store import ProjectionStore
from swarmlog.schemas.payloads import ClarificationRequest, TaskAssignment

pytestmark = pytest.mark.integration


class Writer(Agent):
    role = "worker"
    capabilities = ("write",)
    retry = RetryPolicy(initial_delay=0.05, max_delay=1, max_attempts=2, jitter=0)

    @on(TaskAssignment)
    async def write(self, task: TaskAssignment, ctx: Context) -> object:
        if task.input == "flaky" and ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        return {"wrote": task.input}


async def next_outcome(runtime: AgentRuntime) -> Outcome:
    end = time.monotonic() + 20
    while time.monotonic() < end:
        outcomes = await runtime.step(wait=0.2)
        if outcomes:
            (outcome,) = outcomes  # concurrency 1: one at a time
            return outcome
    raise AssertionError("no task came")


async def test_runtime_on_jetstream(swarm: Swarm, tmp_path: Path) -> None:
    runtime = AgentRuntime(Writer(), swarm.log, swarm.publisher(swarm.alice))
    await runtime.start()
    ops = swarm.publisher(swarm.operator)
    for i in range(3):
        await ops.publish(TaskAssignment(task_id=f"bg{i}", role="worker", priority="low", input=i))
    await ops.publish(TaskAssignment(task_id="flaky", role="worker", input="flaky"))
    await ops.publish(TaskAssignment(task_id="now", role="worker", priority="critical", input=1))
    try:
        outcomes = [await next_outcome(runtime) for _ in range(6)]
    finally:
        await runtime.close()
    assert outcomes[0] == Outcome("now", "succeeded", 1)
    flaky = [o for o in outcomes if o.task_id == "flaky"]
    assert [o.status for o in flaky] == ["retrying", "succeeded"]
    assert {o.task_id for o in outcomes if o.status == "succeeded"} == {
        "now",
        "flaky",
        "bg0",
        "bg1",
        "bg2",
    }
    store = ProjectionStore(tmp_path / "p.duckdb")
    projector = Projector(
        swarm.log, store, namespace=swarm.namespace, operator_key=swarm.operator.public_key
    )
    await projector.run(follow=False)
    projector.close()
    assert store.rows("SELECT count(*) FROM tasks WHERE status = 'succeeded'") == [(5,)]
    assert store.rows("SELECT count(*) FROM quarantine") == [(0,)]
    store.close()


class Asker(Agent):
    role = "worker"

    @on(TaskAssignment)
    async def ask(self, task: TaskAssignment, ctx: Context) -> object:
        return await ctx.ask("bob", f"what is {task.input}?", timeout=10)


class Answerer(Agent):
    role = "sage"

    @on(ClarificationRequest)
    async def answer(self, request: ClarificationRequest, ctx: Context) -> str:
        return request.question.upper()


async def test_a_question_and_its_answer_travel_through_the_inboxes(swarm: Swarm) -> None:
    sage = AgentRuntime(Answerer(), swarm.log, swarm.publisher(swarm.bob))
    asker = AgentRuntime(Asker(), swarm.log, swarm.publisher(swarm.alice))
    await sage.start()
    await asker.start()
    try:
        await swarm.publisher(swarm.operator).publish(
            TaskAssignment(task_id="q1", role="worker", input="six times seven")
        )
        outcome = await next_outcome(asker)
    finally:
        await asker.close()
        await sage.close()
    assert outcome == Outcome("q1", "succeeded", 1)
    result = await swarm.log.last_message(f"swarmlog.{swarm.namespace}.alice.task.q1.result")
    assert result is not None
    assert b"WHAT IS SIX TIMES SEVEN?" in result.data


class Hopeless(Agent):
    role = "worker"
    retry = RetryPolicy(initial_delay=0.2, multiplier=2, max_delay=5, max_attempts=3, jitter=0)

    @on(TaskAssignment)
    async def fail(self, task: TaskAssignment, ctx: Context) -> object:
        if task.input == "fatal":
            raise TaskError("bad_input", "cannot be done", retryable=False)
        raise RuntimeError("always fails")


async def test_failures_back_off_on_the_server_then_escalate(swarm: Swarm) -> None:
    runtime = AgentRuntime(Hopeless(), swarm.log, swarm.publisher(swarm.alice))
    await runtime.start()
    ops = swarm.publisher(swarm.operator)
    try:
        await ops.publish(TaskAssignment(task_id="doomed", role="worker"))
        seen = []
        for _ in range(3):
            outcome = await next_outcome(runtime)
            seen.append((outcome, time.monotonic()))
        await ops.publish(TaskAssignment(task_id="fatal", role="worker", input="fatal"))
        fatal = await next_outcome(runtime)
    finally:
        await runtime.close()
    outcomes = [o for o, _ in seen]
    assert [o.status for o in outcomes] == ["retrying", "retrying", "escalated"]
    assert outcomes[0].delay == 0.2
    assert outcomes[1].delay == 0.4  # growing
    # The server held each retry back for at least its delay (nak with delay).
    gaps = [later - earlier for (_, earlier), (_, later) in itertools.pairwise(seen)]
    assert gaps[0] >= 0.2
    assert gaps[1] >= 0.4
    assert fatal == Outcome("fatal", "escalated", 1)  # not retryable: at once
