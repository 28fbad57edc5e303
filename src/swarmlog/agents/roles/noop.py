"""A no-op agent: answers every task with nothing (benchmarks and smoke tests)."""

from __future__ import annotations

from swarmlog.agents.api import Agent, Context, on
from swarmlog.schemas.payloads import TaskAssignment

__all__ = ["NoOp"]


class NoOp(Agent):
    """Role ``noop``, capability ``noop``: returns ``None`` at once."""

    role = "noop"
    capabilities = ("noop",)
    concurrency = 64

    @on(TaskAssignment)
    async def nothing(self, task: TaskAssignment, ctx: Context) -> None:
        return None
