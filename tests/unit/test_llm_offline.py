"""The offline model: deterministic answers, scripts of tool calls, JSON instances of schemas;
and the message types it answers in."""

from __future__ import annotations

import json
from typing import Any, Literal

import jsonschema
import msgspec
import pytest

from swarmlog.agents.llm import ChatRequest, Message, OfflineModel, ToolCall, ToolSpec
from swarmlog.agents.llm.instances import SchemaInstanceError, instance_of
from swarmlog.agents.llm.offline import parse_script
from swarmlog.errors import ModelError

ASK = [Message(role="user", content="Summarise the report. It is long.")]
TOOL = ToolSpec(name="word_count")

SCRIPT = parse_script(
    json.dumps(
        [
            {
                "tool_calls": [
                    {"name": "word_count", "arguments": {"text": "a b c"}},
                    {"name": "lookup", "arguments": '{"broken": '},
                ]
            },
            {"content": "The text has three words."},
        ]
    )
)


async def test_the_same_messages_get_the_same_answer() -> None:
    model = OfflineModel()
    one, two = await model.chat(ChatRequest(ASK)), await model.chat(ChatRequest(ASK))
    other = await model.chat(ChatRequest([Message(role="user", content="Something else")]))
    assert one == two
    assert one.message.content != other.message.content
    assert one.message.role == "assistant"
    assert one.message.content.startswith("[offline ")
    assert "Summarise the report" in one.message.content
    assert one.prompt_tokens > 0
    assert one.completion_tokens > 0
    assert one.finish_reason == "stop"


async def test_a_plain_prompt_keeps_the_answer_it_had_before_the_conversation_api() -> None:
    # The text of the model before Model.chat: "[name digest] first sentence", the digest of
    # the "role: content" lines (tests and the demo's printed output rely on it).
    model = OfflineModel("offline-small")
    reply = await model.chat(
        ChatRequest(
            [Message(role="system", content="be brief"), Message(role="user", content="Hi there")]
        )
    )
    assert reply.message.content == "[offline-small c42dbada] Hi there"
    assert (reply.prompt_tokens, reply.completion_tokens) == (6, 4)
    ask = [Message(role="user", content="Summarise the report. It is long.  Really")]
    cut = await model.chat(ChatRequest(ask, max_tokens=3))
    assert cut.message.content == "[offline-small ef1feac0] Summarise"
    assert (cut.prompt_tokens, cut.completion_tokens) == (8, 3)


async def test_max_tokens_cuts_the_answer_and_says_so() -> None:
    model = OfflineModel()
    cut = await model.chat(ChatRequest(ASK, max_tokens=2))
    assert len(cut.message.content.split()) == 2
    assert (cut.completion_tokens, cut.finish_reason) == (2, "length")
    whole = await model.chat(ChatRequest(ASK, max_tokens=100))
    assert whole.finish_reason == "stop"
    assert whole.message.content == (await model.chat(ChatRequest(ASK))).message.content


async def test_tools_without_a_script_get_text() -> None:
    reply = await OfflineModel().chat(ChatRequest(ASK, tools=[TOOL]))
    assert reply.message.tool_calls == ()
    assert reply.message.content == (await OfflineModel().chat(ChatRequest(ASK))).message.content


async def test_a_script_is_followed_turn_by_turn() -> None:
    model = OfflineModel(script=SCRIPT)
    first = await model.chat(ChatRequest(ASK, tools=[TOOL]))
    assert first.message.tool_calls == (
        ToolCall(id="call_1_1", name="word_count", arguments='{"text":"a b c"}'),
        ToolCall(id="call_1_2", name="lookup", arguments='{"broken": '),  # sent as scripted
    )
    assert first.finish_reason == "tool_calls"
    assert first.completion_tokens > 0
    answers = [
        Message(role="tool", tool_call_id=c.id, content="3") for c in first.message.tool_calls
    ]
    conversation = [*ASK, first.message, *answers]
    second = await model.chat(ChatRequest(conversation))
    assert second.message == Message(role="assistant", content="The text has three words.")
    # past the end of the script: as without one, from the whole conversation
    third = await model.chat(ChatRequest([*conversation, second.message]))
    assert third.message.tool_calls == ()
    assert third.message.content.startswith("[offline ")
    # the turn is counted from the conversation, not from the calls made: the same again
    assert await model.chat(ChatRequest(ASK)) == first


async def test_the_text_is_streamed_in_pieces_that_add_up() -> None:
    pieces: list[str] = []

    async def sink(piece: str) -> None:
        pieces.append(piece)

    reply = await OfflineModel().chat(ChatRequest(ASK), on_text=sink)
    assert len(pieces) > 1
    assert "".join(pieces) == reply.message.content


class Step(msgspec.Struct):
    capability: str
    after: list[str] = []


class Plan(msgspec.Struct):
    goal: str
    steps: list[Step]
    kind: Literal["serial", "parallel"]
    size: int
    confidence: float | None


async def test_an_output_schema_gets_a_valid_json_instance() -> None:
    schema = msgspec.json.schema(Plan)
    reply = await OfflineModel().chat(ChatRequest(ASK, output_schema=schema))
    data = json.loads(reply.message.content)
    jsonschema.validate(data, schema)
    # msgspec sorts a Literal's values; of "number or null" the number is taken
    assert data == {"goal": "", "steps": [], "kind": "parallel", "size": 0, "confidence": 0.0}
    msgspec.convert(data, Plan)  # and the type decodes it
    assert reply == await OfflineModel().chat(ChatRequest(ASK, output_schema=schema))


async def test_scripted_content_wins_over_the_schema_instance() -> None:
    script = parse_script('[{"content": "{\\"goal\\": \\"scripted\\"}"}]')
    reply = await OfflineModel(script=script).chat(
        ChatRequest(ASK, output_schema=msgspec.json.schema(Plan))
    )
    assert json.loads(reply.message.content) == {"goal": "scripted"}


@pytest.mark.parametrize(
    "schema",
    [
        {
            "type": "object",
            "properties": {"a": {"type": "integer", "minimum": 3}},
            "required": ["a"],
        },
        {"type": "array", "items": {"type": "string", "minLength": 2}, "minItems": 2},
        {"type": "string", "format": "date-time"},
        {"type": "number", "exclusiveMinimum": 1, "maximum": 4},
        {"type": "integer", "exclusiveMaximum": 0},
        {"enum": ["b", "a"]},
        {"const": {"x": 1}},
        {"anyOf": [{"type": "null"}, {"type": "boolean"}]},
        {"type": ["null", "string"], "minLength": 1},
        {"allOf": [{"required": ["a"]}, {"properties": {"a": {"type": "string"}}}]},
        {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "minItems": 2},
        {
            "properties": {"n": {"$ref": "#/$defs/N"}},
            "required": ["n"],
            "$defs": {"N": {"type": "integer"}},
        },
        {},
    ],
)
def test_instances_are_valid(schema: dict[str, Any]) -> None:
    jsonschema.validate(instance_of(schema), schema)


def test_a_schema_with_no_finite_instance_is_a_clear_model_error() -> None:
    loop = {
        "$ref": "#/$defs/L",
        "$defs": {
            "L": {
                "type": "object",
                "properties": {"next": {"$ref": "#/$defs/L"}},
                "required": ["next"],
            }
        },
    }
    with pytest.raises(SchemaInstanceError, match="nests too deep"):
        instance_of(loop)
    with pytest.raises(SchemaInstanceError, match="only local"):
        instance_of({"$ref": "https://example.com/s.json"})


async def test_the_model_reports_a_schema_it_cannot_answer() -> None:
    with pytest.raises(ModelError, match="points nowhere") as failed:
        await OfflineModel().chat(ChatRequest(ASK, output_schema={"$ref": "#/$defs/Missing"}))
    assert not failed.value.retryable


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{}", "not a script"),
        ('[{"content": "x", "tools": []}]', "not a script"),
        ("[{}]", "turn 1 says nothing"),
        ('[{"tool_calls": [{"arguments": {}}]}]', "not a script"),
        ("[", "not a script"),
    ],
)
def test_a_bad_script_says_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_script(text)


def test_a_message_encodes_as_json_and_back() -> None:
    message = Message(
        role="assistant", tool_calls=(ToolCall(id="c1", name="t", arguments='{"a": 1}'),)
    )
    plain = msgspec.json.decode(msgspec.json.encode(message))
    assert plain == {  # defaults left out
        "role": "assistant",
        "tool_calls": [{"id": "c1", "name": "t", "arguments": '{"a": 1}'}],
    }
    assert msgspec.convert(plain, Message) == message
    assert msgspec.convert(msgspec.to_builtins(message), Message) == message
