"""Benchmarks behind ``swarmlog bench``: each reports its figure, the ceilings measured in the
same run (raw PyNaCl verify, raw nats-py publish and ordered-consume rates), its physical limit
from the stage costs measured in the same run (:mod:`.limits`), and the ratios to both, so the
comparison with the design's targets holds on a noisy machine. Each run uses its own embedded
server and temp files.

- :mod:`.stream`: ``publish``, ``ingest``, ``replay``;
- :mod:`.swarm`: ``tasks``, ``latency``;
- :mod:`.deadlocks`: ``deadlocks``;
- :mod:`.limits`: ``limits`` (every stage's cost, every benchmark's physical limit);
- :mod:`.memory`: ``memory`` (the projector's RSS over a long replay);
- :mod:`.compare`: ``compare`` (``tasks`` and ``publish`` beside LangGraph and eventsourcing).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from swarmlog.harness.bench.common import BenchResult
from swarmlog.harness.bench.compare import bench_compare
from swarmlog.harness.bench.deadlocks import bench_deadlocks
from swarmlog.harness.bench.limits import bench_limits
from swarmlog.harness.bench.memory import bench_memory
from swarmlog.harness.bench.stream import bench_ingest, bench_publish, bench_replay
from swarmlog.harness.bench.swarm import bench_latency, bench_tasks

__all__ = ["BENCHMARKS", "BenchResult", "run_benchmark"]

BENCHMARKS: dict[str, Callable[[Path, int], Coroutine[Any, Any, BenchResult]]] = {
    "publish": bench_publish,
    "ingest": bench_ingest,
    "replay": bench_replay,
    "tasks": bench_tasks,
    "latency": bench_latency,
    "deadlocks": bench_deadlocks,
    "limits": bench_limits,
    "memory": bench_memory,
    "compare": bench_compare,
}


def run_benchmark(name: str, events: int) -> BenchResult:
    """Run benchmark ``name`` with ``events`` events in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix=f"swarmlog-bench-{name}-") as tmp:
        return asyncio.run(BENCHMARKS[name](Path(tmp), events))
