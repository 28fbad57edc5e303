"""Helpers shared by the end-to-end tests (imported as ``clikit``): the CLI in a subprocess,
and fast in-process ways to read the projections and to submit many tasks with the operator key
of the same data dir."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from swarmlog.agents.host.bringup import bring_down, bring_up
from swarmlog.agents.publisher import Publisher
from swarmlog.config import Settings
from swarmlog.control.keystore import KeyStore
from swarmlog.control.system import open_log, open_projections
from swarmlog.schemas.payloads import Payload, TaskAssignment

ROOT = Path(__file__).resolve().parents[2]  # the repo: `examples.echo` imports from here

STARTS = (
    "(type = 'task_started'"
    " OR (type = 'result' AND json_extract_string(payload, '$.started_at') IS NOT NULL))"
)
"""SQL over ``events``: the events that say an attempt began (a task that ended at once says
so in its result, not in a ``task_started`` of its own)."""


class Cli:
    def __init__(self, data: Path) -> None:
        self.data = data
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMLOG_")}
        self.env["SWARMLOG_DATA"] = str(data)

    def __call__(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "swarmlog", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def rows(self, sql: str) -> list[dict[str, Any]]:
        """What ``query SQL --json`` prints as ``rows``, read in this process through the same
        projection client and JSON encoding (tests poll with it: a CLI process per look would
        spend a core's worth of interpreter start-ups on waiting)."""

        async def ask() -> list[dict[str, Any]]:
            async with open_projections(self.settings()) as projections:
                return await projections.query(sql)

        rows: list[dict[str, Any]] = json.loads(json.dumps(asyncio.run(ask()), default=str))
        return rows

    def settings(self) -> Settings:
        return Settings(data_dir=self.data)

    def submit(self, tasks: Sequence[TaskAssignment]) -> None:
        """Publish task assignments signed by the operator, all at once."""
        self.submit_payloads(tasks)

    def submit_payloads(self, payloads: Sequence[Payload], **fields: Any) -> None:
        """Publish events signed by the operator, all at once (``fields``: envelope fields)."""

        async def go() -> None:
            settings = self.settings()
            operator = KeyStore(settings.keys_dir).operator()
            async with open_log(settings) as log:
                publisher = Publisher(log, operator, settings.namespace)
                await publisher.publish_many(list(payloads), **fields)

        asyncio.run(go())


def start_agents(cli: Cli, target: str, replicas: int = 1) -> None:
    """``agent start TARGET --replicas N --detach``, which must succeed."""
    out = cli("agent", "start", target, "--replicas", str(replicas), "--detach")
    assert out.returncode == 0, out.stderr


@contextlib.contextmanager
def running(data: Path) -> Iterator[Cli]:
    """A system brought up detached on ``data`` and brought down afterwards whatever happened.

    It calls what `swarmlog up --detach` and `swarmlog down` run, in this process: the system
    is the same real server, projector and role daemons, and a CLI process for each would spend
    its start-up on nothing the test checks (the commands themselves are tested in test_cli.py).
    """
    cli = Cli(data)
    settings = cli.settings()
    asyncio.run(bring_up(settings, detach=True, notice=lambda _: None))
    try:
        yield cli
    finally:
        bring_down(settings)
