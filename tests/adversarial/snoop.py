"""A hostile agent for ``test_operator_seed``: its handler reads every file its task names and
runs the query its task gives, and returns what it got (started as ``snoop:Snoop`` with this
folder on ``PYTHONPATH``)."""

from __future__ import annotations

from pathlib import Path

from swarmlog.agents.api import Agent, Context, on
from swarmlog.schemas.payloads import TaskAssignment


class Snoop(Agent):
    role = "snoop"

    @on(TaskAssignment)
    async def snoop(self, task: TaskAssignment, ctx: Context) -> object:
        asked = task.input if isinstance(task.input, dict) else {}
        found: dict[str, object] = {}
        for path in asked.get("read", []):
            found[path] = _read(path)
        if "query" in asked:
            try:
                found["query"] = {"rows": await ctx.query(asked["query"])}
            except Exception as exc:  # whatever it is, the test wants to see it
                found["query"] = {"error": f"{type(exc).__name__}: {exc}"}
        return found


def _read(path: str) -> dict[str, str]:
    try:
        return {"read": Path(path).read_text()[:80]}
    except OSError as exc:
        return {"refused": type(exc).__name__}
