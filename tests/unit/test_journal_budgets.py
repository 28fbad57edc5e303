"""Budgets charged by the call journal's fold: a model call's tokens count for its agent and its
workflow when the call is made, so an attempt that fails, is killed or runs out of budget shows
what it spent, and a result's usage adds only what the journal did not charge already. On the
reference fold, and through the runtime on the DuckDB projector (which reads only the rows an
event declares it touches)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from test_ai_runtime import Counter, Flaky, Setup, outcome
from test_authority import ECHO_1, ECHO_2, ROUTER, WRITER
from test_journal_events import granted_swarm, model_completed, model_requested
from test_verify import NS, OPERATOR, Projection

from swarmlog import LLMAgent, tool
from swarmlog.bus.memory import MemoryLog
from swarmlog.bus.ports import StoredMessage
from swarmlog.projections.projector import Projector
from swarmlog.projections.store import ProjectionStore
from swarmlog.projections.verify import touches, touches_then
from swarmlog.schemas.payloads import (
    Error,
    Result,
    TaskAssignment,
    TaskOffered,
    TokenUsage,
    WorkflowSubmitted,
)

ROOM = 600


def spent(p: Projection) -> dict[tuple[str, str], Any]:
    return {key: row["used_tokens"] for key, row in p.state.rows["budgets"].items()}


def test_model_calls_are_charged_when_made_and_a_result_adds_only_the_rest() -> None:
    p = granted_swarm()
    wf = {"workflow_id": "wf1"}
    assert p.emit(ECHO_1, model_requested(1), **wf) is None
    assert p.emit(ECHO_1, model_completed(1), **wf) is None  # 12 + 3 tokens
    # The attempt fails: no result, and what it spent is in the budgets all the same.
    assert p.emit(ECHO_1, Error(task_id="t1", code="boom", message="died"), **wf) is None
    assert spent(p) == {("agent", "echo-1"): 15, ("workflow", "wf1"): 15}

    # Another replica retries: the first call comes from the journal, the second is made.
    assert p.emit(ECHO_2, model_requested(2), **wf) is None
    assert p.emit(ECHO_2, model_completed(2), **wf) is None
    # Its usage counts both calls (30) and 5 tokens its handler recorded itself.
    usage = TokenUsage(model="offline", prompt_tokens=27, completion_tokens=8)
    assert p.emit(ECHO_2, Result(task_id="t1", output="ok", usage=usage), **wf) is None
    assert spent(p) == {
        ("agent", "echo-1"): 15,
        ("agent", "echo-2"): 15 + 5,
        ("workflow", "wf1"): 35,
    }


def test_a_failed_call_and_a_result_without_journal_charge_as_before() -> None:
    p = granted_swarm()
    assert p.emit(ECHO_1, model_requested(1)) is None
    failed = model_completed(1, "error", error="500", usage=None)
    assert p.emit(ECHO_1, failed) is None
    assert spent(p) == {}
    usage = TokenUsage(model="offline", prompt_tokens=4, completion_tokens=2)
    assert p.emit(ECHO_1, Result(task_id="t1", output="ok", usage=usage)) is None
    assert spent(p) == {("agent", "echo-1"): 6}


async def budget_rows(s: Setup) -> dict[tuple[str, str], int]:
    rows = await s.query("SELECT scope, scope_id, used_tokens FROM budgets")
    return {(r["scope"], r["scope_id"]): r["used_tokens"] for r in rows}


async def call_tokens(s: Setup) -> int:
    rows = await s.query("SELECT sum(prompt_tokens + completion_tokens) AS n FROM model_calls")
    return int(rows[0]["n"])


class Roomier(LLMAgent):
    """Room for the first model call of the tool loop (priced by its bytes, about 250), not the
    second, which carries the tool's long answer."""

    role = "roomier"
    budget_tokens = ROOM
    offline_script = ({"tool_calls": [{"name": "long_read", "arguments": {}}]}, {"content": "ok"})

    @tool
    def long_read(self) -> str:
        """A long text."""
        return "word " * 200


@pytest.mark.usefixtures("close_runtimes")
async def test_a_task_stopped_by_its_budget_shows_what_it_spent(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    runtime = await s.start(Roomier(), tools=["long_read"])
    await s.assign("roomier", text="count " * 10)
    assert (await outcome(runtime)).status == "escalated"
    spent = await call_tokens(s)
    assert spent == runtime.spent_tokens > 0
    (error,) = s.payloads("error")
    assert error.code == "budget_exceeded"
    assert await budget_rows(s) == {("agent", "roomier-1"): spent, ("workflow", "wf"): spent}


@pytest.mark.usefixtures("close_runtimes")
async def test_a_retried_task_is_charged_each_call_once(tmp_path: Path) -> None:
    Counter.calls.clear()
    Flaky.attempts = 0
    s = Setup(tmp_path)
    runtime = await s.start(Flaky())
    await s.assign("flaky")
    assert (await outcome(runtime)).status == "retrying"
    assert (await outcome(runtime)).status == "succeeded"
    spent = await call_tokens(s)
    (result,) = s.payloads("result")
    assert result.usage.prompt_tokens + result.usage.completion_tokens == spent
    assert await budget_rows(s) == {("agent", "flaky-1"): spent, ("workflow", "wf"): spent}
    rows = await s.query("SELECT call_tokens FROM tasks WHERE task_id = 't1'")
    assert rows == [{"call_tokens": spent}]


def test_a_model_calls_answer_touches_the_budgets_it_charges() -> None:
    # The live projector preloads only these rows: a budget row it does not name is folded as
    # a fresh one, and what was spent before is lost.
    envelope = Projection().seal(ECHO_1, model_completed(1), workflow_id="wf1").envelope
    keys = touches(envelope)
    for needed in (
        ("budgets", ("agent", "echo-1")),
        ("budgets", ("workflow", "wf1")),
        ("tasks", ("t1",)),
    ):
        assert needed in keys


def test_reservations_of_a_workflows_budget_are_admitted_in_log_order_and_given_back() -> None:
    p = granted_swarm()
    p.state.upsert("workflows", ("wf1",), budget_tokens=100)
    wf = {"workflow_id": "wf1"}

    def held() -> int:
        return int(p.state.rows["budgets"][("workflow", "wf1")]["reserved_tokens"] or 0)

    def reserve(agent: Any, index: int, tokens: int, **fields: Any) -> tuple[bool, int]:
        """Whether the call was admitted, and what the workflow's calls hold then."""
        asked = msgspec.structs.replace(model_requested(index), reserved_tokens=tokens)
        assert p.emit(agent, asked, **(fields or wf)) is None
        return bool(p.state.rows["model_calls"][("t1", index)]["admitted"]), held()

    assert reserve(ECHO_1, 1, 60) == (True, 60)
    assert reserve(ECHO_2, 2, 50) == (False, 60)  # 60 + 50 would cross 100: refused
    assert p.emit(ECHO_1, model_completed(1), **wf) is None  # answered: 15 used, 60 given back
    assert (held(), spent(p)[("workflow", "wf1")]) == (0, 15)
    assert reserve(ECHO_2, 2, 50) == (True, 50)  # asked again, now there is room
    assert reserve(ECHO_2, 2, 40) == (True, 40)  # the same call asked again holds anew
    assert reserve(ECHO_2, 3, 46) == (False, 40)  # 15 used + 40 held + 46 > 100
    assert reserve(ECHO_2, 4, 1, workflow_id="wf9") == (False, 40)  # no such workflow


def test_a_calls_answer_that_names_no_workflow_still_has_its_calls_budget_preloaded() -> None:
    # The answer gives back what its call holds of the call's workflow's budget, whatever
    # workflow (if any) its sender put on the envelope: the store loads that budget in a
    # second step, from the call's row, so the fold never writes it over as a fresh row.
    p = granted_swarm()
    p.state.upsert("workflows", ("wf1",), budget_tokens=100)
    asked = msgspec.structs.replace(model_requested(1), reserved_tokens=60)
    assert p.emit(ECHO_1, asked, workflow_id="wf1") is None
    envelope = p.seal(ECHO_1, model_completed(1)).envelope  # no workflow_id on it
    assert ("budgets", ("workflow", "wf1")) not in touches(envelope)
    assert ("budgets", ("workflow", "wf1")) in touches_then(p.state, envelope)


def test_an_answer_naming_no_workflow_leaves_the_workflows_budget_whole_on_duckdb(
    tmp_path: Path,
) -> None:
    # The same events, each its own batch, on the reference and on the DuckDB projector. The
    # answer names no workflow; the projector used to fold the workflow's budget as a fresh
    # row (it was not preloaded) and replace the stored one: what the workflow had spent gone.
    p = Projection()
    fed: list[StoredMessage] = []
    feed = p.feed

    def recording(message: StoredMessage) -> Any:
        fed.append(message)
        return feed(message)

    p.feed = recording  # type: ignore[method-assign]
    for agent, role in ((ECHO_1, "echo"), (ECHO_2, "echo"), (WRITER, "writer"), (ROUTER, "router")):
        p.issue(agent, role=role, capabilities=["text"])
    wf = {"workflow_id": "wf1"}
    assert p.emit(OPERATOR, WorkflowSubmitted(pattern="custom", budget_tokens=100), **wf) is None
    assert p.emit(OPERATOR, TaskOffered(task_id="t1", capability="text"), **wf) is None
    assert p.emit(ROUTER, TaskAssignment(task_id="t1", role="echo"), **wf) is None
    assert p.emit(ECHO_1, model_completed(1), **wf) is None  # the workflow spends 15
    asked = msgspec.structs.replace(model_requested(2), reserved_tokens=60)
    assert p.emit(ECHO_1, asked, **wf) is None
    assert p.emit(ECHO_1, model_completed(2)) is None  # no workflow_id: its 60 back, 15 spent
    expected = p.state.rows["budgets"][("workflow", "wf1")]
    assert (expected["used_tokens"], expected["reserved_tokens"]) == (15, 0)

    # The answer comes to a projector just started (nothing kept from earlier batches).
    for batch in (fed[:-1], fed[-1:]):
        with ProjectionStore(tmp_path / "p.duckdb") as store:
            projector = Projector(
                MemoryLog("SWARMLOG_T"), store, namespace=NS, operator_key=OPERATOR.public_key
            )
            try:
                for message in batch:
                    assert projector.process([message]).rejected == []
            finally:
                projector.close()
            rows = store.rows(
                "SELECT used_tokens, reserved_tokens FROM budgets"
                " WHERE scope = 'workflow' AND scope_id = 'wf1'"
            )
    assert rows == [(15, 0)]
