"""Unit tests of a task's conversation rebuilt from its call journal (``show TASK``)."""

from __future__ import annotations

from typing import Any

from swarmlog.rendering.conversation import conversation, turn_text

ASK = {"role": "user", "content": "how many words, and what time is it?"}
WANTS_TOOLS = {
    "role": "assistant",
    "tool_calls": [
        {"id": "c1", "name": "word_count", "arguments": '{"text": "a b"}'},
        {"id": "c2", "name": "time.get_current_time", "arguments": "{}"},
    ],
}


def event(seq: int, type_: str, **payload: Any) -> dict[str, Any]:
    return {"seq": seq, "type": type_, "payload": payload}


JOURNAL = [
    event(
        10,
        "model_call_requested",
        call_id="t1.m1",
        messages=[{"role": "system", "content": "be brief"}, ASK],
    ),
    event(11, "model_call_completed", call_id="t1.m1", status="ok", reply=WANTS_TOOLS),
    event(12, "tool_call_requested", call_id="t1.t1", tool="word_count", arguments={"text": "a b"}),
    event(13, "tool_call_completed", call_id="t1.t1", tool="word_count", status="ok", result=2),
    event(14, "tool_call_requested", call_id="t1.t2", tool="time.get_current_time", arguments={}),
    event(
        15,
        "tool_call_completed",
        call_id="t1.t2",
        tool="time.get_current_time",
        status="error",
        error="server gone",
    ),
    event(
        16,
        "model_call_requested",
        call_id="t1.m2",
        # The handler hands the last reply back with the tools' answers: shown once.
        messages=[
            WANTS_TOOLS,
            {"role": "tool", "tool_call_id": "c1", "name": "word_count", "content": "2"},
        ],
    ),
    event(17, "model_call_completed", call_id="t1.m2", status="error", error="429"),
    event(18, "model_call_completed", call_id="t1.m2", status="ok", reply={"content": "2 words"}),
    event(19, "task_heartbeat", task_id="t1"),
]


def test_the_conversation_is_the_requests_answers_and_tool_calls_in_order() -> None:
    turns = conversation(JOURNAL)
    assert [(t["seq"], t["kind"]) for t in turns] == [
        (10, "message"),
        (10, "message"),
        (11, "reply"),
        (12, "tool_call"),
        (13, "tool_result"),
        (14, "tool_call"),
        (15, "tool_result"),
        (16, "message"),
        (17, "model_error"),
        (18, "reply"),
    ]
    assert [turn_text(t) for t in turns] == [
        ("system", "be brief"),
        ("user", "how many words, and what time is it?"),
        ("assistant", '-> word_count({"text": "a b"})\n-> time.get_current_time({})'),
        ("call t1.t1", 'word_count {"text": "a b"}'),
        ("result t1.t1", "word_count ok: 2"),
        ("call t1.t2", "time.get_current_time {}"),
        ("result t1.t2", "time.get_current_time error: server gone"),
        ("tool word_count", "2"),
        ("model error", "429"),
        ("assistant", "2 words"),
    ]


def test_no_journal_no_conversation() -> None:
    assert conversation([event(1, "task_started", task_id="t1")]) == []
