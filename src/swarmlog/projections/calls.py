"""The call journal's fold (pure): model and tool call events into ``model_calls`` and
``tool_calls``, one row per task and call index.

A ``*_call_requested`` event makes the row (status ``requested``); its ``*_call_completed``
fills in the outcome. A second request at an index already journaled (a retry that asks
something else, or asks again after a crash between request and answer) starts the row over
from that request: the row is the call as it stands, and the ``events`` table keeps every
request and answer ever made.
"""

from __future__ import annotations

from typing import Any

from swarmlog.projections.state import State
from swarmlog.schemas.envelope import Envelope
from swarmlog.schemas.payloads import (
    ModelCallCompleted,
    ModelCallRequested,
    ToolCallCompleted,
    ToolCallRequested,
)

__all__ = ["CallPayload", "fold_call"]

CallPayload = ModelCallRequested | ModelCallCompleted | ToolCallRequested | ToolCallCompleted
"""The journal's event payloads."""


def fold_call(state: State, payload: CallPayload, envelope: Envelope, seq: int) -> None:
    """Fold one admitted journal event (stream sequence ``seq``) into its call's row."""
    name, columns = _columns(payload, envelope, seq)
    key = (payload.task_id, payload.call_index)
    requested = isinstance(payload, ModelCallRequested | ToolCallRequested)
    if requested or state.get(name, *key) is None:
        # Which call it is, from a request; also from an answer with no request journaled
        # (lost, or never made): recorded all the same, with what the answer itself says.
        columns |= {
            "workflow_id": _workflow_of(state, envelope, payload.task_id),
            "agent_id": envelope.sender,
            "call_id": payload.call_id,
        }
    if requested:
        # A whole new row, also over an earlier one: a request asked again is outstanding again.
        state.put(name, {"task_id": payload.task_id, "call_index": payload.call_index, **columns})
    else:
        state.upsert(name, key, **columns)


def _columns(payload: CallPayload, envelope: Envelope, seq: int) -> tuple[str, dict[str, Any]]:
    """The call's table, and what this event says in its row besides which call it is."""
    # Every event of a call says what it called: the model, or the tool and its MCP server.
    columns: dict[str, Any]
    if isinstance(payload, ModelCallRequested | ModelCallCompleted):
        name, columns = "model_calls", {"model": payload.model}
    else:
        name, columns = "tool_calls", {"tool": payload.tool, "server": payload.server}
    if isinstance(payload, ModelCallRequested | ToolCallRequested):
        columns |= {
            "status": "requested",
            "requested_seq": seq,
            "requested_at": envelope.occurred_at,
            "digest": payload.digest,
        }
        if isinstance(payload, ToolCallRequested):
            columns["definition"] = payload.definition
        return name, columns
    columns |= {
        "status": payload.status,
        "duration_ms": payload.duration_ms,
        "completed_seq": seq,
        "completed_at": envelope.occurred_at,
        "error": payload.error,
    }
    if isinstance(payload, ModelCallCompleted):
        usage = payload.usage
        columns["prompt_tokens"] = usage.prompt_tokens if usage else 0
        columns["completion_tokens"] = usage.completion_tokens if usage else 0
    return name, columns


def _workflow_of(state: State, envelope: Envelope, task_id: str) -> str | None:
    """The call's workflow: the event's, else its task's."""
    if envelope.workflow_id is not None:
        return envelope.workflow_id
    task = state.get("tasks", task_id)
    return None if task is None else task["workflow_id"]
