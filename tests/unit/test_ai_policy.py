"""The pure decisions behind model and tool calls: journal reuse, budget allowance, structured
output."""

from __future__ import annotations

import msgspec
import pytest

from swarmlog.agents.policy.budgets import completion_allowance, estimate_tokens
from swarmlog.agents.policy.journal import (
    Entry,
    answer_from,
    arguments_digest,
    call_id,
    index_entries,
    request_digest,
)
from swarmlog.agents.policy.outputs import OutputRejected, decode_output, output_schema

ASK = [{"role": "user", "content": "hello"}]


def test_request_digest_is_canonical_and_sees_every_part() -> None:
    base = request_digest(ASK, [{"name": "t", "parameters": {"b": 1, "a": 2}}])
    assert base == request_digest(ASK, [{"parameters": {"a": 2, "b": 1}, "name": "t"}])
    assert base != request_digest([{"role": "user", "content": "hello!"}])
    assert base != request_digest(ASK, [{"name": "t", "parameters": {"a": 2, "b": 1}}], {})
    assert request_digest(ASK) != request_digest(ASK, options={"temperature": 0.5})
    assert arguments_digest("t", {"x": 1}) != arguments_digest("u", {"x": 1})


def test_call_ids_are_per_kind_and_stable() -> None:
    assert call_id("wf-s1", "model", 3) == "wf-s1.m3"
    assert call_id("wf-s1", "tool", 3) == "wf-s1.t3"


def test_only_an_ok_call_for_the_same_request_answers() -> None:
    d = request_digest(ASK)
    journal = index_entries(
        [
            Entry("model", 1, d, "ok", completed="first"),
            Entry("model", 2, d, "error", completed="boom"),
            Entry("model", 3, d),  # requested, never completed: the crash window
            Entry("tool", 1, "other", "ok", completed="tool"),
        ]
    )
    assert answer_from(journal, "model", 1, d) == "first"
    assert answer_from(journal, "model", 2, d) is None
    assert answer_from(journal, "model", 3, d) is None
    assert answer_from(journal, "model", 4, d) is None
    assert answer_from(journal, "model", 1, "changed") is None
    assert answer_from(journal, "tool", 1, "other") == "tool"
    # a later entry for an index (a divergent re-ask) replaces the earlier one
    again = index_entries([Entry("model", 1, d, "ok", "a"), Entry("model", 1, "e", "ok", "b")])
    assert answer_from(again, "model", 1, d) is None


def test_allowance_never_lets_a_call_cross_the_budget() -> None:
    assert completion_allowance(0, None, 10**6) is None
    assert completion_allowance(10, 30, 5) == 15
    assert completion_allowance(25, 30, 5) == 0
    assert completion_allowance(40, 30, 5) == 0
    assert estimate_tokens("one two three") >= 3  # never below a word count for prose


class Plan(msgspec.Struct):
    steps: list[str]


def test_structured_output_by_type_and_by_schema() -> None:
    schema = output_schema(Plan)
    assert schema["type"] == "object"
    assert schema["required"] == ["steps"]
    assert decode_output('```json\n{"steps": ["a"]}\n```', Plan) == Plan(["a"])
    with pytest.raises(OutputRejected, match=r"\$\.steps"):
        decode_output('{"steps": 1}', Plan)
    with pytest.raises(OutputRejected, match="not JSON"):
        decode_output("Sure! Here is the plan.", Plan)
    by_schema = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}
    assert decode_output('{"n": 2}', by_schema) == {"n": 2}
    with pytest.raises(OutputRejected, match="required"):
        decode_output('{"m": 2}', by_schema)
