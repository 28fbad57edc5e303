"""`swarmlog.Client` against a running system: submit, wait, events, views, and a wait that
times out saying why."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest
from clikit import ROOT, Cli, running, start_agents

import swarmlog
from swarmlog.control.client import Event
from swarmlog.control.records import TaskDetail, WorkflowDetail
from waiting import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def echoing(module_cli: Cli) -> Cli:
    """The module's system with one echo replica."""
    start_agents(module_cli, "examples.echo:Echo")
    return module_cli


async def _connect(cli: Cli) -> swarmlog.Client:
    return await swarmlog.Client.connect(data_dir=cli.data)


def test_a_workflow_submitted_with_the_client_is_waited_for_and_read(echoing: Cli) -> None:
    cli = echoing

    async def go() -> None:
        async with await _connect(cli) as client:
            wf = await client.submit_workflow("pipeline", stages=["text", "text"], data="hello")
            assert wf.workflow_id.startswith("wf-")
            view = await client.wait(wf.workflow_id, timeout=60)
            assert (view.workflow_id, view.pattern, view.status) == (
                wf.workflow_id,
                "pipeline",
                "succeeded",
            )
            assert view.result == {"echo": "HELLO", "by": "echo-1"}
            assert view.input == {"stages": ["text", "text"], "input": "hello"}  # decoded

            tasks = await client.tasks(workflow_id=wf.workflow_id)
            assert sorted((t.task_id, t.status, t.agent) for t in tasks) == [
                (f"{wf.workflow_id}-s1", "succeeded", "echo-1"),
                (f"{wf.workflow_id}-s2", "succeeded", "echo-1"),
            ]
            shown = await client.show(wf.workflow_id)
            assert isinstance(shown, WorkflowDetail)
            s1, s2 = f"{wf.workflow_id}-s1", f"{wf.workflow_id}-s2"  # nodes are its tasks
            assert [(n.id, n.kind, n.status) for n in shown.nodes] == [
                (s1, "step", "succeeded"),
                (s2, "step", "succeeded"),
            ]
            assert shown.edges == [(s1, s2)]
            one = await client.show(f"{wf.workflow_id}-s2")
            assert isinstance(one, TaskDetail)
            assert one.task.output == {"echo": "HELLO", "by": "echo-1"}
            assert [h.type for h in one.history][-1] == "result"

            events = [e async for e in client.events(workflow_id=wf.workflow_id)]
            assert events[0].type == "workflow_submitted"
            assert events[0].seq == wf.seq
            assert events[-1].type == "workflow_completed"
            assert all(e.workflow_id == wf.workflow_id for e in events)
            assert all(e.intact and e.verified for e in events), events
            assert {e.sender for e in events} == {"operator", "conductor-1", "router-1", "echo-1"}
            operator = await client.query(
                "SELECT public_key FROM credentials WHERE agent_id = 'echo-1'"
            )
            echo_key = operator.rows[0]["public_key"]
            assert {e.signer for e in events if e.sender == "echo-1"} == {echo_key}

            names = {w.workflow_id for w in await client.workflows()}
            assert wf.workflow_id in names
            (budget,) = [b for b in await client.budgets() if b.scope_id == wf.workflow_id]
            assert budget.used_tokens == 2 * (len("hello") + 1)
            assert await client.escalations(workflow_id=wf.workflow_id) == []

            # The CLI prints the same records: its --json is the client's, field for field.
            printed = json.loads(cli("show", wf.workflow_id, "--json").stdout)
            assert printed == json.loads(msgspec.json.encode(shown))
            tail = json.loads(cli("events", "tail", "--workflow", wf.workflow_id, "--json").stdout)
            assert [Event(**e) for e in tail] == events[-20:]

    asyncio.run(go())


def test_following_a_running_workflow_yields_its_events_as_they_come(echoing: Cli) -> None:
    cli = echoing

    async def go() -> None:
        async with await _connect(cli) as client:
            # Slow stages: the follower is there before the work is done.
            wf = await client.submit_workflow(
                "pipeline", stages=["text", "text"], data={"text": "slow", "work_ms": 800}
            )
            seen: list[str] = []
            async with asyncio.timeout(60):
                async for event in client.events(workflow_id=wf.workflow_id, follow=True):
                    seen.append(event.type or "?")
                    assert event.verified is not False, event
            # The follower ends by itself at the completion, having seen every step.
            assert seen[0] == "workflow_submitted"
            assert seen[-1] == "workflow_completed"
            assert seen.count("result") == 2
            assert (await client.wait(wf.workflow_id, timeout=1)).status == "succeeded"

    asyncio.run(go())


def test_a_single_task_is_submitted_and_waited_for(echoing: Cli) -> None:
    cli = echoing

    async def go() -> None:
        async with await _connect(cli) as client:
            sent = await client.submit_task("text", "one task", priority="high")
            done = await client.wait_task(sent.task_id, timeout=60)
            assert (done.status, done.role, done.priority) == ("succeeded", "echo", "high")
            assert done.output == {"echo": "ONE TASK", "by": "echo-1"}
            events = [e async for e in client.events(task_id=sent.task_id)]
            kinds = [e.type for e in events]
            result = events[-1].payload
            assert isinstance(result, dict)
            # A task that ends at once says when it started in its result (one event fewer);
            # one that took longer than STARTED_AFTER (a loaded machine) has its task_started.
            if "task_started" in kinds:
                assert kinds == ["task_offered", "task_assignment", "task_started", "result"]
                assert "started_at" not in result
            else:
                assert kinds == ["task_offered", "task_assignment", "result"]
                assert result["attempt"] == 1
                assert events[1].occurred_at <= result["started_at"] <= events[2].occurred_at

    asyncio.run(go())

    # The runnable example does the same against this system, and says so.
    example = subprocess.run(
        [sys.executable, "-m", "examples.client", "--data-dir", str(cli.data)],
        cwd=ROOT,
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert example.returncode == 0, example.stderr
    lines = example.stdout.splitlines()
    assert lines[0].startswith("submitted wf-")
    assert any("workflow_completed" in line and "verified" in line for line in lines)
    assert any(line.startswith("workflow wf-") and " succeeded: " in line for line in lines)
    assert lines[-1].startswith("task t-")
    assert "A SINGLE TASK" in lines[-1]


def test_a_wait_on_stuck_work_says_why_at_once(echoing: Cli) -> None:
    cli = echoing
    start_agents(cli, "tests.e2e.picky:Picky")  # the module's system has a picky replica from here

    async def submit_bad() -> str:
        async with await _connect(cli) as client:
            # Picky refuses "bad" for good: the step escalates and waits for a human.
            sent = await client.submit_workflow("pipeline", stages=["check"], data="bad")
            return sent.workflow_id

    bad = asyncio.run(submit_bad())  # it escalates while the CLI waits below

    # No agent can "translate": the step is offered and nobody takes it. The CLI's wait says
    # so within seconds (a grace of a few looks), not at its timeout.
    began = time.monotonic()
    waited = cli(
        "submit", "pipeline", "--stage", "translate", "--data", "x", "--wait", "--timeout", "120",
        timeout=150,
    )  # fmt: skip
    assert time.monotonic() - began < 30, "the wait sat out its timeout"
    assert waited.returncode == 1, (waited.stdout, waited.stderr)
    assert "cannot move by itself" in waited.stderr
    assert "needs capability 'translate' and no live agent has it" in waited.stderr
    assert "\n" not in waited.stderr.rstrip("\n")

    escalations = f"SELECT escalation_id FROM escalations WHERE workflow_id = '{bad}'"
    wait_until(lambda: cli.rows(escalations), 60)
    (open_one,) = cli.rows(escalations)

    async def escalated() -> None:
        async with await _connect(cli) as client:
            # An unknown id is not "running": the projection has no such workflow.
            with pytest.raises(swarmlog.WaitTimeout, match="not in the projection"):
                await client.wait("wf-never", timeout=0.5)
            # Out of time before the grace is over: a plain timeout, saying why.
            with pytest.raises(swarmlog.WaitTimeout) as raised:
                await client.wait(bad, timeout=0.5)
            assert type(raised.value) is swarmlog.WaitTimeout
            assert raised.value.status == "running"
            assert any(
                f"task {bad}-s1 is escalated" in r
                and f"escalations resolve {open_one['escalation_id']}" in r
                for r in raised.value.reasons
            ), raised.value.reasons
            # Given the time, the wait gives up after the grace: it cannot move by itself.
            with pytest.raises(swarmlog.Stuck) as stuck:
                await client.wait(bad, timeout=120)
            error = stuck.value
            assert (error.item_id, error.status) == (bad, "running")
            assert error.blocked == [r for r in error.reasons if f"task {bad}-s1 is escalated" in r]
            assert f"escalations resolve {open_one['escalation_id']}" in str(error)
            assert "\n" not in str(error)
            assert [e.escalation_id for e in await client.escalations(workflow_id=bad)] == [
                open_one["escalation_id"]
            ]

    asyncio.run(escalated())

    # show says so too: a "blocked:" section, and --json's blocked list.
    shown = cli("show", bad)
    assert shown.returncode == 0, shown.stderr
    assert "blocked:" in shown.stdout
    assert f"escalations resolve {open_one['escalation_id']}" in shown.stdout
    (reason,) = json.loads(cli("show", bad, "--json").stdout)["blocked"]
    assert f"task {bad}-s1 is escalated" in reason
    assert json.loads(cli("show", f"{bad}-s1", "--json").stdout)["blocked"] == [reason]


def test_a_wait_on_a_workflow_nobody_conducts_says_the_conductor_is_quiet(cli: Cli) -> None:
    stopped = cli("agent", "stop", "conductor-1")
    assert stopped.returncode == 0, stopped.stderr

    async def go() -> None:
        async with await _connect(cli) as client:
            wf = await client.submit_workflow("pipeline", stages=["text"], data="x")
            with pytest.raises(swarmlog.WaitTimeout) as raised:
                await client.wait(wf.workflow_id, timeout=8)  # past a missed beat and a half
            reasons = raised.value.reasons
            assert "it has no plan yet (the conductor plans it on its next turn)" in reasons
            assert any(
                r.startswith(("the conductor was last heard from", "no live conductor"))
                for r in reasons
            ), reasons

    asyncio.run(go())


def test_bad_input_is_a_clear_error_before_anything_is_published(echoing: Cli) -> None:
    cli = echoing

    async def go() -> None:
        async with await _connect(cli) as client:
            before = await client.last_seq()
            with pytest.raises(swarmlog.ConfigError, match="pattern 'nope' is not one of"):
                await client.submit_workflow("nope")
            with pytest.raises(swarmlog.ConfigError, match="cannot run this pipeline") as e:
                await client.submit_workflow("pipeline")  # no stages
            assert e.value.parameter == "input"
            with pytest.raises(swarmlog.ConfigError, match="workflow_id 'Bad Id' is not valid"):
                await client.submit_workflow("pipeline", stages=["text"], workflow_id="Bad Id")
            with pytest.raises(swarmlog.ConfigError, match=r"debaters 40 is not in 2\.\.16"):
                await client.submit_workflow("debate", question="q", debaters=40)
            with pytest.raises(swarmlog.ConfigError, match="priority 'urgent'"):
                await client.submit_task("text", priority="urgent")
            with pytest.raises(swarmlog.ConfigError, match="capability"):
                await client.submit_task("Not A Capability!")
            with pytest.raises(swarmlog.ConfigError, match="is not a valid workflow id"):
                await client.tasks(workflow_id="x'; DROP TABLE tasks; --")
            # Read from the stream itself (the projection may lag); the roles register on
            # their own meanwhile, so only what the operator's client published counts.
            stored = [m async for batch in client.messages(before + 1) for m in batch]
            assert [m.subject for m in stored if m.subject.split(".")[2] == "operator"] == []

    asyncio.run(go())


def test_connect_without_a_server_reads_the_file_or_refuses(tmp_path: Path) -> None:
    with running(tmp_path / "data") as cli:
        start_agents(cli, "examples.echo:Echo")

        async def work() -> str:
            async with await _connect(cli) as client:
                sent = await client.submit_task("text", "kept", task_id="t1")
                return (await client.wait_task(sent.task_id, timeout=60)).status or ""

        assert asyncio.run(work()) == "succeeded"

    async def down() -> None:
        with pytest.raises(swarmlog.BusError, match="no swarmlog server is running"):
            await _connect(cli)
        async with await swarmlog.Client.connect(data_dir=cli.data, require_server=False) as c:
            found = await c.task("t1")
            assert found is not None
            assert found.output == {"echo": "KEPT", "by": "echo-1"}
            with pytest.raises(swarmlog.BusError, match="no swarmlog server is running"):
                await c.submit_task("text")

    asyncio.run(down())
