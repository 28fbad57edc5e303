"""A ready agent for AI work: a role, a system prompt and tools are all it needs.

::

    class Researcher(LLMAgent):
        role = "researcher"
        capabilities = ("research",)
        system_prompt = "Answer with the current time where it matters."
        mcp_servers = (MCPServer(name="time", command=("mcp-server-time",)),)

        @tool
        def word_count(self, text: str) -> int:
            "How many words a text has."
            return len(text.split())

Each task's input (text, or JSON shown to the model as text) is the user message; the model of
the agent's tier answers through the tool loop (:meth:`~swarmlog.agents.api.Context.run`), and
its last answer is the task's output: the text, or with ``output`` set, the structured output.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from swarmlog.agents.api import Agent, Context, Output, on
from swarmlog.schemas.payloads import TaskAssignment

__all__ = ["LLMAgent"]


class LLMAgent(Agent):
    """An agent whose handler is the model's tool loop; set ``role``, ``system_prompt`` and
    its tools (``@tool`` methods, ``mcp_servers``)."""

    system_prompt: ClassVar[str] = ""
    output: ClassVar[Output] = None
    """Structured output of every task (a type or a JSON Schema); ``None``: text."""
    max_turns: ClassVar[int] = 8
    """Model turns a task may take before it fails with ``turn_limit``."""

    @on(TaskAssignment)
    async def answer(self, task: TaskAssignment, ctx: Context) -> Any:
        """The model's answer to the task's input, after whatever tool calls it makes."""
        prompt = task.input if isinstance(task.input, str) else _as_text(task.input)
        answer = await ctx.run(
            prompt, system=self.system_prompt, output=self.output, max_turns=self.max_turns
        )
        if self.output is None:
            return answer.text
        return msgspec.to_builtins(answer.output)


def _as_text(value: Any) -> str:
    return msgspec.json.encode(value).decode()
