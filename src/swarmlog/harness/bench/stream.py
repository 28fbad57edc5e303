"""The log's own benchmarks: ``publish`` (signed events stored), ``ingest`` (published while the
projector daemon folds them) and ``replay`` (re-folded from the stream into a fresh DuckDB)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from swarmlog.config import Settings
from swarmlog.control.keystore import KeyStore
from swarmlog.control.system import projector_argv
from swarmlog.harness.bench.ceilings import raw_consume_rate, raw_publish_rate, raw_verify_rate
from swarmlog.harness.bench.common import (
    NAMESPACE,
    BenchResult,
    machine,
    position_beyond,
    system,
    workload,
)
from swarmlog.harness.bench.limits import StageCosts, costs_in_this_run, limit_fields
from swarmlog.projections.projector import Projector
from swarmlog.projections.store import ProjectionStore

__all__ = ["TARGETS", "bench_ingest", "bench_publish", "bench_replay"]

TARGETS = {"publish": 0.7, "ingest": 0.7, "replay": 0.8}
"""DESIGN.md's targets: the figure over its ceiling (for replay, the smaller of two; for
ingest, over its physical limit)."""


def _result(
    name: str,
    n: int,
    figure: float,
    ceilings: dict[str, float],
    base: float | None,
    costs: StageCosts,
    **details: Any,
) -> BenchResult:
    """``base`` is what the target is a ratio of (``None``: the physical limit)."""
    target = TARGETS[name]
    limits = limit_fields(name, costs, figure)
    base = limits["limit"] if base is None else base
    ratio = figure / base if base else 0.0
    # Can the design's target be met at all? (its figure against the physical limit)
    details["target_figure"] = round(target * base, 1)
    details["target_within_limit"] = target * base <= limits["limit"]
    details |= {k: v for k, v in limits.items() if k not in ("limit", "limit_ratio")}
    return BenchResult(
        name,
        n,
        round(figure, 1),
        "events/s",
        {k: round(v, 1) for k, v in ceilings.items()},
        round(ratio, 3),
        target,
        ratio >= target,
        details,
        machine(),
        limit=limits["limit"],
        limit_ratio=limits["limit_ratio"],
        ceiling_ratios={k: round(figure / v, 3) for k, v in ceilings.items() if v},
    )


async def bench_publish(root: Path, n: int) -> BenchResult:
    async with system(root) as bench:
        publisher, payloads, sample = await workload(bench.log, bench.operator, n)
        raw = await raw_publish_rate(bench.log, NAMESPACE, n, len(sample))
        start = time.perf_counter()
        await publisher.publish_many(payloads)
        figure = n / (time.perf_counter() - start)
        costs = await costs_in_this_run(bench, root, n)
    return _result(
        "publish", n, figure, {"raw_publish_async": raw}, raw, costs, message_bytes=len(sample)
    )


async def bench_ingest(root: Path, n: int) -> BenchResult:
    """End to end as deployed: this process publishes signed events while the projector daemon
    (its own process, as `swarmlog up` runs it) verifies and folds them into DuckDB."""
    async with system(root) as bench:
        log = bench.log
        settings = Settings(data_dir=root / "data", nats_url=log.url, namespace=NAMESPACE)
        operator = KeyStore(settings.keys_dir).init_operator(os.urandom(32))
        publisher, payloads, sample = await workload(log, operator, n)
        verify_1 = raw_verify_rate(sample)
        logfile = (root / "projector.log").open("wb")
        daemon = subprocess.Popen(  # noqa: ASYNC220 (starting it does not block)
            projector_argv(settings), stdout=logfile, stderr=subprocess.STDOUT
        )
        try:
            await position_beyond(log, daemon, -1)  # up and answering
            start = time.perf_counter()
            published = await publisher.publish_many(payloads)
            publish_seconds = time.perf_counter() - start
            await position_beyond(log, daemon, published[-1].seq - 1)
            elapsed = time.perf_counter() - start
        finally:
            daemon.terminate()
            daemon.wait(timeout=30)
            logfile.close()
        costs = await costs_in_this_run(bench, root, n)
    return _result(
        "ingest",
        n,
        n / elapsed,
        {"raw_verify_1_thread": verify_1},
        None,  # DESIGN.md: 0.7 x its physical limit
        costs,
        publish_seconds=round(publish_seconds, 3),
        end_to_end_seconds=round(elapsed, 3),
    )


async def bench_replay(root: Path, n: int) -> BenchResult:
    async with system(root) as bench:
        log, operator = bench.log, bench.operator
        publisher, payloads, sample = await workload(log, operator, n)
        await publisher.publish_many(payloads)
        verify_2 = raw_verify_rate(sample, threads=2)
        consume = await raw_consume_rate(log, NAMESPACE, n)
        store = ProjectionStore(root / "replay.duckdb")
        projector = Projector(log, store, namespace=NAMESPACE, operator_key=operator.public_key)
        start = time.perf_counter()
        await projector.run(follow=False)
        figure = n / (time.perf_counter() - start)
        projector.close()
        store.close()
        costs = await costs_in_this_run(bench, root, n)
    ceilings = {"raw_verify_2_threads": verify_2, "raw_ordered_consume": consume}
    return _result("replay", n, figure, ceilings, min(verify_2, consume), costs)
