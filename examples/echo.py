"""An example agent: upper-cases its input. Run it with

swarmlog agent start examples.echo:Echo --replicas 3 --detach
"""

from __future__ import annotations

from swarmlog.agents.api import Agent, Context, on
from swarmlog.schemas.payloads import TaskAssignment


class Echo(Agent):
    role = "echo"
    capabilities = ("text",)

    @on(TaskAssignment)
    async def echo(self, task: TaskAssignment, ctx: Context) -> object:
        ctx.usage("offline", prompt_tokens=len(str(task.input)), completion_tokens=1)
        return {"echo": str(task.input).upper(), "by": ctx.agent_id}
