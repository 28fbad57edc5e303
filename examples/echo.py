"""An example agent: upper-cases its input. Run it with

swarmlog agent start examples.echo:Echo --replicas 3 --detach

An input ``{"text": "...", "work_ms": 50}`` makes it take that long, as real work would; an
``{"echo": ...}`` (its own output, as in a pipeline of echoes) is echoed again.
"""

from __future__ import annotations

import asyncio

from swarmlog import Agent, Context, TaskAssignment, on


class Echo(Agent):
    role = "echo"
    capabilities = ("text",)

    @on(TaskAssignment)
    async def echo(self, task: TaskAssignment, ctx: Context) -> object:
        text, work_ms = task.input, 0
        if isinstance(task.input, dict):
            text = task.input.get("text", task.input.get("echo", ""))
            work_ms = int(task.input.get("work_ms", 0))
        if work_ms > 0:
            await asyncio.sleep(min(work_ms, 600_000) / 1000)  # stands in for a model call
        ctx.usage("offline", prompt_tokens=len(str(text)), completion_tokens=1)
        return {"echo": str(text).upper(), "by": ctx.agent_id}
