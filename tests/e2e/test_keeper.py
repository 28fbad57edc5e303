"""Daemons that stay up: the keeper (what `up --detach` runs) starts again, within seconds, a
daemon killed with SIGKILL, counts and notes the restart; what `agent stop` stopped stays stopped.
And what a daemon's log says when its handler crashes: the whole traceback."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from clikit import Cli, start_agents

from swarmlog.agents.host.bringup import bring_down, bring_up
from waiting import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def kept(tmp_path: Path) -> Iterator[Cli]:
    """A system brought up with its keeper, as `up --detach` does."""
    cli = Cli(tmp_path / "data")
    settings = cli.settings()
    asyncio.run(bring_up(settings, detach=True, keeper=True, notice=lambda _: None))
    try:
        yield cli
    finally:
        bring_down(settings)


def ps(cli: Cli) -> dict[str, dict[str, object]]:
    out = cli("agent", "ps", "--json")
    assert out.returncode == 0, out.stderr
    return {str(a["name"]): a for a in json.loads(out.stdout)["agents"]}


def pid_of(cli: Cli, name: str) -> int:
    return int(json.loads((cli.data / "run" / f"{name}.json").read_text())["pid"])


def test_a_killed_daemon_is_back_within_seconds_and_a_stopped_one_stays_stopped(
    kept: Cli,
) -> None:
    start_agents(kept, "examples.echo:Echo")
    before = pid_of(kept, "agent-echo-1")
    os.kill(before, signal.SIGKILL)

    def back() -> bool:
        row = ps(kept).get("echo-1", {})
        return bool(row.get("alive")) and row.get("pid") != before

    wait_until(back, 20)
    row = ps(kept)["echo-1"]
    assert row["restarts"] == 1
    log = (kept.data / "logs" / "agent-echo-1.log").read_text()
    assert f"exited without a stop (pid {before}); started again by the keeper" in log
    # And it works again: a workflow through it succeeds.
    done = kept("submit", "pipeline", "--stage", "text", "--data", "hi", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "succeeded"

    # Stopped on purpose: it stays stopped. The router killed after it is proof the keeper
    # looked again (it brings the router back) and left echo-1 alone.
    assert kept("agent", "stop", "echo-1").returncode == 0
    router = pid_of(kept, "agent-router-1")
    os.kill(router, signal.SIGKILL)
    wait_until(lambda: pid_of(kept, "agent-router-1") != router, 20)
    assert "echo-1" not in ps(kept)
    assert not (kept.data / "run" / "agent-echo-1.json").exists()

    # Killed by the switch, its process gone: not started again until it is revived.
    start_agents(kept, "examples.echo:Echo")
    assert kept("kill", "echo-1", "--reason", "seen misbehaving").returncode == 0
    killed = pid_of(kept, "agent-echo-1")
    os.kill(killed, signal.SIGKILL)
    router = pid_of(kept, "agent-router-1")
    os.kill(router, signal.SIGKILL)
    wait_until(lambda: pid_of(kept, "agent-router-1") != router, 20)  # the keeper looked again
    assert pid_of(kept, "agent-echo-1") == killed
    assert ps(kept)["echo-1"]["alive"] is False
    assert kept("revive", "echo-1").returncode == 0
    wait_until(lambda: ps(kept)["echo-1"]["alive"] is True, 20)
    assert pid_of(kept, "agent-echo-1") != killed


def test_a_crashed_handlers_traceback_is_in_the_agents_log(kept: Cli) -> None:
    start_agents(kept, "tests.e2e.picky:Crasher")
    sent = kept("submit", "pipeline", "--stage", "crash", "--data", "x", "--json")
    assert sent.returncode == 0, sent.stderr
    log = kept.data / "logs" / "agent-crasher-1.log"
    wait_until(lambda: "ZeroDivisionError" in log.read_text(), 30)
    text = log.read_text()
    assert "the handler raised" in text
    assert "Traceback (most recent call last)" in text
    assert 'in crash\n    return {"ratio": len(str(task.input)) / 0}' in text
    # And the error event carries the end of it, which `show TASK` prints.
    task = f"{json.loads(sent.stdout)['workflow_id']}-s1"

    def crash() -> dict[str, object] | None:
        out = kept("show", task, "--json")
        found: dict[str, object] | None = json.loads(out.stdout)["crash"] if out.stdout else None
        return found

    wait_until(lambda: crash() is not None, 30)  # once the projection has folded the error
    found = crash()
    assert found is not None
    assert found["error"] == "ZeroDivisionError: division by zero"
    assert 'return {"ratio": len(str(task.input)) / 0}' in str(found["traceback"])
    shown = kept("show", task)
    assert shown.returncode == 0, shown.stderr
    assert "the handler crashed (seq " in shown.stdout
    assert "ZeroDivisionError: division by zero" in shown.stdout
