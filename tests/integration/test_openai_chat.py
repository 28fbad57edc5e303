"""The OpenAI-compatible adapter against a real HTTP server process speaking the wire format
(``openai_server.py``): what the SDK sends, tool calls, streamed chunks, usage, and the failures
(429, 500, 400, a timeout, a broken stream, an answer that is not a completion, no server)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from swarmlog.agents.llm import ChatRequest, Message, OpenAIChat, ToolCall, ToolSpec, model_from_env
from swarmlog.errors import ModelError
from waiting import wait_until

pytestmark = pytest.mark.integration

KEY = "sk-test-not-a-real-key"
SERVER = Path(__file__).with_name("openai_server.py")
WEATHER = ToolSpec(
    name="weather",
    description="The weather in a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
)


class ChatServer:
    """The server process: its URL, the scenario it answers from, the requests it got."""

    def __init__(self, folder: Path) -> None:
        self.scenario_file = folder / "scenario.json"
        self.record = folder / "requests.jsonl"
        self.answers: dict[str, list[dict[str, Any]]] = {}
        ready = folder / "port"
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(SERVER),
                "--scenario",
                str(self.scenario_file),
                "--record",
                str(self.record),
                "--ready",
                str(ready),
            ]
        )
        wait_until(lambda: ready.exists() or self.process.poll() is not None, timeout=20)
        assert self.process.poll() is None, "the chat server did not start"
        self.url = f"http://127.0.0.1:{ready.read_text()}/v1"

    def answer(self, model: str, *answers: dict[str, Any]) -> str:
        """Have ``model`` answer ``answers`` in turn; the model's name, to call it by."""
        self.answers[model] = list(answers)
        partial = self.scenario_file.with_suffix(".partial")
        partial.write_text(json.dumps(self.answers))
        os.replace(partial, self.scenario_file)
        return model

    def requests(self, model: str) -> list[dict[str, Any]]:
        """What the server got for ``model``, in order."""
        if not self.record.exists():
            return []
        seen = [json.loads(line) for line in self.record.read_text().splitlines()]
        return [r for r in seen if r["body"].get("model") == model]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatServer]:
    chat = ChatServer(tmp_path_factory.mktemp("openai-server"))
    try:
        yield chat
    finally:
        chat.stop()


def _tier(server: ChatServer, model: str, **settings: str) -> OpenAIChat:
    env = {"SWARMLOG_MODEL_LARGE": f"openai:{server.url}#{model}", "SWARMLOG_MODEL_LARGE_KEY": KEY}
    env.update({f"SWARMLOG_MODEL_LARGE_{k.upper()}": v for k, v in settings.items()})
    model_ = model_from_env("large", env)
    assert isinstance(model_, OpenAIChat)
    return model_


USER = [Message(role="system", content="be brief"), Message(role="user", content="hi")]


async def test_a_chat_completion_and_what_the_sdk_sent(server: ChatServer) -> None:
    name = "meta-llama/llama-3.1-8b-instruct"  # a name with a "/": the tier form takes any
    model = _tier(server, name, temperature="0.3", max_tokens="50", headers='{"X-Team": "blue"}')
    reply = await model.chat(ChatRequest(USER, max_tokens=80))
    assert (reply.message.content, reply.model) == ("HI", name)
    assert (reply.prompt_tokens, reply.completion_tokens, reply.finish_reason) == (7, 3, "stop")
    (request,) = server.requests(name)
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == f"Bearer {KEY}"
    assert request["headers"]["x-team"] == "blue"
    body = request["body"]
    assert body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]
    assert body["temperature"] == 0.3
    assert body["max_tokens"] == 50  # the tier's cap wins over the call's 80
    assert "tools" not in body
    assert "response_format" not in body
    assert "stream" not in body
    assert KEY not in repr(model)
    assert "blue" not in repr(model)


async def test_tool_calls_come_back_and_go_out_in_the_wire_format(server: ChatServer) -> None:
    calls = [
        {"id": "call_a", "name": "weather", "arguments": '{"city": "Paris"}'},
        {"id": "call_b", "name": "weather", "arguments": '{"city": "Oslo"}'},
    ]
    name = server.answer("tools", {"tool_calls": calls}, {"content": "Sunny, then snow."})
    model = _tier(server, name)
    first = await model.chat(ChatRequest(USER, tools=[WEATHER]))
    assert first.finish_reason == "tool_calls"
    assert first.message.tool_calls == (
        ToolCall(id="call_a", name="weather", arguments='{"city": "Paris"}'),
        ToolCall(id="call_b", name="weather", arguments='{"city": "Oslo"}'),
    )
    answers = [
        Message(role="tool", tool_call_id=c.id, content="sunny") for c in first.message.tool_calls
    ]
    second = await model.chat(ChatRequest([*USER, first.message, *answers], tools=[WEATHER]))
    assert second.message.content == "Sunny, then snow."
    sent = [r["body"] for r in server.requests(name)]
    assert sent[0]["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "The weather in a city.",
                "parameters": WEATHER.parameters,
            },
        }
    ]
    assistant, *tool_answers = sent[1]["messages"][2:]
    assert assistant == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": c["id"],
                "type": "function",
                "function": {k: c[k] for k in ("name", "arguments")},
            }
            for c in calls
        ],
    }
    assert tool_answers == [
        {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_b", "content": "sunny"},
    ]


class Verdict(msgspec.Struct):
    accepted: bool
    reasons: list[str]


async def test_an_output_schema_is_asked_as_a_json_schema_response_format(
    server: ChatServer,
) -> None:
    schema = msgspec.json.schema(Verdict)
    name = server.answer("structured", {"content": '{"accepted": true, "reasons": []}'})
    reply = await _tier(server, name).chat(ChatRequest(USER, output_schema=schema))
    assert json.loads(reply.message.content) == {"accepted": True, "reasons": []}
    (request,) = server.requests(name)
    assert request["body"]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Verdict", "schema": schema, "strict": False},
    }


async def test_a_streamed_answer_is_assembled_from_its_chunks(server: ChatServer) -> None:
    text = "The weather is fine today."
    arguments = '{"city": "Reykjavik", "days": 3}'
    calls = [{"id": "call_s", "name": "weather", "arguments": arguments}]
    name = server.answer(
        "streamed",
        {
            "content": text,
            "tool_calls": calls,
            "usage": {"prompt_tokens": 11, "completion_tokens": 9},
        },
    )
    deltas: list[str] = []

    async def sink(piece: str) -> None:
        deltas.append(piece)

    reply = await _tier(server, name).chat(ChatRequest(USER, tools=[WEATHER]), on_text=sink)
    assert len(deltas) > 3  # the text came in pieces, each handed on as it came
    assert "".join(deltas) == text == reply.message.content
    assert reply.message.tool_calls == (ToolCall(id="call_s", name="weather", arguments=arguments),)
    assert (reply.prompt_tokens, reply.completion_tokens) == (11, 9)
    assert reply.finish_reason == "tool_calls"
    (request,) = server.requests(name)
    assert request["body"]["stream"] is True
    assert request["body"]["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("stream", [False, True])
async def test_malformed_tool_arguments_come_back_as_they_were_sent(
    server: ChatServer, stream: bool
) -> None:
    broken = '{"city": "Par'
    name = server.answer(
        f"malformed-{stream}",
        {"tool_calls": [{"id": "call_m", "name": "weather", "arguments": broken}], "piece": 2},
    )

    async def sink(piece: str) -> None:
        pass

    reply = await _tier(server, name).chat(
        ChatRequest(USER, tools=[WEATHER]), on_text=sink if stream else None
    )
    (call,) = reply.message.tool_calls
    assert call.arguments == broken  # the caller validates it


@pytest.mark.parametrize("stream", [False, True])
async def test_a_rate_limit_is_retryable_and_the_sdk_does_not_retry_it(
    server: ChatServer, stream: bool
) -> None:
    name = server.answer(
        f"busy-{stream}", {"status": 429, "error": "rate limited"}, {"content": "done"}
    )
    model = _tier(server, name)
    pieces: list[str] = []

    async def sink(piece: str) -> None:
        pieces.append(piece)

    on_text = sink if stream else None
    with pytest.raises(ModelError, match="429") as busy:
        await model.chat(ChatRequest(USER), on_text=on_text)
    assert busy.value.retryable
    assert server.url in str(busy.value)
    assert len(server.requests(name)) == 1  # one request: the task's retry policy retries
    assert (await model.chat(ChatRequest(USER), on_text=on_text)).message.content == "done"
    assert "".join(pieces) == ("done" if stream else "")


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (503, True), (400, False)])
async def test_error_answers_say_whether_to_retry_and_never_the_key(
    server: ChatServer, status: int, retryable: bool
) -> None:
    # the server quotes the key back, as some do in their error messages
    name = server.answer(f"fails-{status}", {"status": status, "error": f"bad key {KEY}"})
    with pytest.raises(ModelError, match=str(status)) as failed:
        await _tier(server, name).chat(ChatRequest(USER))
    assert failed.value.retryable is retryable
    assert KEY not in str(failed.value)
    assert f"{server.url}/chat/completions answered {status}" in str(failed.value)


@pytest.mark.parametrize(
    ("answer", "stream"),
    [({"body": {"not": "a completion"}}, False), ({"raw": "hello"}, False), ({"raw": "hi"}, True)],
)
async def test_an_answer_that_is_not_a_completion(
    server: ChatServer, answer: dict[str, Any], stream: bool
) -> None:
    name = server.answer(f"broken-{answer}-{stream}", answer)

    async def sink(piece: str) -> None:
        pass

    with pytest.raises(ModelError, match="not a"):
        await _tier(server, name).chat(ChatRequest(USER), on_text=sink if stream else None)


async def test_a_slow_server_times_out_retryably(server: ChatServer) -> None:
    name = server.answer("slow", {"delay": 3, "content": "late"})
    with pytest.raises(ModelError, match=r"did not answer within 0\.5 s") as slow:
        await _tier(server, name, timeout="0.5").chat(ChatRequest(USER))
    assert slow.value.retryable


async def test_a_stream_cut_short_is_retryable(server: ChatServer) -> None:
    name = server.answer("cut", {"content": "a long answer cut short", "break_after": 3})

    async def sink(piece: str) -> None:
        pass

    with pytest.raises(ModelError, match="broke off its answer") as cut:
        await _tier(server, name).chat(ChatRequest(USER), on_text=sink)
    assert cut.value.retryable
    assert KEY not in str(cut.value)


async def test_an_error_of_the_text_sink_is_its_own(server: ChatServer) -> None:
    name = server.answer("sink", {"content": "some streamed text"})

    async def sink(piece: str) -> None:
        raise LookupError("the watcher is gone")

    with pytest.raises(LookupError, match="watcher"):
        await _tier(server, name).chat(ChatRequest(USER), on_text=sink)


async def test_no_server_is_retryable() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    model = OpenAIChat(f"http://127.0.0.1:{port}/v1", "x", timeout=5)
    with pytest.raises(ModelError, match="cannot reach") as down:
        await model.chat(ChatRequest(USER))
    assert down.value.retryable


async def test_a_keyless_endpoint_and_the_legacy_tier_form(server: ChatServer) -> None:
    model = model_from_env("small", {"SWARMLOG_MODEL_SMALL": f"openai:{server.url}/legacy"})
    reply = await model.chat(ChatRequest([Message(role="user", content="quiet")]))
    assert reply.message.content == "QUIET"
    (request,) = server.requests("legacy")
    assert KEY not in json.dumps(request)
    assert request["body"]["temperature"] == 0  # the default, as before per-tier options


@pytest.mark.parametrize("stream", [False, True])
async def test_a_qualified_tool_name_travels_as_the_api_takes_it(
    server: ChatServer, stream: bool
) -> None:
    # the API takes [A-Za-z0-9_-] only; an MCP tool's qualified name has a dot
    clock = ToolSpec(name="time.get_current_time", description="The time now.")
    wire_call = {"id": "call_t", "name": "time_get_current_time", "arguments": "{}"}
    name = server.answer(f"qualified-{stream}", {"tool_calls": [wire_call]}, {"content": "noon"})
    model = _tier(server, name)

    async def sink(piece: str) -> None:
        pass

    on_text = sink if stream else None
    first = await model.chat(ChatRequest(USER, tools=[clock, WEATHER]), on_text=on_text)
    assert first.message.tool_calls == (
        ToolCall(id="call_t", name="time.get_current_time", arguments="{}"),
    )
    answer = Message(role="tool", tool_call_id="call_t", content="12:00")
    await model.chat(
        ChatRequest([*USER, first.message, answer], tools=[clock, WEATHER]), on_text=on_text
    )
    sent = [r["body"] for r in server.requests(name)]
    assert [t["function"]["name"] for t in sent[0]["tools"]] == ["time_get_current_time", "weather"]
    assert sent[1]["messages"][2]["tool_calls"][0]["function"]["name"] == "time_get_current_time"
