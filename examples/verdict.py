"""An agent that asks for structured output: the model's answer is decoded into ``Verdict`` and
checked, and one that does not conform is sent back with the reason (twice at most; then the task
fails with ``invalid_output``). The answer's text streams to the agent's log as it comes. Run it
with

    swarmlog agent start examples.verdict:Reviewer --detach
    swarmlog submit pipeline --stage review --data '"def add(a, b): return a - b"' --wait

On the offline model (no model configured for its tier) the answer is a minimal valid instance of
the schema; with a real model it is the model's judgement.
"""

from __future__ import annotations

import logging

import msgspec

from swarmlog import Agent, Context, Message, TaskAssignment, on

log = logging.getLogger(__name__)


class Verdict(msgspec.Struct):
    approve: bool
    reasons: list[str]


class Reviewer(Agent):
    role = "reviewer"
    capabilities = ("review",)

    @on(TaskAssignment)
    async def review(self, task: TaskAssignment, ctx: Context) -> object:
        async def show(text: str) -> None:
            log.info("%s: %s", task.task_id, text)  # partial text: never into the log of events

        conversation = [
            Message(role="system", content="You review code. Be strict."),
            Message(role="user", content=f"Review this change:\n{task.input}"),
        ]
        answer = await ctx.chat(conversation, output=Verdict, stream=show)
        verdict: Verdict = answer.output
        return {"approve": verdict.approve, "reasons": verdict.reasons}
