"""A hostile agent journals calls of tools its credential does not grant: a running system, the
attacker a process of its own holding only w1's key (granted the tool ``word_count`` and no MCP
server), publishing under its own prefix in a task it holds.

Its call of the granted tool is applied; every call of another tool (a Python tool, a tool of an
MCP server it was not granted, a "refused" answer to such a call) is quarantined as
``not_permitted`` with the tool named, never reaches ``tool_calls``, and `audit verify` reports it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from clikit import Cli
from hostile import attack

from swarmlog.schemas.payloads import TaskAssignment
from waiting import wait_until

pytestmark = pytest.mark.e2e

TASK = "t-tools"

CALLS = """
async def main(me):
    from swarmlog.agents.publisher import Publisher
    from swarmlog.bus.jetstream import JetStreamLog
    from swarmlog.schemas.payloads import ToolCallCompleted, ToolCallRequested

    def requested(index, tool, server=""):
        return ToolCallRequested(
            task_id=TASK, call_index=index, call_id=f"{TASK}.t{index}", tool=tool,
            server=server, arguments={"cmd": "cat /etc/shadow"}, digest="e" * 64,
        )

    log = await JetStreamLog.open(me.url, me.namespace, login=me.login)
    try:
        signed = Publisher(log, me.identity, me.namespace)  # its own key, its own prefix
        seqs = {}
        seqs["granted"] = (await signed.publish(requested(1, "word_count"))).seq
        seqs["python_tool"] = (await signed.publish(requested(2, "shell"))).seq
        seqs["mcp_tool"] = (await signed.publish(requested(3, "git.log", "git"))).seq
        refused = ToolCallCompleted(
            task_id=TASK, call_index=2, call_id=f"{TASK}.t2", tool="shell", status="refused"
        )
        seqs["refused_answer"] = (await signed.publish(refused)).seq
        return seqs
    finally:
        await log.close()
"""


def test_tool_calls_outside_the_credential_are_quarantined(cli: Cli) -> None:
    issued = cli("keys", "issue", "worker", "--agent-id", "w1", "--tool", "word_count")
    assert issued.returncode == 0, issued.stderr
    cli.submit([TaskAssignment(task_id=TASK, role="worker")])
    seqs: dict[str, int] = attack(cli, "w1", CALLS.replace("TASK", repr(TASK)))

    hostile = {name: seq for name, seq in seqs.items() if name != "granted"}

    def quarantined() -> dict[str, dict[str, Any]] | None:
        wanted = ", ".join(str(s) for s in hostile.values())
        rows = cli.rows(f"SELECT seq, reason, detail FROM quarantine WHERE seq IN ({wanted})")
        by_seq = {r["seq"]: r for r in rows}
        return {n: by_seq[s] for n, s in hostile.items()} if len(by_seq) == len(hostile) else None

    wait_until(lambda: quarantined() is not None, 30)
    found = quarantined()
    assert found is not None
    for name, tool in (
        ("python_tool", "shell"),
        ("mcp_tool", "git.log"),
        ("refused_answer", "shell"),
    ):
        assert found[name]["reason"] == "not_permitted", (name, found[name])
        assert f"tool {tool} is not granted" in found[name]["detail"], found[name]
        assert "w1" in found[name]["detail"]

    wait_until(lambda: cli.rows("SELECT count(*) AS n FROM tool_calls") == [{"n": 1}], 30)
    (row,) = cli.rows("SELECT call_index, tool, status, requested_seq FROM tool_calls")
    assert row == {
        "call_index": 1,
        "tool": "word_count",
        "status": "requested",
        "requested_seq": seqs["granted"],
    }
    calls = json.loads(cli("calls", "--task", TASK, "--json").stdout)["calls"]
    assert [c["tool"] for c in calls] == ["word_count"]

    audit = cli("audit", "verify", "--json")
    assert audit.returncode == 1, audit.stderr
    rejected = {r["seq"]: r["reason"] for r in json.loads(audit.stdout)["rejected"]}
    assert {seq: rejected.get(seq) for seq in hostile.values()} == dict.fromkeys(
        hostile.values(), "not_permitted"
    )
    assert seqs["granted"] not in rejected
