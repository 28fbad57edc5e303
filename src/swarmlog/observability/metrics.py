"""Prometheus metrics of a running system, computed when scraped.

Nothing is counted in a process: each scrape reads the system through the operator's
:class:`~swarmlog.control.client.Client` (:func:`gather`): one SELECT of aggregates over the
projections (:data:`~swarmlog.observability.figures.FIGURES_SQL`), the durable consumers of
the stream (one listing), then the stream's last sequence; the pure
:func:`~swarmlog.observability.figures.families` turns that into metric families. So every
exporter, and a restarted one, says the same, and a counter is as monotonic as what it counts
in the log.

:func:`metrics_app` is the ASGI app (the console mounts it at ``/metrics``); :func:`serve` runs
it alone (``swarmlog metrics serve``, for Kubernetes). Concurrent scrapes share one reading.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from swarmlog.bus.subjects import stream_name
from swarmlog.config import Settings
from swarmlog.control.client import Client
from swarmlog.control.http import listen
from swarmlog.errors import SwarmlogError
from swarmlog.observability.figures import FIGURES_SQL, LiveAgent, Reading, families

__all__ = ["DEFAULT_PORT", "gather", "metrics_app", "serve"]

log = logging.getLogger(__name__)

DEFAULT_PORT = 9464
"""``swarmlog metrics serve``'s port: the one Prometheus exporters of OpenTelemetry use."""

READ_TIMEOUT = 4.0
"""Seconds a scrape waits for each part of its reading (the projections and the queues at
once, then the stream): within Prometheus's default scrape timeout of 10 s, even when the
server is away."""

T = TypeVar("T")


async def gather(client: Client, *, clock: Callable[[], float] = time.perf_counter) -> Reading:
    """One reading of the system; a part that cannot be read now (or within
    :data:`READ_TIMEOUT`) is ``None`` in it, logged, so a scrape still says what it can (the
    queues while the projector is down, say)."""
    started = clock()

    async def rows() -> list[list[object]]:
        result = await client.query(FIGURES_SQL)
        if result.truncated:  # cannot happen with the bounds figures.py keeps; say so if it does
            log.warning("metrics: the projection's figures were cut at %d rows", len(result.rows))
        return [[row[c] for c in result.columns] for row in result.rows]

    async def live() -> list[LiveAgent]:
        return [
            LiveAgent(a.role or "", a.in_flight or 0, a.last_heartbeat_at)
            for a in await client.agents()
            if a.status == "registered"
        ]

    figures, consumers, agents = await asyncio.gather(
        _read("the projections", rows()),
        _read("the queues", client.queues()),
        _read("the agents' presence", live()),
    )
    # Read after the projection's position: the lag it gives is never below the true one.
    last = await _read("the stream", client.last_seq())
    namespace = client.settings.namespace
    return Reading(
        namespace=namespace,
        stream=stream_name(namespace),
        rows=figures,
        queues=consumers,
        stream_last_seq=last,
        live=agents,
        seconds=clock() - started,
    )


async def _read(what: str, reading: Awaitable[T]) -> T | None:
    """``reading``'s answer; ``None`` when it fails or takes longer than :data:`READ_TIMEOUT`."""
    try:
        async with asyncio.timeout(READ_TIMEOUT):
            return await reading
    except (SwarmlogError, TimeoutError) as exc:
        log.warning("metrics: could not read %s: %s", what, exc or "timed out")
        return None


class _Families(Collector):
    """Families already made, as the encoders of prometheus_client take them."""

    def __init__(self, made: Sequence[Metric]) -> None:
        self._made = made

    def collect(self) -> Sequence[Metric]:
        return self._made


class _Readings:
    """One reading at a time: a scrape that comes while one is being gathered waits for it."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._running: asyncio.Future[Reading] | None = None

    async def reading(self) -> Reading:
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(gather(self._client))
        # shielded: a scraper that hangs up does not cancel the reading the others wait for
        return await asyncio.shield(self._running)


def metrics_app(client: Client) -> Starlette:
    """An ASGI app answering ``GET /`` and ``GET /metrics`` with the metrics of ``client``'s
    system, in the format the scraper's ``Accept`` asks for (Prometheus text or OpenMetrics).
    It has no lifespan of its own, so it can be mounted in another app."""
    readings = _Readings(client)

    async def scrape(request: Request) -> Response:
        reading = await readings.reading()
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        body = encoder(_Families(families(reading)))
        return Response(body, headers={"Content-Type": content_type})

    return Starlette(routes=[Route("/", scrape), Route("/metrics", scrape)])


async def serve(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    stop: asyncio.Event | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the metrics of ``settings``' system at ``http://host:port/metrics`` (port 0: any
    free one) until ``stop`` is set; ``ready`` gets the URL once it listens."""
    async with await Client.connect(settings) as client:
        listening = await listen(metrics_app(client), host, port, "the metrics server")
        if ready is not None:
            ready(f"http://{f'[{host}]' if ':' in host else host}:{listening.port}/metrics")
        await listening.until(stop)
