"""Conversations: what ``ctx.chat`` and ``ctx.run`` do with the model of the agent's tier.

``chat`` is one exchange: messages in, the assistant's message out, structured output decoded
and checked (an answer that does not conform is sent back with the reason, up to
:data:`OUTPUT_RETRIES` times, and then fails the task cleanly). ``run`` is the tool loop: the
model answers, the tools it calls are called, their results go back to it, until it answers
without calling a tool or the turn limit is reached. Every model and tool call goes through the
job's :class:`~swarmlog.agents.calls.CallJournal`, so each is a signed pair of events and none
is made twice for one task.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from swarmlog.agents.api import Exchange, Output, TaskError
from swarmlog.agents.calls import CallJournal
from swarmlog.agents.llm.messages import (
    Answer,
    ChatRequest,
    Message,
    Messages,
    Model,
    TextSink,
    ToolSpec,
)
from swarmlog.agents.policy.outputs import OutputRejected, decode_output, output_schema
from swarmlog.agents.tools import Toolbox, ToolOutcome

__all__ = ["OUTPUT_RETRIES", "Conversations", "as_messages", "tool_message"]

OUTPUT_RETRIES = 2
"""Times an answer that is not the structured output asked for is sent back to be corrected."""


def as_messages(messages: Messages, system: str = "") -> list[Message]:
    """``messages`` as a list of :class:`Message`, after a ``system`` message when given."""
    head = [Message(role="system", content=system)] if system else []
    if isinstance(messages, str):
        return [*head, Message(role="user", content=messages)]
    try:
        body = [m if isinstance(m, Message) else msgspec.convert(m, Message) for m in messages]
    except msgspec.ValidationError as exc:
        raise TaskError("bad_messages", f"not a conversation: {exc}", retryable=False) from None
    return [*head, *body]


class Conversations:
    """``chat`` and ``run`` for one job: its model, its tools, its journal and its grants."""

    def __init__(
        self,
        calls: CallJournal,
        model: Model,
        toolbox: Toolbox | None,
        *,
        granted_tools: Sequence[str] = (),
        granted_servers: Sequence[str] = (),
    ) -> None:
        self.calls = calls
        self.model = model
        self.toolbox = toolbox
        self._granted = (list(granted_tools), list(granted_servers))

    def specs(self, tools: Sequence[str] | None) -> list[ToolSpec]:
        """The specs of the agent's tools named in ``tools`` (``None``: every tool)."""
        if self.toolbox is None:
            if tools:
                named = ", ".join(tools)
                raise TaskError(
                    "unknown_tool", f"this agent has no tools: {named}", retryable=False
                )
            return []
        specs = self.toolbox.specs()
        if tools is None:
            return specs
        known = {s.name: s for s in specs}
        missing = [t for t in tools if t not in known]
        if missing:
            raise TaskError(
                "unknown_tool",
                f"this agent has no tool {', '.join(missing)}; it has {', '.join(known) or '-'}",
                retryable=False,
            )
        return [known[t] for t in tools]

    async def answer(self, exchange: Exchange, on_text: TextSink | None = None) -> Answer:
        """What ``ctx.chat`` (``max_turns`` 0) or ``ctx.run`` asks: the request built from the
        handler's arguments, then one exchange or the tool loop."""
        output = exchange.output
        request = ChatRequest(
            as_messages(exchange.messages, exchange.system),
            self.specs(exchange.tools),
            None if output is None else output_schema(output),
            exchange.max_tokens,
        )
        if exchange.max_turns == 0:
            return await self.chat(request, output, on_text)
        return await self.run(request, output, exchange.max_turns, on_text)

    async def chat(
        self, request: ChatRequest, output: Output = None, on_text: TextSink | None = None
    ) -> Answer:
        """One exchange; with ``output`` (whose schema ``request`` asks for), the answer
        decoded (and corrected if need be)."""
        conversation = list(request.messages)
        problem = ""
        for turn in range(1, OUTPUT_RETRIES + 2):
            asked = msgspec.structs.replace(request, messages=tuple(conversation))
            reply = await self.calls.model(self.model, asked, on_text=on_text)
            conversation.append(reply.message)
            if output is None or reply.message.tool_calls:
                return Answer(reply.message, messages=tuple(conversation), turns=turn)
            try:
                value = decode_output(reply.message.content, output)
            except OutputRejected as exc:
                problem = str(exc)
                conversation.append(
                    Message(
                        role="user",
                        content=f"That answer is not valid: {problem}. Answer again with only"
                        " JSON that matches the schema.",
                    )
                )
                continue
            return Answer(reply.message, value, tuple(conversation), turn)
        raise TaskError(
            "invalid_output",
            f"the model gave no valid structured output in {OUTPUT_RETRIES + 1} answers;"
            f" the last: {problem}",
            retryable=False,
        )

    async def call_tool(self, name: str, arguments: str) -> ToolOutcome:
        """Call one of the agent's tools (journaled, permissioned, pinned)."""
        if self.toolbox is None:
            return ToolOutcome(status="refused", error="this agent has no tools")
        granted_tools, granted_servers = self._granted
        return await self.calls.tool(
            self.toolbox,
            name,
            arguments,
            granted_tools=granted_tools,
            granted_servers=granted_servers,
        )

    async def run(
        self,
        request: ChatRequest,
        output: Output = None,
        max_turns: int = 8,
        on_text: TextSink | None = None,
    ) -> Answer:
        """The tool loop, until the model answers without calling a tool."""
        conversation = list(request.messages)
        turns = 0
        for _ in range(max_turns):
            asked = msgspec.structs.replace(request, messages=tuple(conversation))
            answer = await self.chat(asked, output, on_text)
            turns += answer.turns
            conversation = list(answer.messages)
            if not answer.tool_calls:
                return Answer(answer.message, answer.output, tuple(conversation), turns)
            for call in answer.tool_calls:
                outcome = await self.call_tool(call.name, call.arguments)
                conversation.append(
                    Message(role="tool", tool_call_id=call.id, content=tool_message(outcome))
                )
        raise TaskError(
            "turn_limit",
            f"the model was still calling tools after {max_turns} turns; raise max_turns or"
            " give it a clearer task",
            retryable=False,
        )


def tool_message(outcome: ToolOutcome) -> str:
    """What the model is told a tool call gave: its result as JSON, or why it failed."""
    if outcome.status == "ok":
        result = outcome.result
        return result if isinstance(result, str) else msgspec.json.encode(result).decode()
    return f"error ({outcome.status}): {outcome.error}"
