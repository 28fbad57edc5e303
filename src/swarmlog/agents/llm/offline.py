"""The offline model (pure): deterministic answers with no network and no key, for tests, the
demo and any tier left unconfigured.

The same conversation always gets the same answer:

- by default, text that restates the last user message's first sentence with a short digest of
  the whole conversation (so different inputs give visibly different outputs);
- with ``output_schema`` (and nothing scripted), a minimal JSON instance of the schema
  (:func:`~swarmlog.agents.llm.instances.instance_of`), so structured output works offline;
- with a **script**, the Nth assistant turn of a conversation (N counts the assistant messages
  already in it) is the Nth scripted turn: calls of tools or text. Past the end of the script it
  answers as it does without one. A script is JSON::

      [
        {"tool_calls": [{"name": "word_count", "arguments": {"text": "a b c"}}]},
        {"content": "The text has three words."}
      ]

  A call's ``arguments`` is an object (sent as its JSON text) or a string (sent as it is, so a
  script can send malformed arguments); the calls of turn N get the ids ``call_N_1``,
  ``call_N_2``, ... (N from 1).

Tokens are counted roughly (words), the same way each time.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

import msgspec

from swarmlog.agents.llm.instances import SchemaInstanceError, instance_of
from swarmlog.agents.llm.messages import ChatRequest, Message, Reply, TextSink, ToolCall
from swarmlog.errors import ModelError

__all__ = ["OfflineModel", "ScriptCall", "ScriptTurn", "parse_script"]


class ScriptCall(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A scripted call of a tool."""

    name: str
    arguments: dict[str, Any] | str = {}


class ScriptTurn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One scripted assistant turn: calls of tools, text, or both."""

    content: str | None = None
    tool_calls: tuple[ScriptCall, ...] = ()


def parse_script(data: bytes | str) -> tuple[ScriptTurn, ...]:
    """The turns of a script in JSON; :class:`ValueError` (naming the place) when it is not one."""
    try:
        turns = msgspec.json.decode(data, type=tuple[ScriptTurn, ...])
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a script (a JSON list of turns): {exc}") from None
    for index, turn in enumerate(turns):
        if turn.content is None and not turn.tool_calls:
            raise ValueError(f'turn {index + 1} says nothing: give it "content" or "tool_calls"')
    return turns


def _tokens(text: str) -> int:
    # A rough, deterministic count (about what tokenizers give for English prose).
    return max(1, len(text.split())) if text else 0


def _transcript(messages: Sequence[Message]) -> str:
    # The plain form ("role: content" lines) is the old model's, so plain prompts keep their
    # answers; calls and tool answers add to their lines only when present.
    lines = []
    for m in messages:
        line = f"{m.role}: {m.content}"
        if m.tool_call_id:
            line += f" [answers {m.tool_call_id}]"
        for call in m.tool_calls:
            line += f" [calls {call.name} {call.arguments}]"
        lines.append(line)
    return "\n".join(lines)


def _arguments(call: ScriptCall) -> str:
    if isinstance(call.arguments, str):
        return call.arguments
    return json.dumps(call.arguments, sort_keys=True, separators=(",", ":"))


class OfflineModel:
    """A deterministic stand-in for a language model (see the module's docstring)."""

    def __init__(self, name: str = "offline", script: Sequence[ScriptTurn] = ()) -> None:
        self._name = name
        self.script = tuple(script)

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"OfflineModel({self._name!r}, script of {len(self.script)} turns)"

    async def chat(self, request: ChatRequest, *, on_text: TextSink | None = None) -> Reply:
        messages, max_tokens = request.messages, request.max_tokens
        prompt = _transcript(messages)
        turn = sum(1 for m in messages if m.role == "assistant")
        calls: tuple[ToolCall, ...] = ()
        finish = "stop"
        if turn < len(self.script):
            scripted = self.script[turn]
            calls = tuple(
                ToolCall(id=f"call_{turn + 1}_{k + 1}", name=c.name, arguments=_arguments(c))
                for k, c in enumerate(scripted.tool_calls)
            )
            text, finish = _cut(scripted.content or "", max_tokens)
        elif request.output_schema is not None:
            try:
                text = json.dumps(instance_of(request.output_schema), separators=(",", ":"))
            except SchemaInstanceError as exc:
                raise ModelError(f"{self._name}: {exc}", retryable=False) from None
        else:
            last = next((m.content for m in reversed(messages) if m.role == "user"), "")
            first_sentence = last.strip().split(". ")[0][:200]
            digest = hashlib.sha256(prompt.encode()).hexdigest()[:8]
            text, finish = _cut(f"[{self._name} {digest}] {first_sentence}".strip(), max_tokens)
        if on_text is not None:
            # word by word, as a streaming endpoint sends its deltas
            for piece in re.findall(r"\s*\S+\s*", text):
                await on_text(piece)
        spent = _tokens(text) + sum(_tokens(f"{c.name} {c.arguments}") for c in calls)
        return Reply(
            message=Message(role="assistant", content=text, tool_calls=calls),
            model=self._name,
            prompt_tokens=_tokens(prompt),
            completion_tokens=spent,
            finish_reason="tool_calls" if calls else finish,
        )


def _cut(text: str, max_tokens: int | None) -> tuple[str, str]:
    """``text`` cut to ``max_tokens`` words, and the finish reason that says whether it was."""
    if max_tokens is None:
        return text, "stop"
    words = text.split()
    return " ".join(words[:max_tokens]), "length" if len(words) > max_tokens else "stop"
