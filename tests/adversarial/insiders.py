"""Roles of the trust-boundary test (imported by daemons as ``tests.adversarial.insiders``).

Internal-only work moves on from two roles that cannot do it: ``keeper`` hands it to ``web``,
a role with an external replica; ``vault`` hands it to ``inner`` (internal), which delegates a
``lookup`` subtask that the cheap external role ``web`` or the dear internal role ``library`` can
do. Every role that does work says who did it and what it saw.
"""

from __future__ import annotations

from swarmlog.agents.api import Agent, Context, TaskError, on
from swarmlog.agents.policy.retry import RetryPolicy
from swarmlog.schemas.payloads import TaskAssignment


class _Down(Agent):
    capabilities = ("ledger",)
    retry = RetryPolicy(max_attempts=1)

    @on(TaskAssignment)
    async def run(self, task: TaskAssignment, ctx: Context) -> object:
        raise TaskError("down", f"{self.role} cannot do it now")  # retryable: handed over


class Keeper(_Down):
    role = "keeper"
    fallback_role = "web"


class Vault(_Down):
    role = "vault"
    fallback_role = "inner"


class Inner(Agent):
    role = "inner"
    capabilities = ("ledger",)

    @on(TaskAssignment)
    async def run(self, task: TaskAssignment, ctx: Context) -> object:
        found = await ctx.delegate("lookup", task.input, timeout=60)
        return {"by": ctx.agent_id, "lookup": found}


class Web(Agent):
    """Started with ``--trust external``, and cheap: the router's first choice for a lookup
    anyone may see; it must never see internal-only work."""

    role = "web"
    capabilities = ("lookup",)
    tier = "small"

    @on(TaskAssignment)
    async def run(self, task: TaskAssignment, ctx: Context) -> object:
        return {"by": ctx.agent_id, "saw": task.input}


class Library(Web):
    role = "library"
    tier = "large"
