"""The swarm's benchmarks: ``tasks`` (no-op tasks/s through the router, two workers and the
projection) and ``latency`` (one task at a time, offered to its result visible)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from swarmlog.agents.host.bringup import start_server
from swarmlog.agents.publisher import Publisher
from swarmlog.bus.jetstream import JetStreamLog
from swarmlog.bus.subjects import task_event_filter
from swarmlog.config import Settings
from swarmlog.control.broker import refresh_broker, remember_namespace, write_authorization
from swarmlog.control.issuing import issue_replicas
from swarmlog.control.keystore import KeyStore
from swarmlog.control.system import command_argv, login_of, open_log, projector_argv
from swarmlog.errors import ServerError
from swarmlog.harness.bench.common import NAMESPACE, BenchResult, System, machine, position_beyond
from swarmlog.harness.bench.limits import (
    TASK_EVENTS,
    costs_in_this_run,
    limit_fields,
    process_cpu,
)
from swarmlog.projections.client import ProjectionClient
from swarmlog.schemas.payloads import Payload, TaskOffered

__all__ = ["LATENCY_TARGETS", "TASKS_OF_LIMIT", "bench_latency", "bench_tasks", "per_task_cpu"]

TASKS_OF_LIMIT = 0.7
"""DESIGN.md: tasks/s at least 0.7 x the physical limit (and 3 x the LangGraph peer's, which
``bench compare`` checks)."""
LATENCY_TARGETS = {"p50_ms": 10.0, "p99_ms": 50.0}
WORKERS = 2
NOOP = "swarmlog.agents.roles.noop:NoOp"
POLL = 0.02
"""Seconds between looks at the projection near the end of a benchmark (its timing error)."""
POLL_MAX = 0.25
"""Seconds at most between looks while much is left to do."""


@asynccontextmanager
async def deployed(root: Path) -> AsyncIterator[tuple[System, Settings]]:
    """A data dir's own embedded server with broker permissions, as ``swarmlog up`` starts it
    (every agent logs in as itself, confined), and its log open as the operator."""
    settings = Settings(data_dir=root / "data", namespace=NAMESPACE)
    settings.data_dir.mkdir(parents=True, mode=0o700)
    operator = KeyStore(settings.keys_dir).init_operator(os.urandom(32))
    remember_namespace(settings)
    write_authorization(settings)
    server, _ = start_server(settings.server_dir, False, os.environ.get("SWARMLOG_SYNC"))
    try:
        async with open_log(settings, provision=True) as log:
            await refresh_broker(settings)
            yield System(server.pid, log, operator, login_of(settings)), settings
    finally:
        server.stop()


class Swarm:
    """Projector, router and ``workers`` no-op worker processes on the bench's own server."""

    def __init__(self, root: Path, log: JetStreamLog, settings: Settings, workers: int) -> None:
        self.root = root
        self.log = log
        self.settings = settings
        self.workers = workers
        self.procs: list[subprocess.Popen[bytes]] = []
        self.kinds: list[str] = []
        """What each of :attr:`procs` is: ``projector``, ``router`` or ``workers``."""
        self.projections = ProjectionClient(log.client, NAMESPACE)

    async def start(self) -> None:
        self._spawn("projector", "projector", projector_argv(self.settings))
        await position_beyond(self.log, self.procs[0], -1)
        # As `agent start` provisions them: a key, a credential and queues each, admitted.
        started = 0
        for kind, target, replicas in (("router", "router", 1), ("workers", NOOP, self.workers)):
            for agent_id in await issue_replicas(self.settings, target, None, replicas):
                argv = command_argv(self.settings, "agent", "run", target, "--agent-id", agent_id)
                self._spawn(agent_id, kind, argv)
                started += 1
        sql = "SELECT count(*) FROM agents WHERE status = 'registered'"
        await self._until(lambda rows: rows[0][0] == started, sql)

    def _spawn(self, name: str, kind: str, argv: list[str]) -> None:
        logfile = (self.root / f"{name}.log").open("wb")
        self.procs.append(subprocess.Popen(argv, stdout=logfile, stderr=subprocess.STDOUT))
        self.kinds.append(kind)
        logfile.close()

    def cpu(self, server_pid: int) -> dict[str, float]:
        """CPU seconds used so far by kind of process: the swarm's, the server's and this
        one's (the benchmark publishing the offers and asking the projection)."""
        used = {"projector": 0.0, "router": 0.0, "workers": 0.0}
        for kind, proc in zip(self.kinds, self.procs, strict=True):
            used[kind] += process_cpu(proc.pid)
        return used | {"server": process_cpu(server_pid), "bench": time.process_time()}

    async def query(self, sql: str) -> list[list[Any]]:
        return (await self.projections.rows(sql, timeout=10)).rows

    async def _until(
        self,
        done: Callable[[list[list[Any]]], bool],
        sql: str,
        pause: Callable[[list[list[Any]]], float] = lambda rows: POLL,
    ) -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.procs):
                raise ServerError(f"a swarm process exited during the benchmark; see {self.root}")
            rows = await self.query(sql)
            if done(rows):
                return
            await asyncio.sleep(pause(rows))  # pacing the next look, not waiting for a state
        raise ServerError("the swarm did not finish within 10 minutes")

    async def succeeded(self, n: int) -> None:
        """Wait until ``n`` tasks have succeeded in the projection.

        The count is asked every :data:`POLL` seconds near the end and less often before (half
        the time the rate so far says is left, at most :data:`POLL_MAX`): each ask is a query the
        projector answers beside the work it is timed on, and at one every 20 ms they took about
        5 % of its CPU (profiled during ``bench tasks``)."""
        sql = "SELECT count(*) FROM tasks WHERE status = 'succeeded'"
        first: tuple[float, int] | None = None

        def pause(rows: list[list[Any]]) -> float:
            nonlocal first
            now, count = time.monotonic(), int(rows[0][0])
            if first is None:
                first = (now, count)
            rate = (count - first[1]) / (now - first[0]) if now > first[0] else 0.0
            if rate <= 0:
                return POLL
            return min(POLL_MAX, max(POLL, (n - count) / rate / 2))

        await self._until(lambda rows: rows[0][0] >= n, sql, pause)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def per_task_cpu(
    before: dict[str, float], after: dict[str, float], n: int, cores: int, limit: float
) -> dict[str, float]:
    """Where ``n`` tasks' CPU went (µs a task, by kind of process, from :meth:`Swarm.cpu`
    before and after), its ``total``, and beside it the ``limit_model``: the CPU a task costs
    in the model that gives the physical ``limit`` (tasks/s with all ``cores`` busy). What the
    total has beyond the model is what the limit leaves out, measured (pure)."""
    used = {kind: (after[kind] - before[kind]) / n * 1e6 for kind in after}
    per_task = {kind: round(us, 1) for kind, us in used.items()}
    per_task["total"] = round(sum(used.values()), 1)
    per_task["limit_model"] = round(cores / limit * 1e6, 1) if limit else 0.0
    return per_task


def _offers(prefix: str, n: int) -> list[Payload]:
    return [TaskOffered(task_id=f"{prefix}{i}", capability="noop") for i in range(n)]


async def bench_tasks(root: Path, n: int) -> BenchResult:
    """No-op tasks/s through router -> 2 worker processes -> result -> projection."""
    async with deployed(root) as (bench, settings):
        swarm = Swarm(root, bench.log, settings, workers=WORKERS)
        try:
            await swarm.start()
            publisher = Publisher(bench.log, bench.operator, NAMESPACE)
            await publisher.publish_many(_offers("warm", 50))
            await swarm.succeeded(50)
            start, before = time.perf_counter(), swarm.cpu(bench.server_pid)
            await publisher.publish_many(_offers("t", n))
            await swarm.succeeded(50 + n)
            elapsed, after = time.perf_counter() - start, swarm.cpu(bench.server_pid)
        finally:
            swarm.stop()
        costs = await costs_in_this_run(bench, root, n)
    figure = n / elapsed
    limits = limit_fields("tasks", costs, figure)
    cpu_per_task = per_task_cpu(before, after, n, costs.cores, limits["limit_bounds"]["all_cores"])
    ratio = figure / limits["limit"] if limits["limit"] else 0.0
    return BenchResult(
        "tasks",
        n,
        round(figure, 1),
        "tasks/s",
        {},
        round(ratio, 3),
        TASKS_OF_LIMIT,
        ratio >= TASKS_OF_LIMIT,
        {"workers": WORKERS, "seconds": round(elapsed, 3), "events_per_task": TASK_EVENTS}
        | {"cpu_us_per_task": cpu_per_task}
        | {"cores_busy": round(cpu_per_task["total"] * 1e-6 * n / elapsed, 2)}
        | {"target_figure": round(TASKS_OF_LIMIT * limits["limit"], 1)}
        | {k: v for k, v in limits.items() if k not in ("limit", "limit_ratio")},
        machine(),
        limit=limits["limit"],
        limit_ratio=limits["limit_ratio"],
    )


async def bench_latency(root: Path, n: int) -> BenchResult:
    """Offer one task at a time; time until its result is in the projection (p50, p99)."""
    n = min(n, 2000)
    async with deployed(root) as (bench, settings):
        log = bench.log
        swarm = Swarm(root, log, settings, workers=WORKERS)
        try:
            await swarm.start()
            publisher = Publisher(log, bench.operator, NAMESPACE)
            bell = await log.doorbell(task_event_filter(NAMESPACE, "*", "result"))
            samples = []
            for i in range(n + 20):  # the first 20 warm up
                task_id = f"l{i}"
                start = time.perf_counter()
                await publisher.publish(TaskOffered(task_id=task_id, capability="noop"))
                while not any(s.split(".")[4] == task_id for s in await bell.wait(10)):
                    pass
                # The ring can overtake the store by a hair: look until it is stored.
                subject = task_event_filter(NAMESPACE, task_id, "result")
                while (stored := await log.last_message(subject)) is None:
                    pass
                await swarm.projections.wait(stored.seq, timeout=10)
                if i >= 20:
                    samples.append((time.perf_counter() - start) * 1000)
            await bell.close()
        finally:
            swarm.stop()
        costs = await costs_in_this_run(bench, root, 20_000)
    samples.sort()
    p50 = samples[len(samples) // 2]
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    met = p50 <= LATENCY_TARGETS["p50_ms"] and p99 <= LATENCY_TARGETS["p99_ms"]
    limits = limit_fields("latency", costs, p50)
    return BenchResult(
        "latency",
        n,
        round(p50, 2),
        "ms (p50)",
        {},
        round(p50 / LATENCY_TARGETS["p50_ms"], 3),
        LATENCY_TARGETS["p50_ms"],
        met,
        {"p50_ms": round(p50, 2), "p99_ms": round(p99, 2), "max_ms": round(samples[-1], 2)}
        | {"targets": LATENCY_TARGETS, "workers": WORKERS}
        | {"target_within_limit": LATENCY_TARGETS["p50_ms"] >= limits["limit"]}
        | {k: v for k, v in limits.items() if k not in ("limit", "limit_ratio")},
        machine(),
        limit=limits["limit"],
        limit_ratio=limits["limit_ratio"],
    )
