"""LLM agents for test_ai_calls.py (imported by daemons as ``tests.e2e.toolagents``), on the
offline model with scripts, so their tool loops need no key and no network but the test's own
MCP server.

The counter server's URL comes from the environment the daemon inherits (``agent start`` runs
with the test's environment): an agent class is declared before the test knows the port the
server chose. Files the tools write are in ``AIE2E_SHARED``, a folder the test also names in
``SWARMLOG_AGENT_PATHS`` so that the confined agent processes may write there.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from swarmlog import LLMAgent, tool
from swarmlog.agents.policy.retry import RetryPolicy
from swarmlog.agents.tools import MCPServer

CRASH_URL = "AIE2E_CRASH_COUNTER_URL"
PIN_URL = "AIE2E_PIN_COUNTER_URL"
SHARED = "AIE2E_SHARED"


def _counter(variable: str) -> tuple[MCPServer, ...]:
    # Unset only where the class is imported for no run (lint, a listing): any URL will do.
    return (MCPServer(name="counter", url=os.environ.get(variable, "http://127.0.0.1:9/mcp")),)


class Crasher(LLMAgent):
    """Records a note at the counter server, then calls ``crash_once``, which SIGKILLs this
    process the first time any replica calls it: after the MCP call was journaled, before the
    task's result."""

    role = "crasher"
    capabilities = ("crash",)
    system_prompt = "Record the note, then take the risk."
    mcp_servers = _counter(CRASH_URL)
    offline_script = (
        {"tool_calls": [{"name": "counter.record", "arguments": {"note": "exactly once"}}]},
        {"tool_calls": [{"name": "crash_once", "arguments": {"why": "kill -9"}}]},
        {"content": "recorded once, survived the crash"},
    )

    @tool
    def crash_once(self, why: str, idempotency_key: str) -> str:
        """Die the first time (SIGKILL, nothing cleaned up); say so afterwards."""
        shared = Path(os.environ[SHARED])
        with (shared / "crash_calls.jsonl").open("a") as f:
            f.write(json.dumps({"pid": os.getpid(), "key": idempotency_key, "why": why}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        marker = shared / "crashed"
        if not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return "survived"


class Pinned(LLMAgent):
    """Counts once per task at the counter server, whose ``count`` the test redefines."""

    role = "pinned"
    capabilities = ("count",)
    system_prompt = "Count this task."
    mcp_servers = _counter(PIN_URL)
    offline_script = (
        {"tool_calls": [{"name": "counter.count", "arguments": {"label": "pinned"}}]},
        {"content": "counted"},
    )


def _echoes(turns: int) -> tuple[dict[str, Any], ...]:
    call = {"name": "echo_word", "arguments": {"word": "again"}}
    return (*({"tool_calls": [call]} for _ in range(turns)), {"content": "every word echoed"})


class Thrifty(LLMAgent):
    """A script of many tool turns (unbudgeted, 12 model calls of about 700 tokens in all) on
    an agent budget that pays for only some of them."""

    role = "thrifty"
    capabilities = ("echo",)
    system_prompt = "Echo each word with the tool, one call per turn."
    budget_tokens = 400
    retry = RetryPolicy(max_attempts=1)
    max_turns = 16
    offline_script = _echoes(11)

    @tool
    def echo_word(self, word: str) -> str:
        """The word, as it came."""
        return word


class Frugal(Thrifty):
    """Thrifty with no budget of its own: what stops it is its workflow's."""

    role = "frugal"
    capabilities = ("echo-frugally",)
    budget_tokens = None


class Lavish(Thrifty):
    """One model call is all it makes; its budget is for the test to set against its input."""

    role = "lavish"
    capabilities = ("echo-lavishly",)
    budget_tokens = 560
    offline_script = ({"content": "done"},)


class Spender(Thrifty):
    """Two model calls around a tool that waits until ``PARTIES`` tasks are in it (a barrier
    in the shared folder): tasks of one workflow certainly running at the same time, whose
    second calls each write all the answer they are allowed."""

    role = "spender"
    capabilities = ("spend",)
    budget_tokens = None
    # The last answer is as long as it may be: it takes all the tokens its call is allowed.
    offline_script = (*_echoes(1)[:1], {"content": "word " * 5000})
    PARTIES = 2

    @tool
    def echo_word(self, word: str, idempotency_key: str) -> str:
        """The word, once every party has come."""
        shared = Path(os.environ[SHARED]) / "barrier"
        shared.mkdir(exist_ok=True)
        (shared / idempotency_key).touch()
        deadline = time.monotonic() + 10  # then on alone: a party refused its call never comes
        while len(list(shared.iterdir())) < self.PARTIES and time.monotonic() < deadline:
            time.sleep(0.02)  # a barrier between processes, in a test agent's tool
        return word


class Talker(LLMAgent):
    """One model call with a long answer: its partial text is announced to the task's watchers
    word by word as the offline model writes it."""

    role = "talker"
    capabilities = ("talk",)
    system_prompt = "Talk."
    offline_script = ({"content": " ".join(f"word{i}" for i in range(200))},)
