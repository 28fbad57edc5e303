# Over 400 lines: six benchmarks and the ceilings each is measured against, one tool.
"""Benchmarks behind ``swarmlog bench``: each reports its figure and the ceilings measured in the
same run (raw PyNaCl verify, raw nats-py publish and ordered-consume rates), so the ratio to the
design's target holds on a noisy machine. Each run uses its own embedded server and temp files.
"""

from __future__ import annotations

import asyncio
import os
import platform
import random
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nats.js.api import ConsumerConfig, DeliverPolicy

from swarmlog.agents.publisher import Publisher
from swarmlog.bus.jetstream import JetStreamLog
from swarmlog.bus.server import EmbeddedServer
from swarmlog.bus.subjects import stream_subjects, task_event_filter, task_subject
from swarmlog.config import Settings
from swarmlog.control.issuing import issue_agent
from swarmlog.control.keystore import KeyStore
from swarmlog.control.system import command_argv, projector_argv
from swarmlog.errors import ServerError
from swarmlog.projections.client import ProjectionClient, records
from swarmlog.projections.projector import Projector
from swarmlog.projections.store import ProjectionStore
from swarmlog.schemas.codec import decode_envelope, decode_signed
from swarmlog.schemas.payloads import Payload, TaskAssignment, TaskOffered
from swarmlog.schemas.signing import EVENT_DOMAIN, Identity, verify_signature

__all__ = ["BENCHMARKS", "BenchResult", "run_benchmark"]

NAMESPACE = "bench"
TARGETS = {"publish": 0.7, "ingest": 0.9, "replay": 0.8}
TASKS_TARGET = 1500.0  # tasks/s, absolute
LATENCY_TARGETS = {"p50_ms": 10.0, "p99_ms": 50.0}


@dataclass
class BenchResult:
    """One benchmark's figure, its ceilings and the ratio the design's target is about."""

    benchmark: str
    events: int
    figure: float
    unit: str
    ceilings: dict[str, float]
    ratio: float
    target: float
    met: bool
    details: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)


def _payloads(n: int) -> list[Payload]:
    # A realistic small task: ~400 bytes signed on the wire.
    return [
        TaskAssignment(task_id=f"t{i}", role="worker", input={"text": "summarise this " * 8})
        for i in range(n)
    ]


def _machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def raw_verify_rate(sample: bytes, *, threads: int = 1, seconds: float = 1.0) -> float:
    """Signatures verified per second by PyNaCl on ``threads`` threads (no decoding, no state)."""
    signed = decode_signed(sample)
    signer = decode_envelope(signed.body).signer

    def spin(deadline: float) -> int:
        count = 0
        while time.perf_counter() < deadline:
            for _ in range(100):
                verify_signature(signer, EVENT_DOMAIN, signed.body, signed.signature)
            count += 100
        return count

    with ThreadPoolExecutor(threads) as pool:
        start = time.perf_counter()
        counts = list(pool.map(spin, [start + seconds] * threads))
        elapsed = time.perf_counter() - start
    return sum(counts) / elapsed


async def raw_publish_rate(log: JetStreamLog, n: int, size: int, window: int = 256) -> float:
    """Unsigned ``publish_async`` of ``size``-byte messages with a bounded window."""
    js = log.client.jetstream()
    data = b"x" * size
    pending: list[asyncio.Future[Any]] = []
    start = time.perf_counter()
    for i in range(n):
        pending.append(await js.publish_async(task_subject(NAMESPACE, "raw", f"t{i}", "raw"), data))
        if len(pending) >= window:
            await pending.pop(0)
    await asyncio.gather(*pending)
    return n / (time.perf_counter() - start)


async def raw_consume_rate(log: JetStreamLog, n: int) -> float:
    """nats-py ordered consumer (callback) reading ``n`` messages from the stream's start."""
    js = log.client.jetstream()
    done = asyncio.Event()
    count = 0

    async def on_msg(msg: Any) -> None:
        nonlocal count
        count += 1
        if count >= n:
            done.set()

    start = time.perf_counter()
    sub = await js.subscribe(
        stream_subjects(NAMESPACE)[0],
        cb=on_msg,
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    await asyncio.wait_for(done.wait(), timeout=600)
    elapsed = time.perf_counter() - start
    await sub.unsubscribe()
    return n / elapsed


@asynccontextmanager
async def _system(root: Path) -> AsyncIterator[tuple[JetStreamLog, Identity]]:
    # SWARMLOG_SYNC measures a sync policy (`always`, or a period): see docs/benchmarks.md.
    server = EmbeddedServer(root / "nats", sync=os.environ.get("SWARMLOG_SYNC"))
    url = server.start()
    try:
        log = await JetStreamLog.open(url, NAMESPACE, provision=True)
        try:
            yield log, Identity.from_seed("operator", os.urandom(32))
        finally:
            await log.close()
    finally:
        server.stop()


def _result(
    name: str, n: int, figure: float, ceilings: dict[str, float], base: float, **details: Any
) -> BenchResult:
    ratio = figure / base if base else 0.0
    target = TARGETS[name]
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
        _machine(),
    )


async def _workload(
    log: JetStreamLog, operator: Identity, n: int
) -> tuple[Publisher, list[Payload], bytes]:
    """A publisher ready to go, ``n`` payloads, and one signed event as the size sample."""
    publisher = Publisher(log, operator, NAMESPACE)
    payloads = _payloads(n)
    await publisher.recover()
    return publisher, payloads, publisher.seal(payloads[0]).data


async def bench_publish(root: Path, n: int) -> BenchResult:
    async with _system(root) as (log, operator):
        publisher, payloads, sample = await _workload(log, operator, n)
        raw = await raw_publish_rate(log, n, len(sample))
        start = time.perf_counter()
        await publisher.publish_many(payloads)
        figure = n / (time.perf_counter() - start)
    return _result("publish", n, figure, {"raw_publish_async": raw}, raw, message_bytes=len(sample))


async def bench_ingest(root: Path, n: int) -> BenchResult:
    """End to end as deployed: this process publishes signed events while the projector daemon
    (its own process, as `swarmlog up` runs it) verifies and folds them into DuckDB."""
    async with _system(root) as (log, _):
        settings = Settings(data_dir=root / "data", nats_url=log.url, namespace=NAMESPACE)
        operator = KeyStore(settings.keys_dir).init_operator(os.urandom(32))
        publisher, payloads, sample = await _workload(log, operator, n)
        verify_1 = raw_verify_rate(sample)
        logfile = (root / "projector.log").open("wb")
        daemon = subprocess.Popen(  # noqa: ASYNC220 (starting it does not block)
            projector_argv(settings), stdout=logfile, stderr=subprocess.STDOUT
        )
        try:
            await _position_beyond(log, daemon, -1)  # up and answering
            start = time.perf_counter()
            published = await publisher.publish_many(payloads)
            publish_seconds = time.perf_counter() - start
            await _position_beyond(log, daemon, published[-1].seq - 1)
            elapsed = time.perf_counter() - start
        finally:
            daemon.terminate()
            daemon.wait(timeout=30)
            logfile.close()
    return _result(
        "ingest",
        n,
        n / elapsed,
        {"raw_verify_1_thread": verify_1},
        verify_1,
        publish_seconds=round(publish_seconds, 3),
        end_to_end_seconds=round(elapsed, 3),
    )


async def _position_beyond(log: JetStreamLog, daemon: subprocess.Popen[bytes], seq: int) -> int:
    """Poll the projector daemon's position until it passes ``seq``."""
    projections = ProjectionClient(log.client, NAMESPACE)
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise ServerError("the projector daemon exited during the benchmark")
        position = await projections.position(1.0)
        if position is not None and position > seq:
            return position
        await asyncio.sleep(0.005)
    raise ServerError("the projector did not catch up within an hour")


async def bench_replay(root: Path, n: int) -> BenchResult:
    async with _system(root) as (log, operator):
        publisher, payloads, sample = await _workload(log, operator, n)
        await publisher.publish_many(payloads)
        verify_2 = raw_verify_rate(sample, threads=2)
        consume = await raw_consume_rate(log, n)
        store = ProjectionStore(root / "replay.duckdb")
        projector = Projector(log, store, namespace=NAMESPACE, operator_key=operator.public_key)
        start = time.perf_counter()
        await projector.run(follow=False)
        figure = n / (time.perf_counter() - start)
        projector.close()
        store.close()
    ceilings = {"raw_verify_2_threads": verify_2, "raw_ordered_consume": consume}
    return _result("replay", n, figure, ceilings, min(verify_2, consume))


class _Swarm:
    """Projector, router and ``workers`` no-op worker processes on the bench's own server."""

    def __init__(self, root: Path, log: JetStreamLog, workers: int) -> None:
        self.root = root
        self.log = log
        self.settings = Settings(data_dir=root / "data", nats_url=log.url, namespace=NAMESPACE)
        self.workers = workers
        self.procs: list[subprocess.Popen[bytes]] = []
        self.projections = ProjectionClient(log.client, NAMESPACE)

    async def start(self) -> Identity:
        operator = KeyStore(self.settings.keys_dir).init_operator(os.urandom(32))
        self._spawn("projector", projector_argv(self.settings))
        await _position_beyond(self.log, self.procs[0], -1)
        ids = ["router-1"] + [f"noop-{i}" for i in range(1, self.workers + 1)]
        for agent_id in ids:
            role = agent_id.rsplit("-", 1)[0]
            caps = ["noop"] if role == "noop" else []
            await issue_agent(self.settings, role, agent_id=agent_id, capabilities=caps)
            target = "router" if role == "router" else "swarmlog.agents.roles.noop:NoOp"
            argv = command_argv(self.settings, "agent", "run", target, "--agent-id", agent_id)
            self._spawn(agent_id, argv)
        sql = "SELECT count(*) FROM agents WHERE status = 'registered'"
        await self._until(lambda rows: rows[0][0] == len(ids), sql)
        return operator

    def _spawn(self, name: str, argv: list[str]) -> None:
        logfile = (self.root / f"{name}.log").open("wb")
        self.procs.append(subprocess.Popen(argv, stdout=logfile, stderr=subprocess.STDOUT))
        logfile.close()

    async def query(self, sql: str) -> list[list[Any]]:
        return (await self.projections.rows(sql, timeout=10)).rows

    async def _until(self, done: Callable[[list[list[Any]]], bool], sql: str) -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.procs):
                raise ServerError(f"a swarm process exited during the benchmark; see {self.root}")
            if done(await self.query(sql)):
                return
            await asyncio.sleep(0.02)
        raise ServerError("the swarm did not finish within 10 minutes")

    async def succeeded(self, n: int) -> None:
        """Wait until ``n`` tasks have succeeded in the projection."""
        sql = "SELECT count(*) FROM tasks WHERE status = 'succeeded'"
        await self._until(lambda rows: rows[0][0] >= n, sql)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _offers(prefix: str, n: int) -> list[Payload]:
    return [TaskOffered(task_id=f"{prefix}{i}", capability="noop") for i in range(n)]


async def bench_tasks(root: Path, n: int) -> BenchResult:
    """No-op tasks/s through router -> 2 worker processes -> result -> projection."""
    async with _system(root) as (log, _):
        swarm = _Swarm(root, log, workers=2)
        try:
            operator = await swarm.start()
            publisher = Publisher(log, operator, NAMESPACE)
            await publisher.publish_many(_offers("warm", 50))
            await swarm.succeeded(50)
            start = time.perf_counter()
            await publisher.publish_many(_offers("t", n))
            await swarm.succeeded(50 + n)
            elapsed = time.perf_counter() - start
        finally:
            swarm.stop()
    figure = n / elapsed
    return BenchResult(
        "tasks",
        n,
        round(figure, 1),
        "tasks/s",
        {},
        round(figure / TASKS_TARGET, 3),
        TASKS_TARGET,
        figure >= TASKS_TARGET,
        {"workers": 2, "seconds": round(elapsed, 3), "events_per_task": 4},
        _machine(),
    )


async def bench_latency(root: Path, n: int) -> BenchResult:
    """Offer one task at a time; time until its result is in the projection (p50, p99)."""
    n = min(n, 2000)
    async with _system(root) as (log, _):
        swarm = _Swarm(root, log, workers=2)
        try:
            operator = await swarm.start()
            publisher = Publisher(log, operator, NAMESPACE)
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
    samples.sort()
    p50 = samples[len(samples) // 2]
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    met = p50 <= LATENCY_TARGETS["p50_ms"] and p99 <= LATENCY_TARGETS["p99_ms"]
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
        | {"targets": LATENCY_TARGETS, "workers": 2},
        _machine(),
    )


def wait_graph(n: int, seed: int = 7) -> list[tuple[str, str, int]]:
    """About ``n`` waits shaped like a busy swarm's: teams of 4-20 agents in which each waits
    on one or two later teammates (chains, no cycle), and one team in a hundred with a wait back
    to its first member (a deadlock). Rows are ``(waiter, waits_on, since)``."""
    rng = random.Random(seed)
    edges: list[tuple[str, str, int]] = []
    team = 0
    while len(edges) < n:
        size = rng.randint(4, 20)
        names = [f"t{team}-a{i}" for i in range(size)]
        for i in range(size - 1):
            for j in rng.sample(range(i + 1, size), min(size - 1 - i, rng.choice((1, 1, 1, 2)))):
                edges.append((names[i], names[j], len(edges)))
        if team % 100 == 0:
            edges.append((names[-1], names[0], len(edges)))
        team += 1
    return edges[:n]


async def bench_deadlocks(root: Path, n: int) -> BenchResult:
    """Deadlock detection on an ``n``-wait graph: the watchdog's SQL over a ``waits_for`` table in
    a DuckDB file, then the pure analysis of what it found; and the pure detector over the whole
    graph, as the reference the two must agree with."""
    import duckdb  # a measurement: the table stands in for the projection's

    from swarmlog.agents.policy.deadlocks import Wait, find_deadlocks, on_cycles
    from swarmlog.agents.roles.watchdog import OPEN_WAITS_SQL

    edges = wait_graph(n)
    con = duckdb.connect(str(root / "waits.duckdb"))
    con.execute(
        "CREATE TABLE waits_for (ref TEXT PRIMARY KEY, kind TEXT, waiter TEXT, waits_on TEXT,"
        " task_id TEXT, workflow_id TEXT, since BIGINT)"
    )
    rows_csv = root / "waits.csv"
    rows_csv.write_text("".join(f"q{since},{a},{b},{since}\n" for a, b, since in edges))
    con.execute(
        "INSERT INTO waits_for SELECT column0, 'clarification', column1, column2, NULL, NULL,"
        " column3 FROM read_csv(?, header = false)",
        [str(rows_csv)],
    )
    began = time.perf_counter()
    cursor = con.execute(OPEN_WAITS_SQL)
    columns = [d[0] for d in cursor.description or ()]
    rows = records(columns, cursor.fetchall())
    sql_s = time.perf_counter() - began
    began = time.perf_counter()
    waits = [Wait(r["ref"], r["waiter"], r["waits_on"], r["since"]) for r in rows]
    found = find_deadlocks(waits)
    analyse_s = time.perf_counter() - began
    con.close()
    began = time.perf_counter()
    reference = on_cycles((a, b) for a, b, _ in edges)
    pure_s = time.perf_counter() - began
    # The SQL's waiters on cycles are exactly the reference's nodes, and every cycle reported
    # runs through them.
    agree = {r["waiter"] for r in rows} == reference and all(
        set(d.cycle) <= reference for d in found
    )
    return BenchResult(
        "deadlocks",
        len(edges),
        round(sql_s + analyse_s, 3),
        "s",
        {"pure detector over the whole graph (s)": round(pure_s, 3)},
        round(pure_s / (sql_s + analyse_s), 3) if sql_s + analyse_s else 0.0,
        0.0,
        agree,
        {
            "sql_s": round(sql_s, 3),
            "analysis_s": round(analyse_s, 3),
            "deadlocks": len(found),
            "waits_on_cycles": len(rows),
            "agree": agree,
        },
        _machine(),
    )


BENCHMARKS: dict[str, Callable[[Path, int], Any]] = {
    "publish": bench_publish,
    "ingest": bench_ingest,
    "replay": bench_replay,
    "tasks": bench_tasks,
    "latency": bench_latency,
    "deadlocks": bench_deadlocks,
}


def run_benchmark(name: str, events: int) -> BenchResult:
    """Run benchmark ``name`` with ``events`` events in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix=f"swarmlog-bench-{name}-") as tmp:
        result: BenchResult = asyncio.run(BENCHMARKS[name](Path(tmp), events))
        return result
