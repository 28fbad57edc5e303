"""The call journal's guarantees over a live system: LLM agents (offline model, scripted tool
loops) as detached replicas, a real MCP server over streamable HTTP in a process of its own that
counts the calls it sees, and a real ``kill -9``.

- A replica killed after its MCP call was journaled and before its result: another replica
  completes the task, and the server saw the call once. The call in flight at the crash (a
  Python tool) is the one at-least-once window: it runs again, with the same idempotency key.
- A tool redefined under a running agent is refused without reaching the server, reported on the
  log, and works again once ``agent restart`` re-registers the agent with fresh pins.
- A model call that would cross the agent's or the workflow's hard token budget is not made;
  ``budgets`` shows what was spent (the calls of a task that never had a result included), never
  more than the budget.
- A prompt that costs more tokens than a characters-based estimate (priced by its bytes, it
  cannot), and tasks of one workflow on two replicas at the same time: each reserves what its
  call may spend, the projection admits the reservations in log order, and together they stay
  within the workflow's budget.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pytest
from clikit import Cli, running
from toolagents import CRASH_URL, PIN_URL, SHARED

from swarmlog.agents.host.sandbox import PATHS_ENV
from swarmlog.agents.tools import MCPServer, Toolbox
from swarmlog.bus.subjects import live_subject
from swarmlog.control.client import Client
from swarmlog.control.keystore import KeyStore
from swarmlog.control.previews import TextPreview
from swarmlog.control.system import resolve_url
from swarmlog.schemas.payloads import TaskAssignment
from waiting import wait_until

pytestmark = pytest.mark.e2e

COUNTER = Path(__file__).parents[1] / "integration" / "mcp_counter.py"


@dataclass
class Counter:
    """The counter MCP server (tests/integration/mcp_counter.py) in its own process."""

    url: str
    state: Path

    def calls(self, tool: str) -> list[dict[str, Any]]:
        """The calls of ``tool`` the server saw, as it recorded them (fsynced before answering)."""
        path = self.state / "calls.jsonl"
        seen = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        return [c for c in seen if c["tool"] == tool]

    def mutate(self, what: str) -> None:
        """Have the server change its tools under its connected clients."""

        async def go() -> None:
            async with Toolbox.open(servers=[MCPServer(name="counter", url=self.url)]) as box:
                done = await box.call("counter.mutate", json.dumps({"what": what}), "test.mutate")
                assert done.status == "ok", done.error

        asyncio.run(go())


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    """One running system for the module; its agents may write to a shared folder."""
    base = tmp_path_factory.mktemp("ai-calls")
    shared = base / "shared"
    shared.mkdir()
    with running(base / "data") as cli:
        cli.env[SHARED] = str(shared)
        cli.env[PATHS_ENV] = str(shared)  # the confined agents may write there
        yield cli


@pytest.fixture
def counter(tmp_path: Path) -> Iterator[Counter]:
    """A fresh counter server on a port it chose itself."""
    with (tmp_path / "server.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(COUNTER), str(tmp_path)], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            port = tmp_path / "port"
            wait_until(lambda: port.exists() or process.poll() is not None, 30)
            assert process.poll() is None, (tmp_path / "server.log").read_text()
            yield Counter(f"http://127.0.0.1:{port.read_text()}/mcp", tmp_path)
        finally:
            process.kill()
            process.wait(timeout=10)


def start(cli: Cli, target: str, replicas: int = 1) -> None:
    """``agent start TARGET --detach``, with a short ack wait: work held by a replica that died
    goes to another within 2 s."""
    out = cli("agent", "start", target, "--replicas", str(replicas), "--detach", "--ack-wait", "2")
    assert out.returncode == 0, out.stderr


def status(cli: Cli, task_id: str) -> str | None:
    rows = cli.rows(f"SELECT status FROM tasks WHERE task_id = '{task_id}'")
    return str(rows[0]["status"]) if rows else None


def calls(cli: Cli, task_id: str) -> list[dict[str, Any]]:
    out = cli("calls", "--task", task_id, "--json")
    assert out.returncode == 0, out.stderr
    rows: list[dict[str, Any]] = json.loads(out.stdout)["calls"]
    return rows


def events(cli: Cli, task_id: str, *types: str) -> list[dict[str, Any]]:
    """The task's events of ``types`` in log order: type, sender, payload (decoded)."""
    listed = ", ".join(f"'{t}'" for t in types)
    rows = cli.rows(
        "SELECT type, sender, payload FROM events"
        f" WHERE subject LIKE '%.task.{task_id}.%' AND type IN ({listed}) ORDER BY seq"
    )
    return [{**r, "payload": json.loads(r["payload"])} for r in rows]


def test_a_replica_killed_after_its_tool_call_the_server_sees_the_call_once(
    cli: Cli, counter: Counter
) -> None:
    cli.env[CRASH_URL] = counter.url
    start(cli, "tests.e2e.toolagents:Crasher", replicas=2)
    pids = {a["name"]: a["pid"] for a in json.loads(cli("agent", "ps", "--json").stdout)["agents"]}
    task = "ai-crash"
    cli.submit([TaskAssignment(task_id=task, role="crasher", input="record a note")])
    wait_until(lambda: status(cli, task) == "succeeded", 60)

    # The killed replica and the one that finished: the crash tool ran in both, same key.
    lines = (Path(cli.env[SHARED]) / "crash_calls.jsonl").read_text().splitlines()
    crashes = [json.loads(line) for line in lines]
    by_pid = {pid: name for name, pid in pids.items()}
    ran_in = [by_pid[c["pid"]] for c in crashes]
    victim, survivor = ran_in
    assert victim != survivor, crashes
    assert {c["key"] for c in crashes} == {f"{task}.t2"}
    (result,) = events(cli, task, "result")
    assert result["sender"] == survivor
    assert [e["sender"] for e in events(cli, task, "task_started")] == [victim, survivor]

    # The MCP call, journaled before the crash, was answered from the journal: the server saw
    # it exactly once, with the call's id as its idempotency key.
    assert counter.calls("record") == [
        {"tool": "record", "note": "exactly once", "key": f"{task}.t1"}
    ]
    requested = [
        (e["sender"], e["payload"]["call_id"])
        for e in events(cli, task, "tool_call_requested", "model_call_requested")
    ]
    assert requested == [
        (victim, f"{task}.m1"),
        (victim, f"{task}.t1"),
        (victim, f"{task}.m2"),
        (victim, f"{task}.t2"),  # in flight at the crash:
        (survivor, f"{task}.t2"),  # the at-least-once window, the same call id again
        (survivor, f"{task}.m3"),
    ]
    listed = [(c["kind"], c["call_id"], c["status"]) for c in calls(cli, task)]
    assert listed == [
        ("model", f"{task}.m1", "ok"),
        ("tool", f"{task}.t1", "ok"),
        ("model", f"{task}.m2", "ok"),
        ("tool", f"{task}.t2", "ok"),
        ("model", f"{task}.m3", "ok"),
    ]
    assert cli.rows("SELECT count(*) AS n FROM quarantine") == [{"n": 0}]


def test_a_tool_redefined_under_a_running_agent_is_refused_until_it_is_restarted(
    cli: Cli, counter: Counter
) -> None:
    cli.env[PIN_URL] = counter.url
    start(cli, "tests.e2e.toolagents:Pinned")

    def run(task: str) -> list[dict[str, Any]]:
        cli.submit([TaskAssignment(task_id=task, role="pinned", input="count")])
        wait_until(lambda: status(cli, task) == "succeeded", 60)
        return [e["payload"] for e in events(cli, task, "tool_call_completed")]

    def pins() -> list[str]:
        rows = cli.rows(
            "SELECT payload FROM events WHERE type = 'agent_registered'"
            " AND sender = 'pinned-1' ORDER BY seq"
        )
        return [
            next(
                t["digest"]
                for t in json.loads(r["payload"])["tools"]
                if t["name"] == "counter.count"
            )
            for r in rows
        ]

    (first,) = run("ai-pin-1")
    assert first["status"] == "ok"
    assert len(counter.calls("count")) == 1
    (pinned,) = pins()

    counter.mutate("description")
    (refused,) = run("ai-pin-2")
    assert refused["status"] == "refused"
    assert refused["error"] == (
        "tool definition changed since registration: re-register the agent"
        " (swarmlog agent restart pinned)"
    )
    assert len(counter.calls("count")) == 1  # the server never saw it
    (listed,) = [c for c in calls(cli, "ai-pin-2") if c["kind"] == "tool"]
    assert (listed["tool"], listed["status"]) == ("counter.count", "refused")
    logged = cli("agent", "logs", "pinned-1")
    assert "ai-pin-2: refused a call of counter.count" in logged.stdout, logged.stdout
    assert "swarmlog agent restart pinned" in logged.stdout

    restarted = cli("agent", "restart", "pinned")
    assert restarted.returncode == 0, restarted.stderr
    assert "restarted pinned-1" in restarted.stdout
    wait_until(lambda: len(pins()) == 2, 30)
    assert pins()[0] == pinned != pins()[1]  # registered again, with the new definition
    (again,) = run("ai-pin-3")
    assert again["status"] == "ok", again
    assert len(counter.calls("count")) == 2

    unknown = cli("agent", "restart", "nobody")
    assert unknown.returncode == 2
    assert "no running agent named nobody" in unknown.stderr


def budgets(cli: Cli) -> dict[tuple[str, str], dict[str, Any]]:
    out = cli("budgets", "--json")
    assert out.returncode == 0, out.stderr
    return {(b["scope"], b["scope_id"]): b for b in json.loads(out.stdout)["budgets"]}


def submit_custom(cli: Cli, steps: list[dict[str, Any]], budget: int) -> dict[str, Any]:
    """A custom workflow of ``steps`` with a token budget, failing at an escalation, waited for."""
    plan = json.dumps({"plan": {"steps": steps}})
    out = cli(
        "submit",
        "custom",
        "--input",
        plan,
        "--budget",
        str(budget),
        "--fail-fast",
        "--wait",
        "--json",
    )
    done: dict[str, Any] = json.loads(out.stdout)
    return done


def test_a_model_call_that_would_cross_the_hard_budget_is_not_made(cli: Cli) -> None:
    start(cli, "tests.e2e.toolagents:Thrifty")
    task = "ai-budget"
    cli.submit([TaskAssignment(task_id=task, role="thrifty", input="echo these words")])
    wait_until(lambda: status(cli, task) == "escalated", 60)
    (error,) = events(cli, task, "error")
    assert error["payload"]["code"] == "budget_exceeded"
    assert "would cross the agent's token budget" in error["payload"]["message"]
    made = [c for c in calls(cli, task) if c["kind"] == "model"]
    # Some calls were made, and the one that could have crossed the budget was not: the script
    # asks for 12, which would spend about 700 tokens.
    assert 2 <= len(made) < 12, made
    assert all(c["status"] == "ok" for c in made)
    used = sum(c["prompt_tokens"] + c["completion_tokens"] for c in made)
    shown = budgets(cli)[("agent", "thrifty-1")]
    assert shown["used_tokens"] == used  # charged as made, though the task never had a result
    assert used <= 400  # Thrifty.budget_tokens
    assert shown["exceeded"] != "hard"


def test_a_workflow_budget_stops_the_model_call_that_would_cross_it(cli: Cli) -> None:
    start(cli, "tests.e2e.toolagents:Frugal")
    step = {"id": "s1", "capability": "echo-frugally", "input": "echo these words"}
    # 400: room for the first call priced by its bytes (about 310), not for the whole script
    done = submit_custom(cli, [step], budget=400)
    assert done["status"] == "failed", done
    wf = done["workflow_id"]
    (task,) = cli.rows(f"SELECT task_id, error FROM tasks WHERE workflow_id = '{wf}'")
    assert task["error"].startswith("budget_exceeded: "), task
    assert "would cross the workflow's token budget" in task["error"]
    made = [c for c in calls(cli, task["task_id"]) if c["kind"] == "model"]
    assert 2 <= len(made) < 12, made
    shown = budgets(cli)[("workflow", wf)]
    assert (shown["budget_tokens"], shown["workflow_status"]) == (400, "failed")
    assert 0 < shown["used_tokens"] <= 400
    assert shown["used_tokens"] == sum(c["prompt_tokens"] + c["completion_tokens"] for c in made)


# The two holes below are known and reported; each test fails the day its hole is closed (strict),
# to be kept then as the regression test it becomes.


def test_a_prompt_that_costs_more_than_its_estimate_does_not_cross_the_budget(cli: Cli) -> None:
    start(cli, "tests.e2e.toolagents:Lavish")
    task = "ai-lavish"
    cli.submit([TaskAssignment(task_id=task, role="lavish", input="a " * 600)])
    wait_until(lambda: status(cli, task) in ("succeeded", "escalated"), 60)
    # Priced by its bytes (1,200), the call is not made: a word-per-token count would cost 601.
    assert status(cli, task) == "escalated"
    row = budgets(cli).get(("agent", "lavish-1"), {"used_tokens": 0})
    assert row["used_tokens"] <= 560  # Lavish.budget_tokens


def test_parallel_tasks_of_a_workflow_do_not_cross_its_budget_together(cli: Cli) -> None:
    start(cli, "tests.e2e.toolagents:Spender", replicas=2)
    # Both tasks meet at the tool between their two calls; each second call is allowed what is
    # left of the budget and writes all of it. Without reservations both would, twice over; with
    # them, the first reserves what is left, the other waits until it is answered and then
    # finds no room.
    steps = [{"id": f"p{i}", "capability": "spend", "input": "go"} for i in (1, 2)]
    done = submit_custom(cli, steps, budget=1250)
    assert done["status"] == "failed", done  # the budget stopped one of them
    workflow = done["workflow_id"]

    def settled() -> bool:
        # The other task goes on after the workflow failed: until its last call has answered.
        running = cli.rows(
            f"SELECT count(*) AS n FROM tasks WHERE workflow_id = '{workflow}'"
            " AND status IN ('claimed', 'running')"
        )
        return (
            running == [{"n": 0}] and budgets(cli)[("workflow", workflow)]["reserved_tokens"] == 0
        )

    wait_until(settled, 60)
    shown = budgets(cli)[("workflow", workflow)]
    assert 0 < shown["used_tokens"] <= 1250, shown
    reserved = cli.rows(
        f"SELECT admitted FROM model_calls WHERE workflow_id = '{workflow}' AND reserved_tokens > 0"
    )
    # Reservations were made; one may also have been refused (asked before the other's was
    # folded): either way it waited, and was not made.
    assert any(r["admitted"] for r in reserved), reserved


def test_a_watcher_sees_the_answer_as_it_is_written_by_an_agent_of_the_tasks_role(
    cli: Cli,
) -> None:
    start(cli, "tests.e2e.toolagents:Talker")
    task = "ai-talk"

    async def watch() -> list[TextPreview]:
        seen: list[TextPreview] = []
        async with await Client.connect(data_dir=cli.data) as client:
            # An agent of another role announcing for the task (under its own id, all its
            # login may) is not shown.
            hostile = KeyStore(cli.settings().keys_dir)
            async with client.previews(task) as pieces:
                url = resolve_url(cli.settings())
                nc = await nats.connect(url, nkeys_seed_str=hostile.login("router-1").seed)
                await nc.publish(live_subject("default", "router-1", task), b'[1, "forged"]')
                await nc.flush()
                await nc.close()
                await client.submit_task("talk", "go", task_id=task)
                async with asyncio.timeout(30):
                    async for piece in pieces:
                        seen.append(piece)
                        if "word199" in piece.text:
                            return seen
        return seen

    seen = asyncio.run(watch())
    assert {(p.agent_id, p.call_index, p.task_id) for p in seen} == {("talker-1", 1, task)}
    assert len(seen) > 10  # piece by piece, not the answer at once
    text = "".join(p.text for p in seen)
    wait_until(lambda: status(cli, task) == "succeeded", 30)
    (call,) = cli.rows(
        f"SELECT requested_seq, completed_seq FROM model_calls WHERE task_id = '{task}'"
    )
    answer = cli.rows(f"SELECT payload FROM events WHERE seq = {call['completed_seq']}")
    assert json.loads(answer[0]["payload"])["reply"]["content"] == text.strip()
