"""What a watcher keeps of the partial text announced for a task."""

from __future__ import annotations

import msgspec

from swarmlog.agents.calls import Preview
from swarmlog.bus.subjects import live_subject
from swarmlog.control.previews import TextPreview, preview_of

SUBJECT = live_subject("default", "talker-1", "t1")
PIECE = msgspec.json.encode(Preview(2, "hello "))


def test_a_piece_from_an_agent_of_the_tasks_role_is_kept() -> None:
    assert preview_of(SUBJECT, PIECE, "talker", "talker") == TextPreview(
        "t1", "talker-1", 2, "hello "
    )


def test_a_piece_from_another_role_an_unknown_agent_or_an_unknown_task_is_dropped() -> None:
    assert preview_of(SUBJECT, PIECE, "router", "talker") is None
    assert preview_of(SUBJECT, PIECE, None, "talker") is None
    assert preview_of(SUBJECT, PIECE, "talker", None) is None


def test_what_is_not_a_preview_is_dropped() -> None:
    assert preview_of(SUBJECT, b"{not json", "talker", "talker") is None
    assert preview_of(SUBJECT, b'{"text": 3}', "talker", "talker") is None
    assert preview_of("_swarmlog.default.rpc.query", PIECE, "talker", "talker") is None
