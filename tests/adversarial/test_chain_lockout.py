"""Locking an agent out through its chain head: messages planted under another agent's prefix.

An attacker who reaches the operator's publish rights (as through a service's reply subject)
can store anything under ``swarmlog.<ns>.echo-1.>``: junk, or a copy of one of echo-1's own
earlier events published again with a fresh ``Nats-Msg-Id``. When echo-1 starts, its publisher
recovers its chain head from the log. It must skip what a reader rejects (the junk, the replay)
and still start; a fresh publisher used to scan the whole log for its head, which an agent login
may not (the start failed with a timeout), and took a replayed copy as its head (its next events
were then quarantined as replays).
"""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from clikit import Cli

from swarmlog.bus.ports import Append
from swarmlog.bus.subjects import sender_filter
from swarmlog.control.system import open_log
from swarmlog.schemas.payloads import TaskAssignment
from waiting import wait_until

pytestmark = pytest.mark.e2e

VICTIM = "echo-1"


def _plant(cli: Cli, *, replay: bool) -> int:
    """Store one message under the victim's prefix with the operator's rights: junk, or (with
    ``replay``) a byte-for-byte copy of the victim's first event; its stream sequence."""

    async def go() -> int:
        settings = cli.settings()
        async with open_log(settings) as log:
            prefix = sender_filter(settings.namespace, VICTIM)
            if replay:
                first = await anext(
                    m
                    async for batch in log.read()
                    for m in batch
                    if m.subject.startswith(prefix[:-1])
                )
                subject, data = first.subject, first.data
            else:
                subject, data = prefix[:-1] + "junk.x", b"\x00 not an event"
            stored = await log.append(Append(subject, data, msg_id=os.urandom(8).hex()))
            assert not stored.duplicate
            return stored.seq

    return asyncio.run(go())


def _stop(cli: Cli) -> None:
    stopped = cli("agent", "stop", VICTIM)
    assert stopped.returncode == 0, stopped.stderr


def _start(cli: Cli) -> None:
    started = cli("agent", "start", "examples.echo:Echo", "--detach", "--timeout", "20")
    assert started.returncode == 0, started.stderr


def _done_by_victim(cli: Cli, task_id: str) -> bool:
    rows = cli.rows(f"SELECT status, completed_by FROM tasks WHERE task_id = '{task_id}'")
    return rows == [{"status": "succeeded", "completed_by": VICTIM}]


def _work(cli: Cli, task_id: str) -> None:
    cli.submit([TaskAssignment(task_id=task_id, role="echo", input={"text": task_id})])
    wait_until(lambda: _done_by_victim(cli, task_id), 20, poll=0.25)  # each poll is a process


def test_planted_junk_and_replays_do_not_lock_an_agent_out(cli: Cli) -> None:
    _start(cli)
    _work(cli, "before")

    planted: dict[int, str] = {}
    # A replayed copy of its own first event is the last message under its prefix...
    _stop(cli)
    planted[_plant(cli, replay=True)] = "replayed"
    _start(cli)
    _work(cli, "after-replay")  # its result chains onto its real head: applied

    # ... then junk is.
    _stop(cli)
    planted[_plant(cli, replay=False)] = "malformed"
    _start(cli)
    _work(cli, "after-junk")

    out = cli("audit", "verify", "--json")
    audit = json.loads(out.stdout)
    assert {r["seq"]: r["reason"] for r in audit["rejected"]} == planted, audit["rejected"]
    assert audit["chain_breaks"] == []
