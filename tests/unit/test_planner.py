"""The LLM planner on the in-memory bus: the plan it asks the model for (structured output whose
schema lists the usable capabilities), the supervisor's checks applied to its answer, a refused
plan sent back with the reason and corrected, a plan refused every time failing cleanly, a
revision that keeps the steps done, and capabilities read from the projection."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from test_ai_runtime import Setup, identity, outcome

from fakes import RUNNING
from swarmlog import LLMPlanner
from swarmlog.agents.api import Agent, Context, on
from swarmlog.agents.llm.messages import ChatRequest, Message, Reply, TextSink
from swarmlog.agents.llm.offline import OfflineModel, parse_script
from swarmlog.agents.policy.planning import Plan, decode_plan
from swarmlog.agents.policy.supervision import supervise
from swarmlog.agents.policy.workflow_view import Revise, SetPlan, StepState, WorkflowView
from swarmlog.agents.publisher import Publisher
from swarmlog.agents.runtime import AgentRuntime
from swarmlog.schemas.credentials import Credential
from swarmlog.schemas.payloads import TaskAssignment
from swarmlog.schemas.signing import issue_credential

pytestmark = pytest.mark.usefixtures("close_runtimes")

CAPS = ["check", "plan", "review", "write"]
ASK = {"goal": "check then write", "input": {"text": "hi"}, "capabilities": CAPS}


class Recording:
    """The offline model (scripted or not), keeping the schema and messages of every call."""

    def __init__(self, *script: Mapping[str, Any]) -> None:
        self.model = OfflineModel("offline-large", parse_script(json.dumps(script)))
        self.schemas: list[Mapping[str, Any] | None] = []
        self.calls: list[Sequence[Message]] = []

    @property
    def name(self) -> str:
        return self.model.name

    async def chat(self, request: ChatRequest, *, on_text: TextSink | None = None) -> Reply:
        self.schemas.append(request.output_schema)
        self.calls.append(list(request.messages))
        return await self.model.chat(request)


def plan_text(*steps: tuple[str, str, list[str]]) -> dict[str, str]:
    """A scripted answer: a plan of (id, capability, depends_on) steps, as JSON text."""
    body = [{"id": i, "capability": c, "depends_on": d} for i, c, d in steps]
    return {"content": json.dumps({"steps": body})}


async def start(s: Setup, agent: Agent, model: Recording | None = None) -> AgentRuntime:
    """A replica of ``agent`` with a credential for its role and capabilities."""
    worker = identity(f"{agent.role}-1")
    credential = Credential(
        agent_id=worker.agent_id,
        role=agent.role,
        public_key=worker.public_key,
        issuer=s.operator.public_key,
        issued_at=1,
        capabilities=list(agent.capabilities),
    )
    issued = issue_credential(s.operator, credential)
    await s.ops.publish(issued)
    publisher = Publisher(s.log, worker, "ai")
    runtime = AgentRuntime(agent, s.log, publisher, credential=issued, query=s.query, model=model)
    await runtime.start()
    RUNNING.append(runtime)
    return runtime


async def plan(
    tmp: Path, model: Recording, ask: Any = ASK, *, setup: Setup | None = None
) -> tuple[Setup, str, Any]:
    """Run one planner task with ``model``: the setup, the task's status and its output (or
    error)."""
    s = setup or Setup(tmp)
    runtime = await start(s, LLMPlanner(), model)
    task = TaskAssignment(task_id="wf-1--plan1", role=LLMPlanner.role, input=ask)
    await s.ops.publish(task, workflow_id="wf-1")
    done = await outcome(runtime)
    if done.status == "succeeded":
        (result,) = s.payloads("result")
        return s, done.status, result.output
    (error,) = s.payloads("error")
    return s, done.status, error


def supervisor_view(output: Any, plan: Plan | None = None, **tasks: StepState) -> WorkflowView:
    """The workflow as the supervisor sees it once the planner answered ``output``."""
    return WorkflowView(
        "wf-1",
        "supervisor",
        {"goal": ASK["goal"], "input": ASK["input"]},
        plan,
        {"wf-1--plan1": StepState("succeeded", output), **tasks},
        capabilities=frozenset(CAPS),
    )


async def test_offline_the_schema_instance_is_a_plan_the_supervisor_runs(tmp_path: Path) -> None:
    model = Recording()
    ask = {**ASK, "reviewer": "review"}
    _, status, output = await plan(tmp_path, model, ask)
    assert status == "succeeded"
    # the first capability left for work: not plan (the planner's own) nor review (the reviewer)
    assert output == {"steps": [{"id": "x", "capability": "check"}]}
    (schema,) = model.schemas
    assert schema is not None
    assert schema["$defs"]["Step"]["properties"]["capability"]["enum"] == ["check", "write"]
    assert schema["properties"]["steps"]["maxItems"] == LLMPlanner.max_steps
    system, user = model.calls[0]
    assert "- check\n  - write\n" in system.content
    assert "No cycles" in system.content
    assert user.content.startswith('Goal: check then write\nThe goal\'s data: {"text":"hi"}')
    (action,) = supervise(supervisor_view(output))
    assert isinstance(action, SetPlan)
    assert [(s.id, s.capability) for s in action.plan.steps] == [("x", "check")]


async def test_a_refused_plan_goes_back_with_the_reason_and_is_corrected(tmp_path: Path) -> None:
    cyclic = plan_text(("a", "check", ["b"]), ("b", "write", ["a"]))
    fixed = plan_text(("a", "check", []), ("b", "write", ["a"]))
    model = Recording(cyclic, fixed)
    _, status, output = await plan(tmp_path, model)
    assert status == "succeeded"
    assert [(s["id"], s.get("depends_on", [])) for s in output["steps"]] == [
        ("a", []),
        ("b", ["a"]),
    ]
    assert len(model.calls) == 2
    told = model.calls[1][-1]
    assert told.role == "user"
    assert "refused (cycle): the plan has a cycle: a -> b -> a" in told.content
    assert isinstance(supervise(supervisor_view(output))[0], SetPlan)


async def test_a_plan_refused_every_time_fails_cleanly_with_the_reason(tmp_path: Path) -> None:
    dangling = plan_text(("a", "check", ["nowhere"]))
    model = Recording(dangling, dangling, dangling)
    s, status, error = await plan(tmp_path, model)
    assert status == "escalated"  # not retried: the journal would give the same answers
    assert error.code == "plan_refused"
    assert "refused 3 times" in error.message
    assert "(unknown_dependency): step 'a' depends on 'nowhere'" in error.message
    assert len(model.calls) == 1 + LLMPlanner.plan_retries
    assert len(s.payloads("model_call_requested")) == 3  # each call journaled


async def test_a_revision_keeps_the_steps_done_and_replans_the_rest(tmp_path: Path) -> None:
    steps = [
        {"id": "a", "capability": "check"},
        {"id": "b", "capability": "write", "depends_on": ["a"]},
    ]
    revise = {
        "plan": {"steps": steps},
        "done": {"a": {"checked": "hi"}},
        "failed": {"step": "b", "why": "the writer gave up"},
    }
    model = Recording(plan_text(("b2", "write", ["a"])))
    _, status, output = await plan(tmp_path, model, {**ASK, "revise": revise})
    assert status == "succeeded"
    assert [s["id"] for s in output["steps"]] == ["a", "b2"]
    user = model.calls[0][1].content
    assert '  - a: {"checked":"hi"}' in user
    assert "step b: the writer gave up" in user
    done = StepState("succeeded", {"checked": "hi"})
    failed = StepState("escalated", error="gave up")
    view = WorkflowView(
        "wf-1",
        "supervisor",
        {"goal": "g"},
        Plan(steps=decode_plan({"steps": steps}).steps, planned_by="wf-1--plan1"),
        {
            "wf-1--plan1": StepState("succeeded", revise["plan"]),
            "wf-1-a": done,
            "wf-1-b": failed,
            "wf-1--plan2": StepState("succeeded", output),
        },
        capabilities=frozenset(CAPS),
    )
    (action,) = supervise(view)
    assert isinstance(action, Revise)
    assert [s.id for s in action.plan.steps] == ["a", "b2"]


class Writer(Agent):
    role = "writer"
    capabilities = ("write",)

    @on(TaskAssignment)
    async def write(self, task: TaskAssignment, ctx: Context) -> Any:
        return "written"


async def test_without_capabilities_in_its_task_it_reads_the_registered_agents(
    tmp_path: Path,
) -> None:
    s = Setup(tmp_path)
    await start(s, Writer())
    _, status, output = await plan(tmp_path, Recording(), {"goal": "write it"}, setup=s)
    assert status == "succeeded", output
    assert output == {"steps": [{"id": "x", "capability": "write"}]}
