"""The partial text of a task's model calls, as its agent announces it (``swarmlog watch``).

Previews are not events: they are announced outside the stream, never stored, and not signed.
The broker authenticates them instead: an agent's login may announce only under its own id
(``_swarmlog.<ns>.live.<agent_id>.<task_id>``), and only the operator may listen. A watcher
keeps a piece only from an agent of the task's role: the agents that may work on it. What the
model finally answered is journaled and signed (``swarmlog calls``, ``show TASK``).
"""

from __future__ import annotations

import msgspec

from swarmlog.agents.calls import Preview
from swarmlog.control.records import Record

__all__ = ["TextPreview", "preview_of"]


class TextPreview(Record, frozen=True):
    """A piece of the answer of ``task_id``'s ``call_index``-th model call, from ``agent_id``."""

    task_id: str
    agent_id: str
    call_index: int
    text: str


def preview_of(
    subject: str, data: bytes, agent_role: str | None, task_role: str | None
) -> TextPreview | None:
    """The preview announced on ``subject``, or ``None`` when it is not one to show: not from an
    agent of the task's role (``agent_role`` and ``task_role`` as the projection has them), or
    not a preview at all."""
    tokens = subject.split(".")
    if len(tokens) != 5 or tokens[2] != "live":
        return None
    agent_id, task_id = tokens[3], tokens[4]
    if agent_role is None or agent_role != task_role:
        return None
    try:
        piece = msgspec.json.decode(data, type=Preview)
    except msgspec.DecodeError:
        return None
    return TextPreview(task_id, agent_id, piece.call_index, piece.text)
