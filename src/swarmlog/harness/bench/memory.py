"""``bench memory``: the projector daemon's resident memory while it folds a long stream.

``n`` signed events (default 1,000,000) are published first, in chunks (the benchmark's own
memory stays small); then the projector daemon starts, as ``swarmlog up`` runs it, and folds
them from the start while its RSS (with that of any child it runs, such as a snapshot's) is
sampled from ``/proc`` every 0.25 s. The figure is the largest RSS; the run is *flat* when the
second half of the replay never needs more than 15 % above the first half's largest. The
replay of the whole stream is timed too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from pathlib import Path

from swarmlog.agents.publisher import Publisher
from swarmlog.config import Settings
from swarmlog.control.keystore import KeyStore
from swarmlog.control.system import projector_argv
from swarmlog.errors import BusError, ServerError
from swarmlog.harness.bench.common import NAMESPACE, BenchResult, machine, payloads, system
from swarmlog.projections.client import ProjectionClient

__all__ = ["MEMORY_TARGET_MB", "bench_memory", "rss_mb", "tree_rss_mb"]

MEMORY_TARGET_MB = 300.0
FLAT = 1.15
"""The second half's largest RSS over the first half's, at most, for a flat run."""
_CHUNK = 20_000
_SAMPLE = 0.25


def rss_mb(pid: int) -> float:
    """The resident set of process ``pid`` in MB (``VmRSS``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ServerError(f"process {pid} has no VmRSS")


def tree_rss_mb(pid: int) -> float:
    """The resident sets of ``pid`` and every process it started, still running, in MB: the
    projector's snapshot child (which reads the whole copy) counts as the projector's."""
    total, todo, seen = 0.0, [pid], set()
    while todo:
        one = todo.pop()
        if one in seen:
            continue
        seen.add(one)
        with contextlib.suppress(OSError, ServerError):  # a child may end between two reads
            total += rss_mb(one)
            for task in Path(f"/proc/{one}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
    return total


async def bench_memory(root: Path, n: int) -> BenchResult:
    async with system(root) as bench:
        log = bench.log
        settings = Settings(data_dir=root / "data", nats_url=log.url, namespace=NAMESPACE)
        operator = KeyStore(settings.keys_dir).init_operator(os.urandom(32))
        publisher = Publisher(log, operator, NAMESPACE)
        await publisher.recover()
        last = 0
        for start in range(0, n, _CHUNK):
            chunk = payloads(min(_CHUNK, n - start), prefix=f"m{start}-")
            last = (await publisher.publish_many(chunk))[-1].seq
        logfile = (root / "projector.log").open("wb")
        daemon = subprocess.Popen(  # noqa: ASYNC220 (starting it does not block)
            projector_argv(settings), stdout=logfile, stderr=subprocess.STDOUT
        )
        samples: list[tuple[int, float]] = []  # (position, RSS MB)
        projections = ProjectionClient(log.client, NAMESPACE)
        began = time.perf_counter()
        try:
            position = 0
            deadline = time.monotonic() + 3600
            while position < last:
                if daemon.poll() is not None:
                    raise ServerError(f"the projector daemon exited; see {root / 'projector.log'}")
                if time.monotonic() > deadline:
                    raise ServerError("the projector did not catch up within an hour")
                samples.append((position, tree_rss_mb(daemon.pid)))
                with contextlib.suppress(BusError):  # busy (a snapshot): RSS still sampled
                    position = await projections.position(5.0) or position
                await asyncio.sleep(_SAMPLE)  # a sampling period, not a wait for a condition
            seconds = time.perf_counter() - began
            samples.append((position, tree_rss_mb(daemon.pid)))
        finally:
            daemon.terminate()  # it may be taking a snapshot (every 100,000 events): let it end
            try:
                daemon.wait(timeout=600)
            except subprocess.TimeoutExpired:
                daemon.kill()
            logfile.close()
    first = max((mb for at, mb in samples if at <= last // 2), default=0.0)
    second = max((mb for at, mb in samples if at > last // 2), default=0.0)
    top = max(mb for _, mb in samples)
    growth = second / first if first else 0.0
    met = top <= MEMORY_TARGET_MB and growth <= FLAT
    quarters = {
        f"rss_mb_at_{q}%": round(
            max((mb for at, mb in samples if at <= last * q // 100), default=0.0), 1
        )
        for q in (25, 50, 75, 100)
    }
    return BenchResult(
        "memory",
        n,
        round(top, 1),
        "MB (largest projector RSS)",
        {},
        round(top / MEMORY_TARGET_MB, 3),
        MEMORY_TARGET_MB,
        met,
        {
            "replay_seconds": round(seconds, 1),
            "replay_events_per_s": round(last / seconds, 1),
            "first_half_max_mb": round(first, 1),
            "second_half_max_mb": round(second, 1),
            "growth": round(growth, 3),
            "flat_at_most": FLAT,
            "samples": len(samples),
        }
        | quarters,
        machine(),
    )
