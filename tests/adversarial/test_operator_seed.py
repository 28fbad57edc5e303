"""Attack 7 of issue 11: an agent's handler reads the operator key (agent daemons ran with the
whole data dir readable), and an agent process logs in as the operator when no projector
answers (its query fell back to the operator's login, then to the projection file).

A real agent daemon (``snoop:Snoop``, started with ``agent start --detach`` like any other)
tries both; what it got is in its signed results, read here straight from the stream."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from clikit import ROOT, Cli

from swarmlog.control.daemons import stop_daemons
from swarmlog.control.system import open_log, projector_name
from swarmlog.projections.verify import check
from swarmlog.schemas.payloads import Result, TaskAssignment
from waiting import wait_until

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent


def _results(cli: Cli) -> dict[str, Any]:
    """Every task's output in the log, by task id (read as the operator, outside the agent)."""

    async def read() -> dict[str, Any]:
        settings, found = cli.settings(), {}
        async with open_log(settings) as log:
            last = await log.last_seq()
            async for batch in log.read(1, until_seq=last):
                for message in batch:
                    envelope = check(message, settings.namespace).envelope
                    if envelope is not None and isinstance(envelope.payload, Result):
                        found[envelope.payload.task_id] = envelope.payload.output
        return found

    return asyncio.run(read())


def _outcome(cli: Cli, task_id: str) -> Any:
    seen: dict[str, Any] = {}

    def done() -> bool:
        seen.update(_results(cli))
        return task_id in seen

    wait_until(done, 30, poll=0.1)
    return seen[task_id]


def test_a_handler_reads_no_seed_and_never_asks_as_the_operator(cli: Cli) -> None:
    cli.env["PYTHONPATH"] = os.pathsep.join([str(HERE), cli.env.get("PYTHONPATH", "")])
    started = cli("agent", "start", "snoop:Snoop", "--detach")
    assert started.returncode == 0, started.stderr
    keys = cli.settings().keys_dir.resolve()
    stolen = [
        str(keys / "operator.seed"),
        str(keys / "agents" / "router-1.seed"),  # another agent's
        str(keys / "agents" / "snoop-1.seed"),  # its own: read once before the handler loads
        f"/proc/self/root{keys}/operator.seed",  # the same file by another path
        f"/proc/{os.getpid()}/environ",  # another process (this test) than itself
    ]
    honest = str(ROOT / "examples" / "docs" / "signatures.md")  # what examples/ agents read
    cli.submit_payloads([TaskAssignment(task_id="look", role="snoop", input={"read": stolen})])
    cli.submit_payloads([TaskAssignment(task_id="work", role="snoop", input={"read": [honest]})])

    looked = _outcome(cli, "look")
    assert {path: looked[path] for path in stolen} == {
        path: {"refused": "PermissionError"} for path in stolen
    }, looked
    assert "read" in _outcome(cli, "work")[honest]

    # With no projector to answer, the agent's query fails and says why; it does not log in as
    # the operator to ask, nor open the projection file.
    settings = cli.settings()
    assert stop_daemons(settings.run_dir, settings.logs_dir, [projector_name(settings)])
    ask = {"query": "SELECT count(*) AS n FROM events"}
    cli.submit_payloads([TaskAssignment(task_id="ask", role="snoop", input=ask)])
    asked = _outcome(cli, "ask")["query"]
    assert "error" in asked, asked
    assert "no projector answers queries" in asked["error"], asked
