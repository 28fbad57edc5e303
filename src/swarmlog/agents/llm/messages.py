"""The conversation's types (pure): messages, tool calls, tool specs, a request to a model and
its reply, and the :class:`Model` protocol every adapter implements.

They are plain frozen msgspec structs, so a conversation encodes to JSON as it is
(``msgspec.to_builtins(message)``) for the journal, and decodes back with ``msgspec.convert``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import msgspec

__all__ = [
    "Answer",
    "ChatRequest",
    "Message",
    "Messages",
    "Model",
    "Reply",
    "Role",
    "TextSink",
    "ToolCall",
    "ToolSpec",
]

Role = Literal["system", "user", "assistant", "tool"]

TextSink = Callable[[str], Awaitable[None]]
"""Called with each piece of text as a streaming model produces it."""


class ToolCall(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One call of a tool the model asks for."""

    id: str
    """The model's id of the call; the ``tool`` message answering it names it."""
    name: str
    arguments: str
    """The JSON text as the model sent it: it may be malformed, the caller validates it."""


class Message(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One message of a conversation."""

    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    """An assistant's calls of tools (its ``content`` may then be empty)."""
    tool_call_id: str = ""
    """For role ``tool``: the id of the call this message answers."""
    name: str = ""
    """An optional name of the author (for several users or assistants in one conversation)."""


class ToolSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A tool offered to the model: its name, what it does, its parameters as a JSON Schema."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = msgspec.field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )


class ChatRequest(msgspec.Struct, frozen=True):
    """What a model is asked, in one value: every model, the call journal (which keys a call by
    it) and the wire format read the request from here.

    ``tools`` are offered for the model to call; ``output_schema`` (a JSON Schema) asks for a
    JSON answer of that shape; ``max_tokens`` bounds the answer (``None``: the model's own cap).
    """

    messages: Sequence[Message]
    tools: Sequence[ToolSpec] = ()
    output_schema: Mapping[str, Any] | None = None
    max_tokens: int | None = None


class Reply(msgspec.Struct, frozen=True, kw_only=True):
    """A model's answer (an assistant message) and what it cost."""

    message: Message
    """Role ``assistant``: text in ``content``, calls of tools in ``tool_calls``."""
    model: str
    """The model that answered, as the endpoint names it."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = ""
    """``stop``, ``length`` (cut at ``max_tokens``), ``tool_calls``, or the endpoint's own word."""


class Model(Protocol):
    """Anything that answers a conversation."""

    @property
    def name(self) -> str:
        """The model's name, as recorded in usage and result-cache keys."""
        ...

    async def chat(self, request: ChatRequest, *, on_text: TextSink | None = None) -> Reply:
        """The assistant's next message after ``request.messages``.

        ``on_text``, when given, receives the answer's text as it is produced (streaming).
        Failures raise :class:`~swarmlog.errors.ModelError`, ``retryable`` when trying later
        may work.
        """
        ...


Messages = str | Sequence[Message | Mapping[str, Any]]
"""A prompt (one user message) or a conversation (messages, or their JSON maps)."""


@dataclass(frozen=True)
class Answer:
    """The model's last message of an exchange, and the output decoded from it."""

    message: Message
    output: Any = None
    """The structured output (an instance of the type asked for, or JSON that conforms to the
    schema); ``None`` when none was asked for."""
    messages: tuple[Message, ...] = field(default=(), repr=False)
    """The whole conversation, the answer included (to go on with it)."""
    turns: int = 1
    """Model calls it took (corrections and tool turns included)."""

    @property
    def text(self) -> str:
        return self.message.content

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        return self.message.tool_calls
