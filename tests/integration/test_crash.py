"""`kill -9` of the projector process mid-stream, twenty times while events keep arriving: after
a restart the projection equals a full replay, with no event missing or applied twice."""

from __future__ import annotations

import asyncio
import io
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from swarmkit import Swarm

from swarmlog.bus.rpc import request
from swarmlog.bus.subjects import rpc_subject
from swarmlog.errors import BusError
from swarmlog.projections.projector import Projector
from swarmlog.projections.store import ProjectionStore
from swarmlog.schemas.payloads import Result, TaskAssignment

pytestmark = pytest.mark.integration


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
    """The projector's position; ``None`` while it does not answer (starting, or busy folding a
    batch: the poll asks again until its deadline)."""
    try:
        reply = await request(
            swarm.log.client, rpc_subject(swarm.namespace, "position"), {}, timeout=0.5
        )
    except BusError:
        return None
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


async def kill_twenty_times(
    swarm: Swarm,
    rng: random.Random,
    ingesting: asyncio.Task[None],
    log_file: Path,
    positions: list[int],
) -> None:
    """Start the projector and ``kill -9`` it a random while after it answers, 20 times;
    every other time only once it has committed a batch since it started."""
    for life in range(20):
        if ingesting.done():  # the ingest failed: say why now, not at the end
            ingesting.result()
            raise AssertionError("the ingest stopped")
        proc = start_projector(swarm, log_file)
        try:
            # Started and answering, then killed a random while later, mid-batch or not.
            positions.append(await wait_for_position(swarm, proc, -1))
            if life % 2:
                # So that it gets somewhere however loaded the machine: its first batch after a
                # start may be thousands of events, longer to fold than the draw below lasts
                # (under the whole suite's load, twenty lives once all ended before it did).
                positions.append(await wait_for_position(swarm, proc, positions[-1]))
            await asyncio.sleep(rng.uniform(0.0, 0.5))  # the random moment of the kill
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def where(task: asyncio.Task[None]) -> str:
    """Where ``task`` is (its stack), or how it ended."""
    if task.done():
        return "done" if task.cancelled() else f"ended: {task.exception()!r}"
    out = io.StringIO()
    task.print_stack(file=out)
    return out.getvalue()


async def test_kill_9_twenty_times_during_ingest(swarm: Swarm, tmp_path: Path) -> None:
    """Events keep arriving while the projector is killed 20 times, each at a random moment (a
    seeded draw) after it started; then it catches up and equals a full replay."""
    rng = random.Random(20)
    ops, alice = swarm.publisher(swarm.operator), swarm.publisher(swarm.alice)
    published = 0
    enough = asyncio.Event()

    async def ingest() -> None:
        nonlocal published
        while not enough.is_set():
            # A steady trickle, not a flood: enough that every kill lands with events arriving,
            # few enough that the catch-up and the replay at the end stay a few seconds.
            batch = range(published, published + 50)
            await ops.publish_many([TaskAssignment(task_id=f"t{i}", role="worker") for i in batch])
            await alice.publish_many([Result(task_id=f"t{i}", output=i) for i in batch])
            published += len(batch)
            await asyncio.sleep(0.05)  # pacing the trickle, not a synchronisation

    ingesting = asyncio.create_task(ingest())
    log_file = tmp_path / "projector.log"
    positions: list[int] = []
    try:
        async with asyncio.timeout(200):  # a hang says where it hangs, not "node down"
            await kill_twenty_times(swarm, rng, ingesting, log_file, positions)
    except TimeoutError:
        hung = f"hung, {published} published, positions {positions}"
        raise AssertionError(f"{hung}: {where(ingesting)}") from None
    finally:
        # The trickle ends after a whole batch, acknowledged: a cancelled one could still land
        # after the stream's last sequence is read below.
        enough.set()
        try:
            async with asyncio.timeout(30):
                await ingesting
        except TimeoutError:
            ingesting.cancel()
            raise AssertionError(f"the ingest does not end: {where(ingesting)}") from None

    assert positions[-1] > positions[0]  # it made progress between the kills
    last = await swarm.log.last_seq()
    print("LAST", last, positions)
    proc = start_projector(swarm, log_file)
    try:
        await wait_for_position(swarm, proc, last - 1)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log_file.read_text()[-2000:]

    live = ProjectionStore(swarm.settings.projection_path, read_only=True)
    events = live.rows("SELECT count(*), count(DISTINCT id), min(seq), max(seq) FROM events")
    assert events == [(last, last, 1, last)]  # nothing missing, nothing applied twice
    assert live.rows("SELECT count(*) FROM quarantine") == [(0,)]
    succeeded = live.rows("SELECT count(*) FROM tasks WHERE status = 'succeeded'")[0][0]
    assert succeeded == published > 0
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
