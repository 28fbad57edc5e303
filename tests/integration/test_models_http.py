"""The OpenAI-compatible adapter against a local HTTP server that speaks the protocol, and the
offline model and tier configuration."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from swarmlog.agents.models import (
    ChatMessage,
    OfflineModel,
    OpenAICompatible,
    model_from_env,
)
from swarmlog.errors import ConfigError, ModelError

pytestmark = pytest.mark.integration

KEY = "sk-test-not-a-real-key"


class ChatServer(BaseHTTPRequestHandler):
    """A minimal chat-completions endpoint: echoes the last user message in upper case."""

    seen: list[dict[str, Any]] = []

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ChatServer.seen.append(
            {"path": self.path, "auth": self.headers.get("Authorization"), **body}
        )
        if body["model"] == "busy":
            self._send(429, {"error": {"message": "rate limited"}})
        elif body["model"] == "broken":
            self._send(200, {"not": "a completion"})
        else:
            last = body["messages"][-1]["content"]
            self._send(
                200,
                {
                    "model": body["model"],
                    "choices": [{"message": {"role": "assistant", "content": last.upper()}}],
                    "usage": {"prompt_tokens": 7, "completion_tokens": 3},
                },
            )

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), ChatServer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


async def test_a_chat_completion_over_http(server: str) -> None:
    ChatServer.seen.clear()
    model = OpenAICompatible(server, "tiny", api_key=KEY)
    answer = await model.complete([ChatMessage("system", "be brief"), ChatMessage("user", "hi")])
    assert (answer.text, answer.model, answer.prompt_tokens, answer.completion_tokens) == (
        "HI",
        "tiny",
        7,
        3,
    )
    (request,) = ChatServer.seen
    assert request["path"] == "/v1/chat/completions"
    assert request["auth"] == f"Bearer {KEY}"
    assert request["messages"][0] == {"role": "system", "content": "be brief"}
    assert KEY not in repr(model)


async def test_failures_say_whether_to_retry(server: str) -> None:
    with pytest.raises(ModelError, match="429") as busy:
        await OpenAICompatible(server, "busy").complete([ChatMessage("user", "x")])
    assert busy.value.retryable
    with pytest.raises(ModelError, match="not a chat completion"):
        await OpenAICompatible(server, "broken").complete([ChatMessage("user", "x")])
    with pytest.raises(ModelError, match="cannot reach") as down:
        await OpenAICompatible("http://127.0.0.1:9", "x", timeout=2).complete(
            [ChatMessage("user", "x")]
        )
    assert down.value.retryable


async def test_the_offline_model_is_deterministic_and_counts_tokens() -> None:
    model = OfflineModel()
    one = await model.complete([ChatMessage("user", "Summarise the report. It is long.")])
    two = await model.complete([ChatMessage("user", "Summarise the report. It is long.")])
    other = await model.complete([ChatMessage("user", "Something else")])
    assert one == two
    assert one.text != other.text
    assert "Summarise the report" in one.text
    assert one.prompt_tokens > 0
    assert one.completion_tokens > 0


def test_tiers_map_to_models_from_the_environment(server: str) -> None:
    env = {"SWARMLOG_MODEL_LARGE": f"openai:{server}/big", "SWARMLOG_MODEL_LARGE_KEY": KEY}
    large = model_from_env("large", env)
    assert isinstance(large, OpenAICompatible)
    assert (large.base_url, large.model) == (server, "big")
    assert isinstance(model_from_env("small", env), OfflineModel)
    with pytest.raises(ConfigError, match="openai:<base url>/<model name>"):
        model_from_env("large", {"SWARMLOG_MODEL_LARGE": "gpt"})
