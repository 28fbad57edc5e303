"""A test agent (imported by daemons as ``tests.e2e.picky``): role ``picky``, capability
``check``; refuses, for good, any input that mentions "bad"; ``work_ms`` makes it slow."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from swarmlog.agents.api import Agent, Context, TaskError, on
from swarmlog.agents.policy.retry import RetryPolicy
from swarmlog.schemas.payloads import ClarificationRequest, TaskAssignment, TaskOffered


class Picky(Agent):
    role = "picky"
    capabilities = ("check",)

    @on(TaskAssignment)
    async def check(self, task: TaskAssignment, ctx: Context) -> object:
        text = json.dumps(task.input).lower()
        if "bad" in text:
            raise TaskError("rejected", "the input is bad", retryable=False)
        if isinstance(task.input, dict) and task.input.get("work_ms"):
            await asyncio.sleep(int(task.input["work_ms"]) / 1000)  # stands in for real work
        return {"checked": task.input}


class Splitter(Agent):
    """A swarm agent (capability ``split``): a list of items is split in two halves posted back
    as new swarm tasks; a single item is a leaf."""

    role = "splitter"
    capabilities = ("split",)
    swarm = True

    @on(TaskAssignment)
    async def split(self, task: TaskAssignment, ctx: Context) -> object:
        items = list(task.input["items"])
        if len(items) == 1:
            return {"leaf": items[0]}
        half = len(items) // 2
        for suffix, part in (("a", items[:half]), ("b", items[half:])):
            await ctx.emit(
                TaskOffered(
                    task_id=f"{task.task_id}{suffix}",
                    capability="split",
                    mode="swarm",
                    input={"items": part},
                    parent_task_id=task.task_id,
                )
            )
        return {"split": len(items)}


class Broken(Agent):
    """An agent that cannot start: `agent start --detach` must say so, naming the log."""

    role = "broken"
    capabilities = ("nothing",)

    def __init__(self) -> None:
        raise RuntimeError("this agent refuses to start")


class PuppetPlanner(Agent):
    """A planner (capability ``plan``) that answers with the plans the goal's input carries:
    ``plan`` first, ``fixed`` when a plan is sent back, ``revision`` when asked to revise."""

    role = "puppet-planner"
    capabilities = ("plan",)

    @on(TaskAssignment)
    async def plan(self, task: TaskAssignment, ctx: Context) -> object:
        given = task.input["input"]
        if "revise" in task.input:
            return given["revision"]
        if "rejected" in task.input:
            return given.get("fixed", given["plan"])
        return given["plan"]


class Stubborn(Agent):
    """Role ``stubborn`` (capability ``ask``): a task asks the other replica a question, and a
    replica answers a question only once it has asked its own and that is settled. Two of them,
    each with a task, wait on each other forever: a deadlock, unless the watchdog breaks it."""

    role = "stubborn"
    capabilities = ("ask",)
    retry = RetryPolicy(max_attempts=3, initial_delay=0.2, max_delay=1.0)

    def __init__(self) -> None:
        # Not set until its own first question is settled: "you first" holds from the start,
        # so two replicas with a task each deadlock however their tasks are timed.
        self._settled = asyncio.Event()

    @on(TaskAssignment)
    async def ask(self, task: TaskAssignment, ctx: Context) -> object:
        other = "stubborn-2" if ctx.agent_id == "stubborn-1" else "stubborn-1"
        self._settled.clear()
        try:
            answer = await ctx.ask(other, f"what do you know about {task.input}?", timeout=120)
        finally:
            self._settled.set()
        return {"asked": other, "answer": answer}

    @on(ClarificationRequest)
    async def answer(self, request: ClarificationRequest, ctx: Context) -> str:
        await self._settled.wait()  # "you first"
        return f"{ctx.agent_id} knows little"


class Flaky(Agent):
    """Role ``flaky`` (capability ``convert``, the cheap tier): fails while the file named by its
    input's ``sick_file`` exists; its failed work goes to ``backup``."""

    role = "flaky"
    capabilities = ("convert",)
    tier = "small"
    retry = RetryPolicy(max_attempts=1)
    fallback_role = "backup"

    @on(TaskAssignment)
    async def convert(self, task: TaskAssignment, ctx: Context) -> object:
        if await asyncio.to_thread(Path(task.input["sick_file"]).exists):
            raise TaskError("sick", "a dependency of flaky is down")
        return {"by": "flaky"}


class Backup(Agent):
    """Role ``backup`` (capability ``convert``, the expensive tier): always works."""

    role = "backup"
    capabilities = ("convert",)
    tier = "large"

    @on(TaskAssignment)
    async def convert(self, task: TaskAssignment, ctx: Context) -> object:
        return {"by": "backup"}


class Crasher(Agent):
    """Role ``crasher`` (capability ``crash``): its handler has a bug (it divides by zero), once."""

    role = "crasher"
    capabilities = ("crash",)
    retry = RetryPolicy(max_attempts=1)

    @on(TaskAssignment)
    async def crash(self, task: TaskAssignment, ctx: Context) -> object:
        return {"ratio": len(str(task.input)) / 0}
