"""The call journal's decisions (pure): what identifies a model or tool call, and when a call
already on the log answers instead of calling again.

Every model call and every tool call of a task is a pair of signed events: ``*_call_requested``
(with the digest of what was asked) and ``*_call_completed`` (what came back). Calls are counted
per task and per kind (``m1, m2, ...`` for model calls, ``t1, t2, ...`` for tool calls), so a
handler that runs again (a retry, a redelivery after a crash, another replica) asks its calls in
the same order under the same indices. A call whose index is journaled as completed ``ok`` with
the same request digest is answered from the journal: the model is not asked again and the tool
is not called again. A call that was requested but never completed (the process died in between)
is the one call made again: the at-least-once window, which tools close with the idempotency key
(:func:`call_id`) they are given.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import msgspec

from swarmlog.agents.policy.values import Value
from swarmlog.schemas.payloads import model_call_id, tool_call_id

__all__ = [
    "CallKind",
    "Entry",
    "answer_from",
    "arguments_digest",
    "call_id",
    "digest",
    "index_entries",
    "request_digest",
]

CallKind = Literal["model", "tool"]


def call_id(task_id: str, kind: CallKind, index: int) -> str:
    """The call's id, the same on every attempt: ``<task>.m<index>`` or ``<task>.t<index>``."""
    return (model_call_id if kind == "model" else tool_call_id)(task_id, index)


def digest(value: Any) -> str:
    """sha256 hex of ``value`` as canonical JSON (keys sorted): equal data, equal digest."""
    return hashlib.sha256(msgspec.json.encode(value, order="sorted")).hexdigest()


def request_digest(
    messages: Sequence[Any],
    tools: Sequence[Any] = (),
    output_schema: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
) -> str:
    """What a model call asks, as a digest: the whole conversation, the tools offered, the
    output schema and the options that change the answer (not the model's name: a replica of
    the same role configured with another endpoint may answer from the journal)."""
    return digest(
        {
            "messages": list(messages),
            "tools": list(tools),
            "output_schema": output_schema,
            "options": dict(options or {}),
        }
    )


def arguments_digest(tool: str, arguments: Any) -> str:
    """What a tool call asks, as a digest."""
    return digest({"tool": tool, "arguments": arguments})


class Entry(Value):
    """One journaled call: its request digest and, once it completed, how."""

    kind: CallKind
    index: int
    digest: str
    status: str = "requested"
    """``requested`` (never completed), ``ok``, ``error`` or ``refused``."""
    completed: Any = None
    """The ``*_call_completed`` payload."""


def answer_from(
    journal: Mapping[tuple[CallKind, int], Entry], kind: CallKind, index: int, digest: str
) -> Any:
    """The completed payload that answers this call, or ``None``: call (again).

    Only a call that completed ``ok`` for the very same request answers: an error is worth
    another try, and a handler that now asks something else (different digest) gets a fresh
    answer rather than one to another question.
    """
    entry = journal.get((kind, index))
    if entry is None or entry.status != "ok" or entry.digest != digest:
        return None
    return entry.completed


def index_entries(entries: Iterable[Entry]) -> dict[tuple[CallKind, int], Entry]:
    """The journal by (kind, index); a later entry for an index replaces an earlier one."""
    return {(e.kind, e.index): e for e in entries}
