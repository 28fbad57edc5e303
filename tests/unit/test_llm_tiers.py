"""Tiers map to models from the environment (bad values are one line saying what to set); the
request the OpenAI-compatible adapter sends."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from swarmlog.agents.llm import OfflineModel, OpenAIChat, model_from_env
from swarmlog.agents.llm.messages import ChatRequest, Message, ToolCall, ToolSpec
from swarmlog.agents.llm.tiers import DEFAULT_BASE_URL
from swarmlog.agents.llm.wire import ToolNames, chat_request
from swarmlog.errors import ConfigError

KEY = "sk-tier-secret-key"
BASE = "http://127.0.0.1:8000/v1"


def _openai(env: dict[str, str], tier: str = "large") -> OpenAIChat:
    model = model_from_env(tier, env)
    assert isinstance(model, OpenAIChat)
    return model


def test_offline_is_the_default() -> None:
    model = model_from_env("small", {})
    assert isinstance(model, OfflineModel)
    assert model.name == "offline-small"
    assert model.script == ()
    assert model_from_env("", {"SWARMLOG_MODEL_DEFAULT": "offline"}).name == "offline-default"


def test_an_openai_tier_with_its_settings() -> None:
    env = {
        "SWARMLOG_MODEL_LARGE": "openai",
        "SWARMLOG_MODEL_LARGE_NAME": "meta-llama/llama-3.1-8b-instruct",
        "SWARMLOG_MODEL_LARGE_BASE_URL": BASE + "/",
        "SWARMLOG_MODEL_LARGE_KEY": KEY,
        "SWARMLOG_MODEL_LARGE_TEMPERATURE": "0.7",
        "SWARMLOG_MODEL_LARGE_MAX_TOKENS": "256",
        "SWARMLOG_MODEL_LARGE_TIMEOUT": "12.5",
        "SWARMLOG_MODEL_LARGE_HEADERS": '{"X-Gateway-Key": "hdr-secret"}',
    }
    model = _openai(env)
    assert (model.base_url, model.name) == (BASE, "meta-llama/llama-3.1-8b-instruct")
    assert (model.temperature, model.max_tokens, model.timeout) == (0.7, 256, 12.5)
    assert model.headers == {"X-Gateway-Key": "hdr-secret"}
    assert KEY not in repr(model)
    assert "hdr-secret" not in repr(model)
    assert "X-Gateway-Key" in repr(model)


def test_the_defaults_of_an_openai_tier() -> None:
    model = _openai({"SWARMLOG_MODEL_LARGE": "openai", "SWARMLOG_MODEL_LARGE_NAME": "gpt-4o-mini"})
    assert model.base_url == DEFAULT_BASE_URL
    assert (model.temperature, model.max_tokens, model.timeout, model.headers) == (
        0.0,
        None,
        60.0,
        {},
    )
    assert (
        _openai({**_one_line("#x"), "SWARMLOG_MODEL_LARGE_TEMPERATURE": "none"}).temperature is None
    )


def _one_line(rest: str) -> dict[str, str]:
    return {"SWARMLOG_MODEL_LARGE": f"openai:{BASE}{rest}"}


def test_the_one_line_forms() -> None:
    hashed = _openai(_one_line("#meta-llama/llama-3.1-8b-instruct"))
    assert (hashed.base_url, hashed.name) == (BASE, "meta-llama/llama-3.1-8b-instruct")
    legacy = _openai(_one_line("/llama3.1"))
    assert (legacy.base_url, legacy.name) == (BASE, "llama3.1")
    keyed = _openai({**_one_line("#m"), "SWARMLOG_MODEL_LARGE_MAX_TOKENS": "9"})
    assert keyed.max_tokens == 9


@pytest.mark.parametrize(
    ("env", "says"),
    [
        (
            {"SWARMLOG_MODEL_LARGE": "gpt"},
            "use 'offline', or 'openai' with SWARMLOG_MODEL_LARGE_NAME",
        ),
        ({"SWARMLOG_MODEL_LARGE": "openai"}, "set SWARMLOG_MODEL_LARGE_NAME"),
        ({"SWARMLOG_MODEL_LARGE": "openai:gpt"}, r"openai:<base url>#<model name>"),
        ({"SWARMLOG_MODEL_LARGE": f"openai:{BASE}#"}, r"openai:<base url>#<model name>"),
        (
            {"SWARMLOG_MODEL_LARGE": "openai:ftp://host#m"},
            "the base URL 'ftp://host' is not http",
        ),
        (
            {**_one_line("#m"), "SWARMLOG_MODEL_LARGE_NAME": "n"},
            "unset SWARMLOG_MODEL_LARGE_NAME and SWARMLOG_MODEL_LARGE_BASE_URL",
        ),
        ({**_one_line("#m"), "SWARMLOG_MODEL_LARGE_TEMPERATURE": "hot"}, "0 to 2, or 'none'"),
        ({**_one_line("#m"), "SWARMLOG_MODEL_LARGE_TEMPERATURE": "3"}, "0 to 2"),
        ({**_one_line("#m"), "SWARMLOG_MODEL_LARGE_TEMPERATURE": "nan"}, "0 to 2"),
        ({**_one_line("#m"), "SWARMLOG_MODEL_LARGE_MAX_TOKENS": "0"}, "at least 1"),
        ({**_one_line("#m"), "SWARMLOG_MODEL_LARGE_MAX_TOKENS": "1.5"}, "whole number"),
        ({**_one_line("#m"), "SWARMLOG_MODEL_LARGE_TIMEOUT": "-1"}, "above 0"),
        ({**_one_line("#m"), "SWARMLOG_MODEL_LARGE_HEADERS": "[1]"}, "JSON object"),
        ({**_one_line("#m"), "SWARMLOG_MODEL_LARGE_HEADERS": '{"A": 1}'}, "string values"),
    ],
)
def test_bad_settings_say_what_to_set(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError, match=says) as bad:
        model_from_env("large", env)
    assert "\n" not in str(bad.value)


def test_an_unusable_header_setting_never_quotes_its_value() -> None:
    env = {**_one_line("#m"), "SWARMLOG_MODEL_LARGE_HEADERS": '{"Key": hdr-secret}'}
    with pytest.raises(ConfigError, match="SWARMLOG_MODEL_LARGE_HEADERS: not JSON") as bad:
        model_from_env("large", env)
    assert "hdr-secret" not in str(bad.value)


def test_an_offline_tier_reads_its_script(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps([{"tool_calls": [{"name": "t", "arguments": {"a": 1}}]}]))
    env = {"SWARMLOG_MODEL_SMALL_SCRIPT": str(script)}
    model = model_from_env("small", env)
    assert isinstance(model, OfflineModel)
    assert [c.name for c in model.script[0].tool_calls] == ["t"]


@pytest.mark.parametrize(
    ("content", "says"),
    [(None, "cannot read it"), ("{}", "not a script"), ("[{}]", "turn 1 says nothing")],
)
def test_a_bad_script_file_says_so(tmp_path: Path, content: str | None, says: str) -> None:
    script = tmp_path / "script.json"
    if content is not None:
        script.write_text(content)
    with pytest.raises(ConfigError, match=f"SWARMLOG_MODEL_SMALL_SCRIPT=.*{says}"):
        model_from_env("small", {"SWARMLOG_MODEL_SMALL_SCRIPT": str(script)})


def test_an_offline_agent_never_imports_openai() -> None:
    # In a process of its own: this one may have imported the SDK already (other tests).
    program = textwrap.dedent(
        """
        import asyncio, sys
        import swarmlog.agents.runtime
        from swarmlog.agents.llm import ChatRequest, Message, model_from_env
        ask = ChatRequest([Message(role="user", content="hi")])
        reply = asyncio.run(model_from_env("small", {}).chat(ask))
        assert reply.message.content
        # an openai tier loads the SDK only when it is called
        model_from_env("large", {"SWARMLOG_MODEL_LARGE": "openai:http://127.0.0.1:9#m"})
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("openai", "httpx", "httpx2")))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_tool_names_the_api_refuses_get_names_it_takes_and_back() -> None:
    long = "server." + "x" * 70
    names = ToolNames(["word_count", "time.get_current_time", "a.b", "a_b", long, "a-b"])
    assert names.wire("word_count") == "word_count"
    assert names.wire("time.get_current_time") == "time_get_current_time"
    assert names.wire("a_b") == "a_b"
    assert names.wire("a.b").startswith("a_b_")  # "a_b" is taken: a digest tells them apart
    assert len(names.wire(long)) <= 64
    wires = [names.wire(n) for n in ("word_count", "time.get_current_time", "a.b", "a_b", long)]
    assert len(set(wires)) == len(wires)
    for name in ("time.get_current_time", "a.b", long, "a-b"):
        assert names.ours(names.wire(name)) == name
    assert names.ours("unknown") == "unknown"


def test_the_request_body() -> None:
    call = ToolCall(id="c1", name="time.now", arguments="{}")
    request = ChatRequest(
        [
            Message(role="user", content="hi", name="ann"),
            Message(role="assistant", tool_calls=(call,)),
            Message(role="tool", tool_call_id="c1", content="noon"),
        ],
        tools=[ToolSpec(name="time.now")],
        output_schema={"title": "My Plan!", "type": "object"},
        max_tokens=5,
    )
    body, _ = chat_request("m", request, temperature=None)
    assert body["messages"] == [
        {"role": "user", "content": "hi", "name": "ann"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "time_now", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "content": "noon", "tool_call_id": "c1"},
    ]
    assert body["tools"][0]["function"] == {
        "name": "time_now",
        "description": "",
        "parameters": {"type": "object", "properties": {}},
    }
    assert body["response_format"]["json_schema"]["name"] == "My_Plan_"
    assert body["max_tokens"] == 5
    assert "temperature" not in body
