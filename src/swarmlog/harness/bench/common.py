"""What every benchmark shares: the result it prints, its own embedded server, the workload."""

from __future__ import annotations

import asyncio
import os
import platform
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swarmlog.agents.publisher import Publisher
from swarmlog.bus.jetstream import JetStreamLog
from swarmlog.bus.permissions import Login
from swarmlog.bus.server import EmbeddedServer
from swarmlog.errors import ServerError
from swarmlog.projections.client import ProjectionClient
from swarmlog.schemas.payloads import Payload, TaskAssignment
from swarmlog.schemas.signing import Identity

__all__ = ["NAMESPACE", "BenchResult", "System", "machine", "payloads", "system", "workload"]

NAMESPACE = "bench"


@dataclass
class BenchResult:
    """One benchmark's figure, its ceilings, its physical limit and the ratios to them."""

    benchmark: str
    events: int
    figure: float
    unit: str
    ceilings: dict[str, float]
    ratio: float
    """The ratio the design's target is about (to a ceiling, or to the absolute target)."""
    target: float
    met: bool
    details: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    limit: float | None = None
    """The physical limit of this figure on this machine, in its unit, from the stage costs
    measured in the same run (``bench limits``): a rate no design of these stages can beat
    with every core busy, or for a latency the floor of its critical path."""
    limit_ratio: float | None = None
    """figure / limit for a rate, limit / figure for a latency: 1.0 is the physical limit."""
    ceiling_ratios: dict[str, float] = field(default_factory=dict)
    """figure / each ceiling."""


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def payloads(n: int, prefix: str = "t") -> list[Payload]:
    """``n`` realistic small tasks: ~420 bytes each, signed, on the wire."""
    return [
        TaskAssignment(task_id=f"{prefix}{i}", role="worker", input={"text": "summarise this " * 8})
        for i in range(n)
    ]


@dataclass
class System:
    """A benchmark's own server and its log, open as the operator."""

    server_pid: int
    log: JetStreamLog
    operator: Identity
    login: Login | None = None
    """How the operator logs in (``None``: a server without authorization)."""


@asynccontextmanager
async def system(root: Path) -> AsyncIterator[System]:
    # SWARMLOG_SYNC measures a sync policy (`always`, or a period): see docs/benchmarks.md.
    server = EmbeddedServer(root / "nats", sync=os.environ.get("SWARMLOG_SYNC"))
    url = server.start()
    try:
        log = await JetStreamLog.open(url, NAMESPACE, provision=True)
        try:
            yield System(server.pid, log, Identity.from_seed("operator", os.urandom(32)))
        finally:
            await log.close()
    finally:
        server.stop()


async def workload(
    log: JetStreamLog, operator: Identity, n: int, namespace: str = NAMESPACE
) -> tuple[Publisher, list[Payload], bytes]:
    """A publisher ready to go, ``n`` payloads, and one signed event as the size sample."""
    publisher = Publisher(log, operator, namespace)
    work = payloads(n)
    await publisher.recover()
    return publisher, work, publisher.seal(work[0]).data


async def position_beyond(log: JetStreamLog, daemon: subprocess.Popen[bytes], seq: int) -> int:
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
