"""Work survives a worker's `kill -9`, and urgent work overtakes queued background work, with
detached replicas of the example agent."""

from __future__ import annotations

import json
import os
import signal

import pytest
from clikit import Cli

from swarmlog.schemas.payloads import TaskAssignment
from waiting import wait_until

pytestmark = pytest.mark.e2e


def start(cli: Cli, replicas: int) -> dict[str, int]:
    started = cli(
        "agent",
        "start",
        "examples.echo:Echo",
        "--replicas",
        str(replicas),
        "--detach",
        "--ack-wait",
        "2",
    )
    assert started.returncode == 0, started.stderr
    return {a["name"]: a["pid"] for a in json.loads(cli("agent", "ps", "--json").stdout)["agents"]}


def echo(task_id: str, work_ms: int, priority: str = "normal") -> TaskAssignment:
    return TaskAssignment(
        task_id=task_id,
        role="echo",
        priority=priority,  # type: ignore[arg-type]
        input={"text": task_id, "work_ms": work_ms},
    )


def history(cli: Cli, task_id: str) -> list[tuple[str, str]]:
    rows = cli.rows(
        "SELECT type, sender FROM events"
        f" WHERE subject LIKE '%.task.{task_id}.%' OR subject LIKE '%.work.%.{task_id}'"
        " ORDER BY seq"
    )
    return [(r["type"], r["sender"]) for r in rows]


def test_a_worker_killed_mid_task_the_task_completes_once_elsewhere(cli: Cli) -> None:
    pids = start(cli, 2)
    # Long enough to be still running when the kill comes, even on a loaded machine (each look
    # at the history is a CLI query).
    cli.submit([echo("victim", 8000)])
    wait_until(
        lambda: (
            ("task_started", "echo-1") in history(cli, "victim")
            or ("task_started", "echo-2") in history(cli, "victim")
        ),
        30,
    )
    first = next(sender for kind, sender in history(cli, "victim") if kind == "task_started")
    os.kill(pids[first], signal.SIGKILL)  # mid-task: no result, no ack

    wait_until(
        lambda: (
            cli.rows("SELECT status FROM tasks WHERE task_id = 'victim'")
            == [{"status": "succeeded"}]
        ),
        60,
    )
    steps = history(cli, "victim")
    survivor = next(name for name in pids if name.startswith("echo-") and name != first)
    starts = [sender for kind, sender in steps if kind == "task_started"]
    assert starts == [first, survivor]  # the retry is in the task's history
    assert [s for s in steps if s[0] == "result"] == [("result", survivor)]  # exactly once
    attempt = cli.rows("SELECT attempt, completed_by FROM tasks WHERE task_id = 'victim'")
    assert attempt == [{"attempt": 2, "completed_by": survivor}]


def test_a_critical_task_submitted_later_completes_first(cli: Cli) -> None:
    start(cli, 1)
    # 10 s of queued work: on a loaded machine the first success and the urgent task's
    # submission are seconds apart, and most of the queue must still be waiting by then.
    background = [echo(f"bg{i}", 500, "low") for i in range(20)]
    cli.submit(background)
    wait_until(
        lambda: cli.rows("SELECT count(*) AS n FROM tasks WHERE status = 'succeeded'")[0]["n"] >= 1,
        30,
    )
    cli.submit([echo("urgent", 0, "critical")])
    wait_until(
        lambda: (
            cli.rows("SELECT count(*) AS n FROM tasks WHERE status = 'succeeded'")[0]["n"] == 21
        ),
        60,
    )
    seqs = {
        (r["type"], r["task"]): r["seq"]
        for r in cli.rows(
            "SELECT type, split_part(subject, '.', -2) AS task, min(seq) AS seq FROM events"
            " WHERE type IN ('task_started', 'result') GROUP BY ALL"
        )
    }
    submitted = cli.rows("SELECT seq FROM events WHERE subject LIKE '%.work.echo.critical.urgent'")
    urgent_at, urgent_done = submitted[0]["seq"], seqs[("result", "urgent")]
    # Background work started after the urgent task arrived and finished before it: at most the
    # one the replica was already fetching. The rest of the queue waited.
    overtaking = [
        t.task_id
        for t in background
        if urgent_at < seqs[("task_started", t.task_id)]
        and seqs[("result", t.task_id)] < urgent_done
    ]
    waited = [t.task_id for t in background if seqs[("task_started", t.task_id)] > urgent_done]
    assert len(overtaking) <= 1, overtaking
    assert len(waited) >= 5, waited


def test_every_worker_killed_mid_task_and_the_work_recovers_when_replicas_return(
    cli: Cli,
) -> None:
    pids = start(cli, 2)
    # Long enough that both are still running when the kill comes, even on a loaded machine
    # (each look at the history is a CLI query: seen taking longer than 3 s work in all).
    cli.submit([echo("first", 8000), echo("second", 8000)])

    def both_running() -> bool:
        starters = {
            sender
            for task in ("first", "second")
            for kind, sender in history(cli, task)
            if kind == "task_started"
        }
        return starters == {"echo-1", "echo-2"}

    wait_until(both_running, 30)
    for name in ("echo-1", "echo-2"):
        os.kill(pids[name], signal.SIGKILL)  # no replica of the role is left
    start(cli, 2)  # the set again: stale pidfiles are noticed, fresh processes start

    def both_done() -> bool:
        rows = cli.rows(
            "SELECT count(*) AS n FROM tasks WHERE task_id IN ('first', 'second')"
            " AND status = 'succeeded'"
        )
        return rows == [{"n": 2}]

    wait_until(both_done, 60)
    for task in ("first", "second"):
        kinds = [kind for kind, _ in history(cli, task)]
        assert kinds.count("result") == 1  # completed once
        assert kinds.count("task_started") == 2  # the killed attempt and the recovery
