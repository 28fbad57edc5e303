"""A task's conversation from its call journal (pure): what ``swarmlog show TASK`` prints.

The input is the task's journal events in stream order, each ``{"seq", "type", "payload"}``
with the payload decoded from JSON. A model call's request carries the messages added to the
conversation since the task's previous model call, and its answer the assistant's reply, so the
requests and answers in order are the whole conversation; the tool call events between them say
what each tool was asked and what it returned.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from swarmlog.schemas.payloads import JOURNAL_TYPES

__all__ = ["JOURNAL_TYPES", "Turn", "conversation", "turn_text"]


Turn = dict[str, Any]
"""One line of the conversation: ``seq``, ``kind`` (``message``, ``reply``, ``model_error``,
``tool_call``, ``tool_result``), ``call_id`` and what the kind carries (``role``, ``content``,
``tool_calls``; ``tool``, ``arguments``; ``status``, ``result``, ``error``)."""


def conversation(events: Iterable[Mapping[str, Any]]) -> list[Turn]:
    """The turns of a task's conversation, in order, from its journal events."""
    turns: list[Turn] = []
    last_reply: Any = None
    for event in events:
        seq, type_, payload = event["seq"], event["type"], event["payload"] or {}
        call_id = payload.get("call_id", "")
        match type_:
            case "model_call_requested":
                for message in payload.get("messages") or []:
                    # A handler may hand the model's last reply back as part of the next
                    # request: it is shown once.
                    if message == last_reply:
                        continue
                    turns.append({"seq": seq, "kind": "message", "call_id": call_id, **message})
                last_reply = None
            case "model_call_completed" if payload.get("status") == "ok":
                last_reply = payload.get("reply") or {}
                turns.append({"seq": seq, "kind": "reply", "call_id": call_id, **last_reply})
            case "model_call_completed":
                failed = {"kind": "model_error", "error": payload.get("error", "")}
                turns.append({"seq": seq, "call_id": call_id, **failed})
            case "tool_call_requested":
                turns.append(
                    {
                        "seq": seq,
                        "kind": "tool_call",
                        "call_id": call_id,
                        "tool": payload.get("tool", ""),
                        "arguments": payload.get("arguments"),
                    }
                )
            case "tool_call_completed":
                turns.append(
                    {
                        "seq": seq,
                        "kind": "tool_result",
                        "call_id": call_id,
                        "tool": payload.get("tool", ""),
                        "status": payload.get("status", ""),
                        "result": payload.get("result"),
                        "error": payload.get("error", ""),
                    }
                )
            case _:
                pass
    return turns


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def turn_text(turn: Turn) -> tuple[str, str]:
    """A turn as (label, text) for a terminal: ``("user", "count the words")``."""
    kind = turn["kind"]
    if kind in ("message", "reply"):
        role = str(turn.get("role") or "assistant")
        text = str(turn.get("content") or "")
        calls = turn.get("tool_calls") or []
        wanted = [f"{c.get('name', '?')}({c.get('arguments', '')})" for c in calls]
        if wanted:
            text = "\n".join([*([text] if text else []), *(f"-> {w}" for w in wanted)])
        if role == "tool" and turn.get("name"):
            role = f"tool {turn['name']}"
        return role, text
    if kind == "model_error":
        return "model error", str(turn.get("error") or "")
    if kind == "tool_call":
        return f"call {turn['call_id']}", f"{turn['tool']} {_json(turn.get('arguments'))}"
    status = turn.get("status", "")
    shown = _json(turn.get("result")) if status == "ok" else str(turn.get("error") or "")
    return f"result {turn['call_id']}", f"{turn['tool']} {status}: {shown}"
