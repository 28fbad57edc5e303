"""``bench compare``: swarmlog's ``tasks`` and ``publish`` beside its peers, in the same run.

The peers live in ``benchmarks/peers/`` of a checkout and need the ``peers`` extra
(``uv pip install -e '.[peers]'``): LangGraph in one process with its SQLite checkpointer
(supervisor -> worker no-op tasks) and the ``eventsourcing`` library on SQLite (events saved, a
projection read). Each peer runs in a process of its own, after swarmlog's benchmarks, on the
same machine; the result is one table of ratios.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from swarmlog.errors import ConfigError
from swarmlog.harness.bench.common import BenchResult, machine
from swarmlog.harness.bench.stream import bench_publish
from swarmlog.harness.bench.swarm import bench_tasks

__all__ = ["PEERS_DIR", "TASKS_OVER_LANGGRAPH", "bench_compare", "ratio_table"]

PEERS_DIR = Path(__file__).resolve().parents[4] / "benchmarks" / "peers"
"""Where a checkout keeps the peers (``src/swarmlog/harness/bench`` is four levels down)."""
TASKS_OVER_LANGGRAPH = 3.0
"""The issue's target: swarmlog's tasks/s at least 3 x the LangGraph peer's, same run."""


def run_peer(script: str, root: Path, *args: str) -> dict[str, Any]:
    """Run ``benchmarks/peers/<script>`` in its own process; its JSON line."""
    path = PEERS_DIR / script
    if not path.is_file():
        raise ConfigError(f"{path} not found: bench compare runs from a checkout of swarmlog")
    folder = root / path.stem
    folder.mkdir()
    proc = subprocess.run(
        [sys.executable, str(path), "--dir", str(folder), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        if "ModuleNotFoundError" in proc.stderr:
            raise ConfigError(
                f"{script} needs the peers extra: uv pip install -e '.[peers]' (or make peers)"
            )
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ConfigError(f"{script} failed: {last}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def ratio_table(
    tasks: float, publish: float, langgraph: dict[str, Any], eventsourcing: dict[str, Any]
) -> list[dict[str, Any]]:
    """One row per comparison: swarmlog's figure, the peer's, and their ratio (pure)."""
    saved = eventsourcing["saved_events_per_s"]
    rows = [
        ("no-op tasks/s", "tasks", tasks, "langgraph", langgraph["tasks_per_s"]),
        ("events/s stored", "publish", publish, "eventsourcing", saved),
    ]
    return [
        {
            "figure": figure,
            "swarmlog": {"benchmark": bench, "value": ours},
            "peer": {"name": peer, "value": theirs},
            "ratio": round(ours / theirs, 2) if theirs else 0.0,
        }
        for figure, bench, ours, peer, theirs in rows
    ]


async def bench_compare(root: Path, n: int) -> BenchResult:
    """swarmlog's ``tasks`` (n tasks) and ``publish`` (n events), then the peers."""
    (root / "tasks").mkdir()
    (root / "publish").mkdir()
    tasks = await bench_tasks(root / "tasks", n)
    publish = await bench_publish(root / "publish", n)
    langgraph = run_peer("langgraph_peer.py", root, "--tasks", str(min(n, 5000)))
    eventsourcing = run_peer("eventsourcing_peer.py", root, "--events", str(min(n, 20_000)))
    table = ratio_table(tasks.figure, publish.figure, langgraph, eventsourcing)
    over = table[0]["ratio"]
    return BenchResult(
        "compare",
        n,
        over,
        "x LangGraph (no-op tasks/s, same run)",
        {
            "langgraph_tasks_per_s": langgraph["tasks_per_s"],
            "eventsourcing_saved_events_per_s": eventsourcing["saved_events_per_s"],
        },
        round(over / TASKS_OVER_LANGGRAPH, 3),
        TASKS_OVER_LANGGRAPH,
        over >= TASKS_OVER_LANGGRAPH,
        {
            "table": table,
            "peers": {"langgraph": langgraph, "eventsourcing": eventsourcing},
            "swarmlog": {
                "tasks": {
                    "figure": tasks.figure,
                    "limit": tasks.limit,
                    "limit_ratio": tasks.limit_ratio,
                },
                "publish": {
                    "figure": publish.figure,
                    "ceiling_ratios": publish.ceiling_ratios,
                    "limit": publish.limit,
                    "limit_ratio": publish.limit_ratio,
                },
            },
        },
        machine(),
        limit=tasks.limit,
        limit_ratio=tasks.limit_ratio,
    )
