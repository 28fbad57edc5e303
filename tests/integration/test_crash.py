"""`kill -9` of the projector process mid-stream, again and again: after a restart the projection
equals a full replay, with no event missing or applied twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from swarmkit import Swarm

from swarmlog.bus.rpc import request
from swarmlog.bus.subjects import rpc_subject
from swarmlog.projections.projector import Projector
from swarmlog.projections.store import ProjectionStore
from swarmlog.schemas.payloads import Result, TaskAssignment

pytestmark = pytest.mark.integration

EVENTS = 30_000


def start_projector(swarm: Swarm, log_file: Path) -> subprocess.Popen[bytes]:
    s = swarm.settings
    with log_file.open("ab") as out:
        return subprocess.Popen(
            [
                *(sys.executable, "-m", "swarmlog", "--data-dir", str(s.data_dir)),
                *("--nats-url", str(s.nats_url), "--namespace", s.namespace, "projector", "run"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def position(swarm: Swarm) -> int | None:
    reply = await request(
        swarm.log.client, rpc_subject(swarm.namespace, "position"), {}, timeout=0.5
    )
    return int(reply["position"]) if isinstance(reply, dict) else None


async def wait_for_position(swarm: Swarm, proc: subprocess.Popen[bytes], beyond: int) -> int:
    """Poll the projector until its position passes ``beyond`` (deadline 60 s)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the projector died on its own"
        seen = await position(swarm)
        if seen is not None and seen > beyond:
            return seen
        await asyncio.sleep(0.01)
    raise AssertionError(f"projector stuck at or below {beyond}")


async def test_kill_9_during_batches_then_restart(swarm: Swarm, tmp_path: Path) -> None:
    ops = swarm.publisher(swarm.operator)
    half = EVENTS // 2
    await ops.publish_many([TaskAssignment(task_id=f"t{i}", role="worker") for i in range(half)])
    await swarm.publisher(swarm.alice).publish_many(
        [Result(task_id=f"t{i}", output=i) for i in range(half)]
    )
    last = await swarm.log.last_seq()
    log_file = tmp_path / "projector.log"
    reached = 0
    kills = 0
    while kills < 4:
        proc = start_projector(swarm, log_file)
        try:
            reached = await wait_for_position(swarm, proc, reached)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        if reached >= last:
            break
        kills += 1
    assert kills >= 2, "the projector finished before it could be killed mid-stream"
    proc = start_projector(swarm, log_file)
    try:
        await wait_for_position(swarm, proc, last - 1)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log_file.read_text()[-2000:]

    live = ProjectionStore(swarm.settings.projection_path, read_only=True)
    events = live.rows("SELECT count(*), count(DISTINCT id), min(seq), max(seq) FROM events")
    assert events == [(last, last, 1, last)]
    assert live.rows("SELECT count(*) FROM quarantine") == [(0,)]
    assert live.rows("SELECT count(*) FROM tasks WHERE status = 'succeeded'") == [(half,)]
    replayed = ProjectionStore(tmp_path / "replay.duckdb")
    projector = Projector(
        swarm.log, replayed, namespace=swarm.namespace, operator_key=swarm.operator.public_key
    )
    await projector.run(follow=False)
    projector.close()
    assert live.position() == replayed.position() == last
    assert live.state_hash() == replayed.state_hash()
    live.close()
    replayed.close()
