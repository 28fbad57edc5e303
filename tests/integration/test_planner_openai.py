"""The LLM planner against a real OpenAI-compatible server process (``openai_server.py``) and a
real nats-server: the plan is asked for as JSON-schema structured output over the wire, the
answer comes back as a chat completion, is decoded, checked (a cyclic plan is sent back with
the reason) and becomes the task's result, every call journaled."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from swarmkit import Swarm, seed
from test_openai_chat import KEY, ChatServer

from swarmlog import LLMPlanner
from swarmlog.agents.llm import model_from_env
from swarmlog.agents.runtime import AgentRuntime, Outcome
from swarmlog.projections.projector import Projector
from swarmlog.projections.store import ProjectionStore
from swarmlog.schemas.credentials import Credential
from swarmlog.schemas.payloads import TaskAssignment
from swarmlog.schemas.signing import Identity, issue_credential

pytestmark = pytest.mark.integration

MODEL = "planner/qwen2.5-7b-instruct"
ASK = {
    "goal": "check the text, then write it up",
    "input": {"text": "hello"},
    "capabilities": ["check", "plan", "synthesize", "write"],
    "reviewer": None,
    "synthesizer": "synthesize",
}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ChatServer]:
    chat = ChatServer(tmp_path)
    try:
        yield chat
    finally:
        chat.stop()


def answer(*steps: tuple[str, str, list[str]]) -> dict[str, object]:
    """A completion whose content is a plan of (id, capability, depends_on) steps."""
    plan = {"steps": [{"id": i, "capability": c, "depends_on": d} for i, c, d in steps]}
    return {"content": json.dumps(plan), "usage": {"prompt_tokens": 120, "completion_tokens": 40}}


async def outcome(runtime: AgentRuntime) -> Outcome:
    end = time.monotonic() + 30
    while time.monotonic() < end:
        outcomes = await runtime.step(wait=0.2)
        if outcomes:
            return outcomes[0]
    raise AssertionError("no task came")


async def test_the_planner_gets_its_plan_as_structured_output_over_the_wire(
    swarm: Swarm, server: ChatServer, tmp_path: Path
) -> None:
    server.answer(
        MODEL,
        answer(("check", "check", ["write"]), ("write", "write", ["check"])),  # a cycle
        answer(("check", "check", []), ("write", "write", ["check"])),
    )
    env = {"SWARMLOG_MODEL_LARGE": f"openai:{server.url}#{MODEL}", "SWARMLOG_MODEL_LARGE_KEY": KEY}
    planner = Identity.from_seed("llm-planner-1", seed(swarm.namespace + "planner"))
    ops = swarm.publisher(swarm.operator)
    credential = Credential(
        agent_id=planner.agent_id,
        role=LLMPlanner.role,
        public_key=planner.public_key,
        issuer=swarm.operator.public_key,
        issued_at=1,
        capabilities=list(LLMPlanner.capabilities),
    )
    issued = issue_credential(swarm.operator, credential)
    await ops.publish(issued)
    runtime = AgentRuntime(
        LLMPlanner(),
        swarm.log,
        swarm.publisher(planner),
        model=model_from_env("large", env),
        credential=issued,
    )
    await runtime.start()
    try:
        task = TaskAssignment(task_id="wf-1--plan1", role=LLMPlanner.role, input=ASK)
        await ops.publish(task, workflow_id="wf-1")
        done = await outcome(runtime)
    finally:
        await runtime.close()
    assert done.status == "succeeded"

    first, second = (r["body"] for r in server.requests(MODEL))
    assert first["response_format"]["type"] == "json_schema"
    schema = first["response_format"]["json_schema"]["schema"]
    # only what a step may use: not the planner's own capability nor the synthesizer's
    assert schema["$defs"]["Step"]["properties"]["capability"]["enum"] == ["check", "write"]
    assert first["messages"][0]["role"] == "system"
    assert "Goal: check the text, then write it up" in first["messages"][1]["content"]
    told = second["messages"][-1]
    assert told["role"] == "user"
    assert "refused (cycle): the plan has a cycle: check -> write -> check" in told["content"]
    assert second["messages"][-2]["role"] == "assistant"  # the refused answer, sent back

    store = ProjectionStore(tmp_path / "p.duckdb")
    projector = Projector(
        swarm.log, store, namespace=swarm.namespace, operator_key=swarm.operator.public_key
    )
    try:
        await projector.run(follow=False)
        ((status, output),) = store.rows("SELECT status, output FROM tasks")
        calls = store.rows("SELECT call_index, model, status FROM model_calls ORDER BY 1")
        quarantined = store.rows("SELECT count(*) FROM quarantine")
    finally:
        projector.close()
        store.close()
    assert status == "succeeded"
    assert json.loads(output) == {
        "steps": [
            {"id": "check", "capability": "check"},
            {"id": "write", "capability": "write", "depends_on": ["check"]},
        ]
    }
    assert calls == [(1, MODEL, "ok"), (2, MODEL, "ok")]
    assert quarantined == [(0,)]
