"""A hostile agent of another role tries to complete echo's task, and to date its events decades
away: a running system (echo and a second role as real daemons), the attacker a process of its
own holding only writer-1's key, publishing under its own prefix as its credential allows.

The workflow's result must be the honest one; every forged event is quarantined with a reason
that says whose task it is, and `audit verify` reports it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clikit import Cli, running
from hostile import attack

from waiting import wait_until

pytestmark = pytest.mark.e2e

WF = "wf-hijack"
TASK = f"{WF}-s1"
YEAR_NS = 365 * 86_400 * 10**9

FORGE = """
async def main(me):
    import time
    from swarmlog.bus.jetstream import JetStreamLog
    from swarmlog.agents.publisher import Publisher
    from swarmlog.schemas.payloads import AgentHeartbeat, Result, TaskAssignment

    log = await JetStreamLog.open(me.url, me.namespace, login=me.login)
    try:
        signed = Publisher(log, me.identity, me.namespace)  # its own key, its own prefix
        wf = {"workflow_id": WF}
        seqs = {}
        if PHASE == "offered":
            forged = Result(task_id=TASK, output={"echo": "PWNED", "by": "echo-1"})
            seqs["result"] = (await signed.publish(forged, **wf)).seq
            # Taking the task first, to answer it as its holder, is refused as well.
            grab = TaskAssignment(task_id=TASK, role="writer")
            seqs["assignment"] = (await signed.publish(grab, **wf)).seq
            seqs["result_after_assignment"] = (await signed.publish(forged, **wf)).seq
        elif PHASE == "dated":
            for name, years in (("future", 10), ("past", -30)):
                skewed = Publisher(
                    log,
                    me.identity,
                    me.namespace,
                    clock=lambda years=years: time.time_ns() + years * YEAR_NS,
                )
                beat = AgentHeartbeat(agent_id=me.agent_id)
                seqs[f"heartbeat_{name}"] = (await skewed.publish(beat)).seq
        else:
            late = Result(task_id=TASK, output={"echo": "PWNED AGAIN", "by": "echo-1"})
            seqs["result_while_running"] = (await signed.publish(late, **wf)).seq
        return seqs
    finally:
        await log.close()
"""


def forge(cli: Cli, phase: str) -> dict[str, int]:
    code = FORGE.replace("PHASE", repr(phase)).replace("WF", repr(WF)).replace("TASK", repr(TASK))
    code = code.replace("YEAR_NS", str(YEAR_NS))
    seqs: dict[str, int] = attack(cli, "writer-1", code)
    return seqs


def ok(out: Any) -> None:
    assert out.returncode == 0, out.stderr


def task_row(cli: Cli) -> dict[str, Any] | None:
    rows = cli.rows(
        f"SELECT status, role, output, completed_by FROM tasks WHERE task_id = '{TASK}'"
    )
    return rows[0] if rows else None


def quarantined(cli: Cli, seqs: dict[str, int]) -> dict[str, dict[str, Any]] | None:
    wanted = ", ".join(str(s) for s in seqs.values())
    rows = cli.rows(f"SELECT seq, reason, detail FROM quarantine WHERE seq IN ({wanted})")
    by_seq = {r["seq"]: r for r in rows}
    if len(by_seq) < len(seqs):
        return None
    return {name: by_seq[seq] for name, seq in seqs.items()}


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    """One running system for both attacks: echo-1 provisioned (key, queues, login) but not
    started, and a second role (indexer) whose replica writer-1, the attacker, runs as a daemon."""
    data: Path = tmp_path_factory.mktemp("hijack") / "data"
    with running(data) as cli:
        ok(cli("agent", "provision", "examples.echo:Echo"))
        ok(cli("agent", "start", "examples.indexer:Indexer", "--name", "writer", "--detach"))
        yield cli


def audited(cli: Cli) -> dict[int, str]:
    """What `audit verify --json` rejects, by stream sequence (it exits 1 when it finds any)."""
    audit = cli("audit", "verify", "--json")
    assert audit.returncode == 1, audit.stderr
    return {r["seq"]: r["reason"] for r in json.loads(audit.stdout)["rejected"]}


def test_a_forged_result_for_another_roles_task_is_quarantined_and_reported(system: Cli) -> None:
    cli = system
    data = json.dumps({"text": "hello", "work_ms": 2500})
    ok(cli("submit", "pipeline", "--stage", "text", "--data", data, "--workflow-id", WF))
    wait_until(lambda: (task_row(cli) or {}).get("status") == "offered", 30)

    # While echo is down, its step waits for it: writer-1 answers it, and takes it to answer.
    first = forge(cli, "offered")
    ok(cli("agent", "start", "examples.echo:Echo", "--detach"))
    wait_until(lambda: (task_row(cli) or {}).get("status") in ("running", "succeeded"), 30)
    # And again while echo-1 works on it.
    later = forge(cli, "running")

    def finished() -> dict[str, Any] | None:
        rows = cli.rows(f"SELECT status, result FROM workflows WHERE workflow_id = '{WF}'")
        return rows[0] if rows and rows[0]["status"] != "running" else None

    wait_until(lambda: finished() is not None, 60)
    flow = finished()
    assert flow is not None
    assert flow["status"] == "succeeded"
    assert json.loads(flow["result"]) == {"echo": "HELLO", "by": "echo-1"}
    row = task_row(cli)
    assert row is not None
    assert (row["role"], row["completed_by"]) == ("echo", "echo-1")
    assert json.loads(row["output"]) == {"echo": "HELLO", "by": "echo-1"}

    seqs = first | later
    wait_until(lambda: quarantined(cli, seqs) is not None, 30)
    found = quarantined(cli, seqs)
    assert found is not None
    for name in ("result", "result_after_assignment", "assignment", "result_while_running"):
        assert found[name]["reason"] == "not_permitted", (name, found[name])
        assert TASK in found[name]["detail"], found[name]
    assert "not assigned yet" in found["result"]["detail"]
    assert "router" in found["assignment"]["detail"]
    assert "assigned to role echo" in found["result_while_running"]["detail"]
    assert "writer-1" in found["result_while_running"]["detail"]
    rejected = audited(cli)
    for name, seq in seqs.items():
        assert rejected.get(seq) == "not_permitted", (name, seq, rejected)


def test_a_heartbeat_dated_decades_away_is_not_applied(system: Cli) -> None:
    cli = system
    seqs = forge(cli, "dated")
    wait_until(lambda: quarantined(cli, seqs) is not None, 30)
    found = quarantined(cli, seqs)
    assert found is not None
    assert found["heartbeat_future"]["reason"] == "bad_timestamp", found
    assert "after the server stored it" in found["heartbeat_future"]["detail"]
    assert found["heartbeat_past"]["reason"] == "bad_timestamp", found
    # Neither date reached the agent's row: its last heartbeat is its daemon's, of about now.
    (agent,) = cli.rows("SELECT last_heartbeat_at FROM agents WHERE agent_id = 'writer-1'")
    assert abs(agent["last_heartbeat_at"] - time.time_ns()) < 3600 * 10**9
    rejected = audited(cli)
    for name, seq in seqs.items():
        assert rejected.get(seq) == "bad_timestamp", (name, seq, rejected)
