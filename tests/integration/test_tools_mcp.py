"""Toolboxes against real MCP servers: ``mcp-server-time`` from the package index over stdio, and
a FastMCP server (``mcp_counter.py``) over streamable HTTP in its own process, which counts the
calls it sees and changes its tools on request (pinning)."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest

from swarmlog.agents.tools import MCPServer, Toolbox, tool, tool_digest
from swarmlog.errors import ToolServerError
from waiting import until, wait_until

pytestmark = pytest.mark.integration

HERE = Path(__file__).parent
TIME_SERVER = Path(sysconfig.get_path("scripts")) / "mcp-server-time"
"""The console script the ``mcp-server-time`` distribution installs: started as a user would."""


@dataclass
class Counter:
    url: str
    process: subprocess.Popen[bytes]
    state: Path

    def calls(self, tool: str | None = None) -> list[dict[str, Any]]:
        """The calls the server saw, in order, as it recorded them."""
        path = self.state / "calls.jsonl"
        seen = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        return [c for c in seen if tool is None or c["tool"] == tool]

    def server(self, **options: Any) -> MCPServer:
        return MCPServer(name="counter", url=self.url, **options)


@pytest.fixture
def counter(tmp_path: Path) -> Iterator[Counter]:
    """A fresh counter server in its own process, on a port it chose itself."""
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, str(HERE / "mcp_counter.py"), str(tmp_path)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        port_file = tmp_path / "port"
        wait_until(lambda: port_file.exists() or process.poll() is not None, timeout=30)
        assert process.poll() is None, (tmp_path / "server.log").read_text()
        yield Counter(f"http://127.0.0.1:{port_file.read_text()}/mcp", process, tmp_path)
    finally:
        process.kill()
        process.wait(timeout=10)
        log.close()


class Clerk:
    """An agent with one Python tool and the time server (the class attributes of an Agent)."""

    role: ClassVar[str] = "clerk"
    mcp_servers: ClassVar[tuple[MCPServer, ...]] = (
        MCPServer(name="time", command=(str(TIME_SERVER),)),
    )

    @tool
    def word_count(self, text: str) -> int:
        """Count the words of a text."""
        return len(text.split())


async def test_the_time_server_over_stdio_offers_and_answers() -> None:
    async with Toolbox.open(Clerk()) as box:
        specs = {s.name: s for s in box.specs()}
        assert {"time.get_current_time", "time.convert_time", "word_count"} <= set(specs)
        assert box.servers() == ["time"]
        assert box.server_of("time.get_current_time") == "time"
        now = specs["time.get_current_time"]
        assert now.parameters["required"] == ["timezone"]
        assert {p.name: p.digest for p in box.pins()}["time.get_current_time"] == tool_digest(now)

        outcome = await box.call("time.get_current_time", '{"timezone": "UTC"}', "task-1.t1")
        assert outcome.status == "ok", outcome.error
        assert (outcome.server, outcome.definition) == ("time", tool_digest(now))
        assert set(outcome.result) == {"timezone", "datetime", "day_of_week", "is_dst"}
        assert outcome.result["timezone"] == "UTC"
        told = datetime.fromisoformat(outcome.result["datetime"])
        assert abs(told - datetime.now(UTC)) < timedelta(minutes=5)
        assert outcome.result["day_of_week"] == told.strftime("%A")
        assert outcome.duration_ms >= 0

        # the server's own refusal is an error the model can read, not a crash
        wrong = await box.call("time.get_current_time", '{"timezone": "Mars/Olympus"}', "t.t2")
        assert wrong.status == "error"
        assert "Mars/Olympus" in wrong.error
        # arguments that break the schema never reach the server
        typed = await box.call("time.get_current_time", '{"timezone": 3}', "t.t3")
        assert typed.status == "error"
        assert typed.error == (
            "the arguments of time.get_current_time do not match its parameters:"
            " 3 is not of type 'string' - at $.timezone"
        )
        both = await box.call("word_count", '{"text": "one two three"}', "t.t4")
        assert (both.status, both.result, both.server) == ("ok", 3, "")


async def test_the_counter_over_http_sees_each_call_exactly_once(counter: Counter) -> None:
    async with Toolbox.open(servers=[counter.server()]) as box:
        first = await box.call("counter.count", '{"label": "a"}', "task-1.t1")
        second = await box.call("counter.count", '{"label": "b"}', "task-1.t2")
        assert (first.status, first.result) == ("ok", {"label": "a", "calls": 1})
        assert second.result == {"label": "b", "calls": 2}
        assert [c["label"] for c in counter.calls("count")] == ["a", "b"]
        refused = await box.call("counter.count", '{"label": 7}', "task-1.t3")
        assert refused.status == "error"
        assert len(counter.calls()) == 2  # the server never saw the bad call


async def test_a_tool_that_takes_an_idempotency_key_gets_the_call_id(counter: Counter) -> None:
    async with Toolbox.open(servers=[counter.server()]) as box:
        spec = {s.name: s for s in box.specs()}["counter.record"]
        assert "idempotency_key" not in spec.parameters["properties"]
        assert spec.parameters["required"] == ["note"]
        # whatever key the model makes up, the server gets the call's id
        once = await box.call("counter.record", '{"note": "n", "idempotency_key": "x"}', "t9.t1")
        again = await box.call("counter.record", '{"note": "n"}', "t9.t1")
        assert once.result == {"note": "n", "key": "t9.t1", "times": 1}
        assert again.result["times"] == 2  # a retry with the same call id: the server can tell
        assert [c["key"] for c in counter.calls("record")] == ["t9.t1", "t9.t1"]


@pytest.mark.parametrize("change", ["description", "schema"])
async def test_a_tool_changed_under_the_agent_is_refused(counter: Counter, change: str) -> None:
    agent = Clerk()
    async with Toolbox.open(agent, servers=[counter.server()]) as box:
        pinned = {p.name: p.digest for p in box.pins()}["counter.count"]
        assert (await box.call("counter.count", '{"label": "before"}', "t.t1")).status == "ok"
        changed = await box.call("counter.mutate", json.dumps({"what": change}), "t.t2")
        assert changed.status == "ok", changed.error
        # the server announces the change (tools/list_changed): the box re-lists at once
        await until(lambda: box.known_drift().changed == ("counter.count",))

        outcome = await box.call("counter.count", '{"label": "after"}', "t.t3")
        assert outcome.status == "refused"
        assert outcome.error == (
            "tool definition changed since registration: re-register the agent"
            " (swarmlog agent restart clerk)"
        )
        assert (outcome.server, outcome.definition) == ("counter", pinned)
        assert [c["label"] for c in counter.calls("count")] == ["before"]
        # the rest of the box goes on; the model is still offered the pinned definition
        assert (await box.call("word_count", '{"text": "a b"}', "t.t4")).result == 2
        assert {p.name: p.digest for p in box.pins()}["counter.count"] == pinned
        assert (await box.drift()).describe() == "changed: counter.count"


async def test_a_tool_that_appeared_or_vanished_is_refused(counter: Counter) -> None:
    async with Toolbox.open(servers=[counter.server()]) as box:
        late = await box.call("counter.extra", "{}", "t.t1")
        assert late.status == "refused"
        assert late.error.startswith("unknown tool 'counter.extra'")
        assert (await box.call("counter.mutate", '{"what": "add"}', "t.t2")).status == "ok"
        appeared = await box.call("counter.extra", "{}", "t.t3")
        assert appeared.status == "refused"
        assert appeared.error.startswith("tool counter.extra appeared after registration: ")
        assert (await box.call("counter.mutate", '{"what": "remove"}', "t.t4")).status == "ok"
        gone = await box.call("counter.count", '{"label": "x"}', "t.t5")
        assert gone.status == "refused"
        assert gone.error.startswith("tool counter.count is no longer offered by its server: ")
        drift = await box.drift()
        assert (drift.appeared, drift.vanished, drift.changed) == (
            ("counter.extra",),
            ("counter.count",),
            (),
        )
        assert counter.calls() == []


async def test_a_server_that_went_away_raises_rather_than_answering(counter: Counter) -> None:
    async with Toolbox.open(servers=[counter.server(timeout=5)]) as box:
        assert (await box.call("counter.count", '{"label": "a"}', "t.t1")).status == "ok"
        counter.process.kill()
        counter.process.wait(timeout=10)
        with pytest.raises(ToolServerError, match=r"MCP server counter .* failed when") as e:
            await box.call("counter.count", '{"label": "b"}', "t.t2")
        assert e.value.server == "counter"


@pytest.mark.parametrize(
    ("command", "says"),
    [
        (("/nonexistent/mcp-server",), "failed when starting: .*No such file"),
        ((sys.executable, "-c", "pass"), "failed when starting: Connection closed"),
        # reads its input and never answers
        (
            (sys.executable, "-c", "import sys\nfor _ in sys.stdin: pass"),
            "did not answer within 1s when starting",
        ),
    ],
)
async def test_a_server_that_does_not_start_says_which_and_why(
    command: tuple[str, ...], says: str
) -> None:
    good = MCPServer(name="time", command=(str(TIME_SERVER),))
    bad = MCPServer(name="broken", command=command, timeout=1)
    with pytest.raises(ToolServerError, match=f"MCP server broken .*{says}"):
        async with Toolbox.open(servers=[good, bad]):
            pass


async def test_an_http_server_that_is_not_there(tmp_path: Path) -> None:
    nowhere = MCPServer(name="nowhere", url="http://127.0.0.1:9/mcp", timeout=2)
    with pytest.raises(ToolServerError, match=r"MCP server nowhere .*failed when starting"):
        async with Toolbox.open(servers=[nowhere]):
            pass


async def test_the_counter_over_stdio_counts_too(tmp_path: Path) -> None:
    stdio = MCPServer(
        name="counter",
        command=(sys.executable, str(HERE / "mcp_counter.py"), str(tmp_path), "--stdio"),
    )
    async with Toolbox.open(servers=[stdio]) as box:
        outcome = await box.call("counter.record", '{"note": "n"}', "t5.t2")
        assert outcome.result == {"note": "n", "key": "t5.t2", "times": 1}
    calls = (tmp_path / "calls.jsonl").read_text().splitlines()
    assert [json.loads(c)["key"] for c in calls] == ["t5.t2"]
