"""Model and tool calls in the runtime, on the in-memory bus: the tool loop, each call journaled
as a signed pair, answered from the journal on a retry, refused outside the credential, priced
against the budget before it is made, structured output checked."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any, ClassVar

import msgspec
import pytest

from fakes import RUNNING
from swarmlog import LLMAgent, tool
from swarmlog.agents.api import Agent, Context, TaskError, on
from swarmlog.agents.llm import ChatRequest, OfflineModel, Reply
from swarmlog.agents.llm.messages import TextSink
from swarmlog.agents.llm.offline import parse_script
from swarmlog.agents.policy.retry import RetryPolicy
from swarmlog.agents.publisher import Publisher
from swarmlog.agents.runtime import AgentRuntime, Outcome
from swarmlog.bus.memory import MemoryLog
from swarmlog.projections.projector import Projector
from swarmlog.projections.store import ProjectionStore
from swarmlog.schemas.codec import decode_envelope, decode_signed
from swarmlog.schemas.credentials import Credential
from swarmlog.schemas.payloads import TaskAssignment
from swarmlog.schemas.signing import Identity, issue_credential
from waiting import until

NS = "ai"
FAST = RetryPolicy(initial_delay=0.01, multiplier=1, max_delay=0.01, max_attempts=3, jitter=0)
ASK = {"tool_calls": [{"name": "count_words", "arguments": {"text": "one two three"}}]}

pytestmark = pytest.mark.usefixtures("close_runtimes")


def identity(name: str) -> Identity:
    return Identity.from_seed(name, hashlib.sha256(name.encode()).digest())


class Counter(LLMAgent):
    role = "counter"
    system_prompt = "Count words with the tool."
    retry = FAST
    offline_script = (ASK, {"content": "three words"})
    calls: ClassVar[list[str]] = []

    @tool
    def count_words(self, text: str, idempotency_key: str) -> int:
        """How many words ``text`` has."""
        Counter.calls.append(idempotency_key)
        return len(text.split())


class Flaky(Counter):
    """Fails its first attempt after the tool call: the retry must not call the tool again."""

    role = "flaky"
    attempts: ClassVar[int] = 0

    @on(TaskAssignment)
    async def answer(self, task: TaskAssignment, ctx: Context) -> Any:
        answer = await ctx.run(str(task.input), system=self.system_prompt)
        Flaky.attempts += 1
        if Flaky.attempts == 1:
            raise RuntimeError("crashed after its tool call")
        return answer.text


class Setup:
    def __init__(self, tmp: Path) -> None:
        self.log = MemoryLog("SWARMLOG_AI")
        self.operator = identity("operator")
        self.ops = Publisher(self.log, self.operator, NS)
        self.path = tmp / "p.duckdb"
        self._one_at_a_time = asyncio.Lock()  # one process may hold the file; a projector's
        # service answers one query at a time too

    async def query(self, sql: str) -> list[dict[str, Any]]:
        """The projection as a projector would answer: every event folded, then the SQL."""
        async with self._one_at_a_time:
            return await self._query(sql)

    async def _query(self, sql: str) -> list[dict[str, Any]]:
        store = ProjectionStore(self.path)
        projector = Projector(self.log, store, namespace=NS, operator_key=self.operator.public_key)
        try:
            await projector.run(follow=False)
            cursor = store.cursor().execute(sql)
            columns = [c[0] for c in cursor.description]
            return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
        finally:
            projector.close()
            store.close()

    async def start(
        self, agent: Agent, *, tools: list[str] | None = None, model: Any = None
    ) -> AgentRuntime:
        worker = identity(f"{agent.role}-1")
        granted = tools if tools is not None else ["count_words"]
        credential = Credential(
            agent_id=worker.agent_id,
            role=agent.role,
            public_key=worker.public_key,
            issuer=self.operator.public_key,
            issued_at=1,
            tools=granted,
        )
        issued = issue_credential(self.operator, credential)
        await self.ops.publish(issued)
        publisher = Publisher(self.log, worker, NS)
        runtime = AgentRuntime(
            agent, self.log, publisher, credential=issued, query=self.query, model=model
        )
        await runtime.start()
        RUNNING.append(runtime)
        return runtime

    async def assign(self, role: str, task_id: str = "t1", text: str = "count") -> None:
        task = TaskAssignment(task_id=task_id, role=role, input=text)
        await self.ops.publish(task, workflow_id="wf")

    def payloads(self, type_: str) -> list[Any]:
        found = []
        for m in self.log._messages:
            payload = decode_envelope(decode_signed(m.data).body).payload
            if payload.__struct_config__.tag == type_:
                found.append(payload)
        return found


async def outcome(runtime: AgentRuntime, deadline: float = 10.0) -> Outcome:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        outcomes = await runtime.step(wait=0.05)
        if outcomes:
            return outcomes[0]
    raise AssertionError("no task came")


async def test_the_tool_loop_journals_every_model_and_tool_call(tmp_path: Path) -> None:
    Counter.calls.clear()
    s = Setup(tmp_path)
    runtime = await s.start(Counter())
    (registered,) = s.payloads("agent_registered")
    assert [pin.name for pin in registered.tools] == ["count_words"]
    await s.assign("counter")
    assert (await outcome(runtime)).status == "succeeded"
    (result,) = s.payloads("result")
    assert result.output == "three words"
    assert Counter.calls == ["t1.t1"]  # the call id is the tool's idempotency key
    requested = s.payloads("model_call_requested")
    assert [r.call_index for r in requested] == [1, 2]
    assert requested[0].messages[0] == {"role": "system", "content": Counter.system_prompt}
    # only what is new since the first call's answer (which its completion holds): the tool's
    assert [m["role"] for m in requested[1].messages] == ["tool"]
    (tool_done,) = s.payloads("tool_call_completed")
    assert (tool_done.tool, tool_done.status, tool_done.result) == ("count_words", "ok", 3)
    rows = await s.query("SELECT call_index, status FROM model_calls ORDER BY call_index")
    assert rows == [{"call_index": 1, "status": "ok"}, {"call_index": 2, "status": "ok"}]
    assert (await s.query("SELECT tool, status FROM tool_calls")) == [
        {"tool": "count_words", "status": "ok"}
    ]
    usage = result.usage
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens > 0


async def test_a_retry_answers_its_calls_from_the_journal(tmp_path: Path) -> None:
    Counter.calls.clear()
    Flaky.attempts = 0
    s = Setup(tmp_path)
    runtime = await s.start(Flaky())
    await s.assign("flaky")
    assert (await outcome(runtime)).status == "retrying"
    assert (await outcome(runtime)).status == "succeeded"
    assert Flaky.attempts == 2
    assert Counter.calls == ["t1.t1"]  # the tool ran once, for both attempts
    assert len(s.payloads("tool_call_requested")) == 1
    assert len(s.payloads("model_call_requested")) == 2  # not asked again on the retry
    (result,) = s.payloads("result")
    assert result.usage.prompt_tokens > 0  # the journaled calls' cost is still the task's


async def test_a_tool_outside_the_credential_is_refused_and_not_journaled(
    tmp_path: Path,
) -> None:
    Counter.calls.clear()
    s = Setup(tmp_path)
    runtime = await s.start(Counter(), tools=[])
    await s.assign("counter")
    assert (await outcome(runtime)).status == "succeeded"
    assert Counter.calls == []
    assert s.payloads("tool_call_requested") == []
    second = s.payloads("model_call_requested")[1]
    told = [m for m in second.messages if m["role"] == "tool"]
    assert "not granted" in told[0]["content"]
    assert (await s.query("SELECT count(*) AS n FROM quarantine")) == [{"n": 0}]


class Thrifty(Counter):
    role = "thrifty"
    budget_tokens = 40


async def test_a_model_call_that_would_cross_the_budget_is_not_made(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    runtime = await s.start(Thrifty())
    await s.assign("thrifty", text="count " * 10)
    assert (await outcome(runtime)).status == "escalated"
    assert runtime.spent_tokens <= Thrifty.budget_tokens
    assert s.payloads("model_call_requested") == []  # priced above what is left: not made
    (error,) = s.payloads("error")
    assert error.code == "budget_exceeded"
    assert "token budget" in error.message


class Verdict(msgspec.Struct):
    ok: bool
    reason: str


class Judge(LLMAgent):
    role = "judge"
    output = Verdict
    offline_script = ({"content": "yes, fine"}, {"content": '{"ok": true, "reason": "fine"}'})


class Stubborn(Judge):
    role = "stubborn"
    offline_script = ({"content": "yes"}, {"content": "yes!"}, {"content": "YES"})


async def test_structured_output_is_checked_and_corrected(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    runtime = await s.start(Judge(), tools=[])
    await s.assign("judge")
    assert (await outcome(runtime)).status == "succeeded"
    (result,) = s.payloads("result")
    assert result.output == {"ok": True, "reason": "fine"}
    second = s.payloads("model_call_requested")[1]
    assert "not valid" in second.messages[-1]["content"]  # the model was told why


async def test_structured_output_that_never_conforms_fails_cleanly(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    runtime = await s.start(Stubborn(), tools=[])
    await s.assign("stubborn")
    assert (await outcome(runtime)).status == "escalated"
    (error,) = s.payloads("error")
    assert error.code == "invalid_output"
    assert len(s.payloads("model_call_requested")) == 3


async def test_an_unknown_tool_name_fails_the_task_clearly() -> None:
    class Asks(Agent):
        role = "asks"

        @on(TaskAssignment)
        async def run(self, task: TaskAssignment, ctx: Context) -> Any:
            return (await ctx.chat("hi", tools=["nope"])).text

    s = Setup(Path("/nonexistent"))
    runtime = await s.start(Asks(), tools=[])
    await s.assign("asks")
    assert (await outcome(runtime)).status == "escalated"
    (error,) = s.payloads("error")
    assert error.code == "unknown_tool"
    assert "has no tools: nope" in error.message


class Wordy(LLMAgent):
    role = "wordy"
    concurrency = 2
    budget_tokens = 150
    offline_script = ({"content": " ".join(["word"] * 100)},)
    refused: ClassVar[list[str]] = []

    @on(TaskAssignment)
    async def answer(self, task: TaskAssignment, ctx: Context) -> Any:
        try:
            return await super().answer(task, ctx)
        except TaskError as exc:
            Wordy.refused.append(exc.code)  # seen at once, not when the batch settles
            raise


class Held:
    """A model that answers only when the test lets it go, so two calls can overlap."""

    def __init__(self, inner: OfflineModel) -> None:
        self.inner = inner
        self.in_flight = 0
        self.go = asyncio.Event()

    @property
    def name(self) -> str:
        return self.inner.name

    async def chat(self, request: ChatRequest, *, on_text: TextSink | None = None) -> Reply:
        self.in_flight += 1
        await self.go.wait()
        return await self.inner.chat(request, on_text=on_text)


async def test_calls_running_at_once_do_not_cross_the_budget_together(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    script = parse_script(msgspec.json.encode(list(Wordy.offline_script)))
    model = Held(OfflineModel("offline-default", script))
    runtime = await s.start(Wordy(), tools=[], model=model)
    await s.assign("wordy", "t1", "say much")
    await s.assign("wordy", "t2", "say much")
    stepping = asyncio.ensure_future(runtime.step(wait=1.0))  # both tasks, run at once
    # Held, the first call has its allowance: the other task may not be promised it too.
    Wordy.refused.clear()
    await until(lambda: model.in_flight == 2 or bool(Wordy.refused), timeout=10)
    model.go.set()
    outcomes = await stepping
    assert model.in_flight == 1
    assert sorted(o.status for o in outcomes) == ["escalated", "succeeded"]
    (error,) = s.payloads("error")
    assert error.code == "budget_exceeded"
    assert runtime.spent_tokens <= Wordy.budget_tokens
