"""A test agent (imported by daemons as ``tests.e2e.picky``): role ``picky``, capability
``check``; refuses, for good, any input that mentions "bad"; ``work_ms`` makes it slow."""

from __future__ import annotations

import asyncio
import json

from swarmlog.agents.api import Agent, Context, TaskError, on
from swarmlog.schemas.payloads import TaskAssignment


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
