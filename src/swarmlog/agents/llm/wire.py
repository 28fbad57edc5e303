"""The chat-completions request as the wire takes it (pure): messages, tools, the JSON-schema
response format, and the tools' names.

The API takes tool names of ``[A-Za-z0-9_-]{1,64}`` only, and swarmlog's qualified MCP tool names
have a dot (``time.get_current_time``). :class:`ToolNames` gives each name that does not fit a
name that does (``time_get_current_time``; with a short digest when two would be the same, or
past 64 characters) and maps the model's calls back, so the rest of swarmlog sees its own names.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from swarmlog.agents.llm.messages import ChatRequest, Message

__all__ = ["ToolNames", "chat_request"]

_FITS = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MISFIT = re.compile(r"[^A-Za-z0-9_-]")


class ToolNames:
    """The tools' names of one request: swarmlog's and the wire's, both ways."""

    def __init__(self, names: Sequence[str]) -> None:
        unique = list(dict.fromkeys(names))
        fitting = {n for n in unique if _FITS.fullmatch(n)}
        plain = {n: _MISFIT.sub("_", n)[:64] or "tool" for n in unique if n not in fitting}
        self._wire: dict[str, str] = {n: n for n in fitting}
        for name, candidate in plain.items():
            clash = candidate in fitting or sum(c == candidate for c in plain.values()) > 1
            if clash or len(name) > 64:
                digest = hashlib.sha256(name.encode()).hexdigest()[:8]
                candidate = f"{candidate[:55]}_{digest}"
            self._wire[name] = candidate
        self._ours = {wire: name for name, wire in self._wire.items()}

    def wire(self, name: str) -> str:
        """The name the endpoint sees."""
        return self._wire.get(name, name)

    def ours(self, wire: str) -> str:
        """The name the model called, as swarmlog names it (an unknown name as it came)."""
        return self._ours.get(wire, wire)


def chat_request(
    model: str, request: ChatRequest, *, temperature: float | None = None
) -> tuple[dict[str, Any], ToolNames]:
    """The body of ``POST /chat/completions`` (without ``stream``) asking ``model`` for
    ``request``, and the tools' names."""
    messages, tools, output_schema = request.messages, request.tools, request.output_schema
    names = ToolNames([t.name for t in tools] + [c.name for m in messages for c in m.tool_calls])
    body: dict[str, Any] = {
        "model": model,
        "messages": [_message(m, names) for m in messages],
    }
    if temperature is not None:
        body["temperature"] = temperature
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    if tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": names.wire(t.name),
                    "description": t.description,
                    "parameters": t.parameters,
                },
            }
            for t in tools
        ]
    if output_schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {
                "name": _schema_name(output_schema),
                "schema": dict(output_schema),
                # not strict: strict mode refuses most schemas msgspec writes (optional fields,
                # $defs); the caller validates the answer and asks again
                "strict": False,
            },
        }
    return body, names


def _message(message: Message, names: ToolNames) -> dict[str, Any]:
    wire: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.role == "tool":
        wire["tool_call_id"] = message.tool_call_id
    elif message.name:
        wire["name"] = message.name
    if message.tool_calls:
        wire["content"] = message.content or None  # an assistant that only calls has no text
        wire["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": names.wire(call.name), "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
    return wire


def _schema_name(schema: Mapping[str, Any]) -> str:
    # The API wants ^[a-zA-Z0-9_-]{1,64}$: the schema's title (or its one reference) if it fits.
    title = str(schema.get("title") or str(schema.get("$ref", "")).rpartition("/")[2])
    return _MISFIT.sub("_", title)[:64] or "output"
