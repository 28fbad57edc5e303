"""`swarmlog agent start|ps|logs|stop`: replicas as daemons sharing a role's work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]  # the repo: `examples.echo` imports from here


class Cli:
    def __init__(self, data: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMLOG_")}
        self.env["SWARMLOG_DATA"] = str(data)

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "swarmlog", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    run = Cli(tmp_path / "data")
    assert run("up", "--detach").returncode == 0
    try:
        yield run
    finally:
        assert run("down").returncode == 0


def wait_for(check: object, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_replicas_share_the_work_and_stop_cleanly(cli: Cli) -> None:
    started = cli("agent", "start", "examples.echo:Echo", "--replicas", "3", "--detach")
    assert started.returncode == 0, started.stderr
    ps = json.loads(cli("agent", "ps", "--json").stdout)["agents"]
    assert sorted(a["name"] for a in ps) == ["echo-1", "echo-2", "echo-3"]
    pids = [a["pid"] for a in ps]
    tasks = 12
    for i in range(tasks):
        payload = json.dumps({"task_id": f"t{i}", "role": "echo", "input": f"hi {i}"})
        assert cli("events", "publish", "task_assignment", "--payload", payload).returncode == 0

    def done() -> bool:
        out = cli("query", "SELECT count(*) AS n FROM tasks WHERE status = 'succeeded'", "--json")
        return bool(out.returncode == 0 and json.loads(out.stdout)["rows"][0]["n"] == tasks)

    wait_for(done)
    spread = json.loads(cli("query", "SELECT DISTINCT completed_by FROM tasks", "--json").stdout)[
        "rows"
    ]
    assert len(spread) >= 2, spread  # work is shared over replicas
    outputs = json.loads(
        cli("query", "SELECT output FROM tasks WHERE task_id = 't3'", "--json").stdout
    )
    assert json.loads(outputs["rows"][0]["output"])["echo"] == "HI 3"
    assert cli("agent", "logs", "echo-1").returncode == 0  # its log exists
    assert cli("agent", "logs", "nobody").returncode == 2
    stopped = cli("agent", "stop", "--all")
    assert stopped.returncode == 0, stopped.stderr

    def gone() -> bool:
        alive = 0
        for pid in pids:
            try:
                os.kill(pid, 0)
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
                alive += state not in ("Z", "X")
            except (ProcessLookupError, FileNotFoundError):
                pass
        return alive == 0

    wait_for(gone, 15)
    assert json.loads(cli("agent", "ps", "--json").stdout)["agents"] == []
