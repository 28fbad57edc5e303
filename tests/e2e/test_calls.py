"""The call journal over a live system: an agent with tools granted by its credential
(`keys issue --tool --mcp`) journals a task's model and tool calls, signed with its own key and
published with its own login; `calls` lists them from the projections and `show TASK` prints the
conversation they make up."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from clikit import Cli

from swarmlog.agents.publisher import Publisher
from swarmlog.control.keystore import KeyStore
from swarmlog.control.system import open_log
from swarmlog.schemas.payloads import (
    ModelCallCompleted,
    ModelCallRequested,
    Payload,
    TaskAssignment,
    TokenUsage,
    ToolCallCompleted,
    ToolCallRequested,
)
from waiting import wait_until

pytestmark = pytest.mark.e2e

TASK, WF = "t-words", "wf-words"
ASK = {"role": "user", "content": "how many words in 'a b c', and what time is it?"}
WANTS_TOOLS = {
    "role": "assistant",
    "tool_calls": [
        {"id": "c1", "name": "word_count", "arguments": '{"text": "a b c"}'},
        {"id": "c2", "name": "time.get_current_time", "arguments": '{"timezone": "UTC"}'},
    ],
}
ANSWER = {"role": "assistant", "content": "3 words; it is noon UTC"}


def journal() -> list[Payload]:
    """One tool loop: the model asks for two tools, gets their answers, then answers."""
    model = {"task_id": TASK, "model": "offline"}
    tool = {"task_id": TASK}
    return [
        ModelCallRequested(
            **model,
            call_index=1,
            call_id=f"{TASK}.m1",
            digest="1" * 64,
            messages=[{"role": "system", "content": "count"}, ASK],
            tools=["word_count", "time.get_current_time"],
        ),
        ModelCallCompleted(
            **model,
            call_index=1,
            call_id=f"{TASK}.m1",
            status="ok",
            reply=WANTS_TOOLS,
            usage=TokenUsage(model="offline", prompt_tokens=30, completion_tokens=8),
            duration_ms=12,
        ),
        ToolCallRequested(
            **tool,
            call_index=1,
            call_id=f"{TASK}.t1",
            tool="word_count",
            arguments={"text": "a b c"},
            digest="2" * 64,
            definition="3" * 64,
        ),
        ToolCallCompleted(
            **tool, call_index=1, call_id=f"{TASK}.t1", tool="word_count", status="ok", result=3
        ),
        ToolCallRequested(
            **tool,
            call_index=2,
            call_id=f"{TASK}.t2",
            tool="time.get_current_time",
            server="time",
            arguments={"timezone": "UTC"},
            digest="4" * 64,
            definition="5" * 64,
        ),
        ToolCallCompleted(
            **tool,
            call_index=2,
            call_id=f"{TASK}.t2",
            tool="time.get_current_time",
            server="time",
            status="ok",
            result={"datetime": "12:00"},
            duration_ms=7,
        ),
        ModelCallRequested(
            **model,
            call_index=2,
            call_id=f"{TASK}.m2",
            digest="6" * 64,
            messages=[
                {"role": "tool", "tool_call_id": "c1", "name": "word_count", "content": "3"},
                {"role": "tool", "tool_call_id": "c2", "content": '{"datetime": "12:00"}'},
            ],
        ),
        ModelCallCompleted(
            **model,
            call_index=2,
            call_id=f"{TASK}.m2",
            status="ok",
            reply=ANSWER,
            usage=TokenUsage(model="offline", prompt_tokens=50, completion_tokens=9),
            duration_ms=15,
        ),
    ]


def publish_as(cli: Cli, agent_id: str, payloads: list[Payload], **fields: Any) -> list[int]:
    """Publish ``payloads`` signed with ``agent_id``'s key, logged in as ``agent_id``."""

    async def go() -> list[int]:
        settings = cli.settings()
        identity, _ = KeyStore(settings.keys_dir).agent(agent_id)
        async with open_log(settings, agent_id=agent_id) as log:
            published = await Publisher(log, identity, settings.namespace).publish_many(
                payloads, **fields
            )
        return [p.seq for p in published]

    return asyncio.run(go())


def test_calls_and_the_conversation_of_a_journaled_task(cli: Cli) -> None:
    for option, bad in (("--tool", "rm -rf"), ("--mcp", "Time")):
        refused = cli("keys", "issue", "worker", "--agent-id", "w0", option, bad)
        assert refused.returncode == 2
        assert f"{bad!r} is not" in refused.stderr, refused.stderr
        assert f"(see {option})" in refused.stderr
    issued = cli(
        "keys", "issue", "worker", "--agent-id", "w1", "--tool", "word_count", "--mcp", "time"
    )
    assert issued.returncode == 0, issued.stderr
    shown = json.loads(cli("keys", "show", "--json").stdout)["agents"]
    (w1,) = [a for a in shown if a["agent_id"] == "w1"]
    assert (w1["tools"], w1["mcp_servers"]) == (["word_count"], ["time"])

    cli.submit([TaskAssignment(task_id=TASK, role="worker")])
    seqs = publish_as(cli, "w1", journal(), workflow_id=WF)

    def listed() -> list[dict[str, Any]] | None:
        out = cli("calls", "--task", TASK, "--json")
        assert out.returncode == 0, out.stderr
        rows: list[dict[str, Any]] = json.loads(out.stdout)["calls"]
        return rows if len(rows) == 4 and all(r["completed_seq"] for r in rows) else None

    wait_until(lambda: listed() is not None, 30)
    rows = listed()
    assert rows is not None
    assert [(r["kind"], r["call_index"], r["model"] or r["tool"], r["status"]) for r in rows] == [
        ("model", 1, "offline", "ok"),
        ("tool", 1, "word_count", "ok"),
        ("tool", 2, "time.get_current_time", "ok"),
        ("model", 2, "offline", "ok"),
    ]
    first_model, _, mcp_tool, second_model = rows
    assert (first_model["requested_seq"], first_model["completed_seq"]) == (seqs[0], seqs[1])
    assert (first_model["prompt_tokens"], first_model["completion_tokens"]) == (30, 8)
    assert (second_model["call_id"], second_model["duration_ms"]) == (f"{TASK}.m2", 15)
    assert (mcp_tool["server"], mcp_tool["agent_id"], mcp_tool["workflow_id"]) == ("time", "w1", WF)
    assert (mcp_tool["requested_seq"], mcp_tool["completed_seq"]) == (seqs[4], seqs[5])
    assert set(first_model) == {
        "kind",
        "task_id",
        "workflow_id",
        "agent_id",
        "call_index",
        "call_id",
        "model",
        "tool",
        "server",
        "status",
        "prompt_tokens",
        "completion_tokens",
        "duration_ms",
        "requested_seq",
        "completed_seq",
        "error",
    }
    by_workflow = json.loads(cli("calls", "--workflow", WF, "--json").stdout)["calls"]
    assert by_workflow == rows
    assert json.loads(cli("calls", "--workflow", "other", "--json").stdout)["calls"] == []
    cli.env["COLUMNS"] = "200"  # rich folds what does not fit its terminal's width
    table = cli("calls")
    assert table.returncode == 0, table.stderr
    assert "time.get_current_time" in table.stdout
    assert "30+8" in table.stdout

    task = json.loads(cli("show", TASK, "--json").stdout)
    turns = [(t["kind"], t.get("role") or t.get("tool")) for t in task["conversation"]]
    assert turns == [
        ("message", "system"),
        ("message", "user"),
        ("reply", "assistant"),
        ("tool_call", "word_count"),
        ("tool_result", "word_count"),
        ("tool_call", "time.get_current_time"),
        ("tool_result", "time.get_current_time"),
        ("message", "tool"),
        ("message", "tool"),
        ("reply", "assistant"),
    ]
    text = cli("show", TASK)
    assert text.returncode == 0, text.stderr
    for line in (
        "user: how many words in 'a b c', and what time is it?",
        '-> word_count({"text": "a b c"})',
        f'call {TASK}.t2: time.get_current_time {{"timezone": "UTC"}}',
        f'result {TASK}.t2: time.get_current_time ok: {{"datetime": "12:00"}}',
        "tool word_count: 3",
        "assistant: 3 words; it is noon UTC",
    ):
        assert line in text.stdout, (line, text.stdout)

    counted = cli.rows("SELECT count(*) AS n FROM tool_calls")
    assert counted == [{"n": 2}]
    rejected = cli.rows("SELECT count(*) AS n FROM quarantine")
    assert rejected == [{"n": 0}]
