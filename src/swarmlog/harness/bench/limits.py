"""``bench limits``: the CPU cost per event of each stage an event passes through, measured in
one run, and from them the physical limit of every benchmark on this machine.

The stages are measured one at a time, each doing only its own work on the same events:
sealing and signing, the publishing client, the server storing, the server delivering to an
ordered consumer, the consuming client, decoding, verifying, folding and the DuckDB write (the
projector's own stage timers). A benchmark's **physical limit** is what those costs allow with
no waste: every core busy (``cores / CPU per unit of work``), and no faster than its critical
path, the work one GIL-bound process must do in series (signing and verifying release the GIL,
so they may run beside it). For the latency, the limit is a floor: the CPU on its critical path
and the loopback round trips, with nothing queued.

The formulas are :func:`physical_limits`, a pure function of the measured costs.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from swarmlog.agents.publisher import CHUNK
from swarmlog.bus.jetstream import JetStreamLog
from swarmlog.bus.permissions import Login
from swarmlog.bus.ports import StoredMessage
from swarmlog.bus.subjects import subject_for
from swarmlog.harness.bench.ceilings import publish_windowed, raw_consume_rate
from swarmlog.harness.bench.common import BenchResult, System, machine, payloads, system
from swarmlog.projections.projector import Projector
from swarmlog.projections.store import ProjectionStore
from swarmlog.projections.verify import check
from swarmlog.schemas.codec import decode_signed
from swarmlog.schemas.signing import (
    EVENT_DOMAIN,
    ChainHead,
    Identity,
    forget_verified_roots,
    prepare,
    seal,
    sign_all,
    signed_validly,
    verify_signature,
)

__all__ = [
    "Limit",
    "StageCosts",
    "bench_limits",
    "costs_in_this_run",
    "limit_fields",
    "measure_costs",
    "physical_limits",
    "process_cpu",
]

LIMITS_NAMESPACE = "benchlimits"
"""The stream the stages are measured on, beside (never in) a benchmark's own."""
WINDOW = 256
TASK_EVENTS = 3
"""Events per no-op task: offered, assignment, result (a task that ends at once says when it
started in its result, not in a ``task_started`` of its own)."""
TASK_DELIVERIES = 5
"""Deliveries per no-op task: the projector reads all three events, the router the offer, a
worker the assignment."""
LATENCY_HOPS = 4
"""Round trips on a task's critical path: the offer, the assignment, the result, the
projection's ``wait``."""


@dataclass(frozen=True)
class StageCosts:
    """CPU seconds per event of each stage, and the wall times of the small fixed steps."""

    seal: float
    """Encode, chain hash, id and Ed25519 sign, an event signed alone (one thread)."""
    sign: float
    """The Ed25519 signature alone (it releases the GIL)."""
    seal_batched: float
    """The same, per event, for events signed in batches as a publisher signs a run of them
    (:func:`~swarmlog.schemas.signing.sign_all`: one signature per batch, inline)."""
    publish_client: float
    """nats-py ``publish_async`` with a dedupe id and its ack, the client's CPU."""
    server_store: float
    """nats-server's CPU per event stored (all its threads)."""
    server_deliver: float
    """nats-server's CPU per event delivered to an ordered consumer."""
    consume_client: float
    """nats-py's ordered consumer, the client's CPU per event."""
    decode: float
    """Decoding and the stateless checks, without the signature."""
    verify: float
    """One Ed25519 verify (it releases the GIL): an event signed alone."""
    verify_batched: float
    """The signature check per event of events signed in batches: each member's path hashed,
    each batch's root verified once."""
    fold: float
    """The projector's fold (admit and apply), per event in large batches."""
    write: float
    """The projector's DuckDB preload and write, per event in large batches."""
    commit_one: float
    """Wall seconds to check, fold and commit a batch of one event."""
    fold_one: float
    """Wall seconds to check and fold a batch of one event, until its commit begins (when the
    projector's ``wait`` may answer: a read asked after waits for the commit)."""
    round_trip: float
    """Wall seconds of one publish and its ack on the loopback (median)."""
    cores: int
    events: int


@dataclass(frozen=True)
class Limit:
    """A benchmark's physical limit: the smaller of its two bounds."""

    all_cores: float
    """Every core busy with this work and nothing else."""
    critical_path: float
    """The GIL-bound serial part of the busiest process (a rate), or the floor (a latency)."""
    unit: str

    @property
    def value(self) -> float:
        if self.unit.startswith("ms"):
            return self.critical_path  # a latency's floor: more cores do not lower it
        return min(self.all_cores, self.critical_path)


def physical_limits(c: StageCosts) -> dict[str, Limit]:
    """Each benchmark's physical limit from the stage costs (pure).

    Events published in runs are signed in batches (``publish_many``, a router's assignments,
    a worker's results): the throughputs take the batched costs, the best case of full
    batches, so the limit stays an upper bound. The latency's task is one event at a time,
    each signed alone."""
    event_out = c.seal_batched + c.publish_client + c.server_store  # signed and stored
    event_in = c.server_deliver + c.consume_client + c.decode + c.verify_batched  # checked
    apply = c.fold + c.write
    publisher = c.seal_batched + c.publish_client  # batches are signed inline
    projector = c.consume_client + c.decode + apply  # verifying runs on the pool
    cores = c.cores
    task = TASK_EVENTS * event_out + TASK_DELIVERIES * event_in + TASK_EVENTS * apply
    # The projector commits what it has as soon as it has it: the offer, alone (nothing else
    # is on the log yet), then the rest of the task, which came meanwhile, in one batch.
    alone_in = c.server_deliver + c.consume_client + c.decode + c.verify
    on_log = (LATENCY_HOPS - 1) * c.round_trip + 2 * alone_in + 3 * c.seal  # to the result
    offer_committed = c.round_trip + alone_in + c.commit_one
    # The wait answers once the last batch is folded, while it commits.
    floor = max(on_log, offer_committed) + alone_in + c.fold_one + c.round_trip
    return {
        "publish": Limit(cores / event_out, 1 / publisher, "events/s"),
        "ingest": Limit(
            cores / (event_out + event_in + apply), 1 / max(publisher, projector), "events/s"
        ),
        "replay": Limit(cores / (event_in + apply), 1 / projector, "events/s"),
        "tasks": Limit(cores / task, 1 / (TASK_EVENTS * projector), "tasks/s"),
        "latency": Limit(floor * 1000, floor * 1000, "ms (p50)"),
    }


def process_cpu(pid: int) -> float:
    """CPU seconds process ``pid`` has used (user + system, every thread; its children not)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure_costs(
    url: str, server_pid: int, root: Path, n: int = 20_000, login: Login | None = None
) -> StageCosts:
    """Measure every stage on ``n`` events in a stream of their own on the server at ``url``
    (logged in as ``login``, the operator's, on a server with authorization)."""
    log = await JetStreamLog.open(url, LIMITS_NAMESPACE, provision=True, login=login)
    try:
        return await _measure(log, server_pid, root, n)
    finally:
        await log.close()


async def _measure(log: JetStreamLog, pid: int, root: Path, n: int) -> StageCosts:
    ns = LIMITS_NAMESPACE
    operator = Identity.from_seed("operator", os.urandom(32))
    rng = random.Random(7)
    work = payloads(n)
    head = ChainHead()
    sealed = []
    began = time.thread_time()
    for payload in work:
        one = seal(operator, head, payload, now_ns=time.time_ns(), entropy=rng.randbytes(10))
        head = one.head
        sealed.append(one)
    seal_cost = (time.thread_time() - began) / n
    signed = [decode_signed(s.data) for s in sealed]
    began = time.thread_time()
    for s in signed:
        operator.sign(EVENT_DOMAIN, s.body)
    sign_cost = (time.thread_time() - began) / n
    # The same payloads as a publisher's runs: prepared in order, signed a chunk at a time.
    head = ChainHead()
    began = time.thread_time()
    prepared = []
    for payload in work:
        ready = prepare(operator, head, payload, now_ns=time.time_ns(), entropy=rng.randbytes(10))
        head = ready.head
        prepared.append(ready)
    batched = [s for i in range(0, n, CHUNK) for s in sign_all(prepared[i : i + CHUNK], operator)]
    seal_batched = (time.thread_time() - began) / n

    js = log.client.jetstream()
    # What the stream holds, as every benchmark's publisher writes it: signed in batches.
    items = [(subject_for(ns, s.envelope), s.data, {"Nats-Msg-Id": s.id}) for s in batched]
    cpu, server = time.process_time(), process_cpu(pid)
    await publish_windowed(js, items, WINDOW)
    publish_client = (time.process_time() - cpu) / n
    server_store = (process_cpu(pid) - server) / n

    cpu, server = time.process_time(), process_cpu(pid)
    await raw_consume_rate(log, ns, n)  # the ceiling's own reader: an ordered consumer
    consume_client = (time.process_time() - cpu) / n
    server_deliver = (process_cpu(pid) - server) / n

    stored: list[StoredMessage] = []
    async for batch in log.read(1, until_seq=n, follow=False):
        stored.extend(batch)
    began = time.thread_time()
    for m in stored:
        check(m, ns, verify=False)
    decode = (time.thread_time() - began) / n
    signer = operator.public_key
    began = time.thread_time()
    for s in signed:
        verify_signature(signer, EVENT_DOMAIN, s.body, s.signature)
    verify = (time.thread_time() - began) / n
    members = [decode_signed(s.data) for s in batched]
    forget_verified_roots()
    began = time.thread_time()
    for member in members:
        signed_validly(signer, member)
    verify_batched = (time.thread_time() - began) / n

    store = ProjectionStore(root / "limits.duckdb")
    projector = Projector(log, store, namespace=ns, operator_key=operator.public_key)
    await projector.run(follow=False)
    fold = projector.cpu["fold"] / n
    write = (projector.cpu["preload"] + projector.cpu["write"]) / n
    projector.close()
    store.close()

    singles = ProjectionStore(root / "limits-one.duckdb")
    projector = Projector(log, singles, namespace=ns, operator_key=operator.public_key)
    walls: list[float] = []
    folds: list[float] = []
    for m in stored[:200]:
        began = time.perf_counter()

        def folded(_: int, began: float = began) -> None:
            folds.append(time.perf_counter() - began)

        projector.process([m], on_folded=folded)
        walls.append(time.perf_counter() - began)
    projector.close()
    singles.close()

    trips = []
    for i in range(200):
        subject, data, _ = items[i]
        began = time.perf_counter()
        await js.publish(subject, data, headers={"Nats-Msg-Id": f"rtt-{i}"})
        trips.append(time.perf_counter() - began)
    return StageCosts(
        seal=seal_cost,
        sign=sign_cost,
        seal_batched=seal_batched,
        publish_client=publish_client,
        server_store=server_store,
        server_deliver=server_deliver,
        consume_client=consume_client,
        decode=decode,
        verify=verify,
        verify_batched=verify_batched,
        fold=fold,
        write=write,
        commit_one=statistics.median(walls[20:]),
        fold_one=statistics.median(folds[20:]),
        round_trip=statistics.median(trips[20:]),
        cores=os.cpu_count() or 1,
        events=n,
    )


def costs_us(costs: StageCosts) -> dict[str, float]:
    """The stage costs in microseconds, for printing."""
    return {
        f"{k}_us": round(v * 1e6, 2)
        for k, v in asdict(costs).items()
        if k not in ("cores", "events")
    }


async def costs_in_this_run(bench: System, root: Path, n: int) -> StageCosts:
    """The stage costs a benchmark reports beside its figure: measured on its own server right
    after it (at most 20,000 events)."""
    return await measure_costs(
        bench.log.url, bench.server_pid, root, min(n, 20_000), login=bench.login
    )


def limit_fields(name: str, costs: StageCosts, figure: float) -> dict[str, Any]:
    """The ``limit``, ``limit_ratio`` and limit details of benchmark ``name``'s result."""
    limit = physical_limits(costs)[name]
    value = limit.value
    ratio = value / figure if limit.unit.startswith("ms") else figure / value
    return {
        "limit": round(value, 2),
        "limit_ratio": round(ratio, 3) if figure else 0.0,
        "limit_bounds": {
            "all_cores": round(limit.all_cores, 2),
            "critical_path": round(limit.critical_path, 2),
        },
        "stage_costs": costs_us(costs),
    }


async def bench_limits(root: Path, n: int) -> BenchResult:
    """Every stage's cost and every benchmark's physical limit, from one run."""
    async with system(root) as bench:
        costs = await measure_costs(bench.log.url, bench.server_pid, root, n)
    limits = physical_limits(costs)
    per_event = costs.seal + costs.publish_client + costs.server_store
    return BenchResult(
        "limits",
        n,
        round(1 / per_event, 1),
        "events/s (one event sealed and stored, one core)",
        {},
        1.0,
        0.0,
        True,
        {
            "stage_costs": costs_us(costs),
            "limits": {
                name: {
                    "unit": lim.unit,
                    "limit": round(lim.value, 2),
                    "all_cores": round(lim.all_cores, 2),
                    "critical_path": round(lim.critical_path, 2),
                }
                for name, lim in limits.items()
            },
            "cores": costs.cores,
        },
        machine(),
    )
