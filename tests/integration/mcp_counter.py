"""A streamable-HTTP MCP server for the tests, built on the SDK's FastMCP (``MCPServer`` in mcp 2).

    python mcp_counter.py STATE_DIR            # streamable HTTP
    python mcp_counter.py STATE_DIR --stdio    # the same tools over stdio

Over HTTP it listens on a free port of 127.0.0.1 and, once it serves, writes the port to
``STATE_DIR/port``.
Every call of ``count`` and ``record`` is appended to ``STATE_DIR/calls.jsonl`` (flushed and
fsynced before the answer), so a test can say how many times the server saw a call, even after
killing the client. ``mutate`` changes the tool list at run time and tells the client
(``tools/list_changed``), for the pinning tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any, Literal

import uvicorn
from mcp.server.mcpserver import Context, MCPServer

STATE = Path(sys.argv[1])
CALLS = STATE / "calls.jsonl"

server = MCPServer("counter", log_level="WARNING")


def _calls() -> list[dict[str, Any]]:
    if not CALLS.exists():
        return []
    return [json.loads(line) for line in CALLS.read_text().splitlines()]


def _append(record: dict[str, Any]) -> int:
    with CALLS.open("a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return len(_calls())


def count(label: str) -> dict[str, Any]:
    """Count one call; say how many calls this server has seen."""
    return {"label": label, "calls": _append({"tool": "count", "label": label})}


def count_weighted(label: str, weight: int = 1) -> dict[str, Any]:
    """Count one call; say how many calls this server has seen."""
    calls = _append({"tool": "count", "label": label, "weight": weight})
    return {"label": label, "calls": calls}


def record(note: str, idempotency_key: str) -> dict[str, Any]:
    """Record a note; say how many times this idempotency key was seen."""
    times = 1 + sum(1 for c in _calls() if c.get("key") == idempotency_key)
    _append({"tool": "record", "note": note, "key": idempotency_key})
    return {"note": note, "key": idempotency_key, "times": times}


def extra() -> str:
    """A tool that was not there when the client connected."""
    return "extra"


async def mutate(what: Literal["description", "schema", "add", "remove"], ctx: Context) -> str:
    """Change the tool list under a connected client and announce it."""
    if what == "description":
        server.remove_tool("count")
        server.add_tool(count, description="Count one call (now billed per call).")
    elif what == "schema":
        server.remove_tool("count")
        server.add_tool(count_weighted, name="count")
    elif what == "add":
        server.add_tool(extra)
    else:
        server.remove_tool("count")
    await ctx.session.send_tool_list_changed()
    return what


for function in (count, record, mutate):
    server.add_tool(function)


class _Server(uvicorn.Server):
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        port = sockets[0].getsockname()[1] if sockets else 0
        tmp = STATE / "port.tmp"
        tmp.write_text(str(port))
        tmp.rename(STATE / "port")  # whole or absent: the test never reads half a number


def main() -> None:
    if "--stdio" in sys.argv[2:]:
        server.run("stdio")
        return
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(server.streamable_http_app(), log_level="warning")
    asyncio.run(_Server(config).serve(sockets=[sock]))


if __name__ == "__main__":
    main()
