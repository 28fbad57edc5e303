"""The scrape app over a stand-in for the operator's client: it answers at its root and at
``/metrics`` (alone, or mounted as the console mounts it), in the format the scraper asks for;
a part it cannot read is reported down, not an error; scrapes that come together share one
reading. (On a real system: tests/e2e/test_metrics.py.)"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import httpx
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.routing import Mount

from swarmlog.bus.ports import QueueState
from swarmlog.bus.queues import priority_queue
from swarmlog.config import Settings
from swarmlog.control.client import Client
from swarmlog.control.records import AgentRow, QueryRows
from swarmlog.errors import ProjectorDown
from swarmlog.observability.metrics import _Readings, metrics_app
from waiting import until


class StandIn:
    """What the app uses of a Client: the settings, ``query``, ``agents``, ``queues``,
    ``last_seq``."""

    def __init__(self, *, projector_up: bool = True) -> None:
        self.settings = Settings(data_dir=Path("unused"), namespace="default")
        self.projector_up = projector_up
        self.queries = 0
        self.release: asyncio.Event | None = None

    async def query(self, sql: str) -> QueryRows:
        self.queries += 1
        if self.release is not None:
            await self.release.wait()
        if not self.projector_up:
            raise ProjectorDown("no projector answers")
        columns = ["figure", "a", "b", "c", "v"]
        rows = [["position", "", "", "", 5.0], ["tasks", "echo", "succeeded", "", 2.0]]
        return QueryRows(
            columns=columns,
            rows=[dict(zip(columns, r, strict=True)) for r in rows],
            truncated=False,
        )

    async def agents(self) -> list[AgentRow]:
        if not self.projector_up:
            raise ProjectorDown("no projector answers")
        live = AgentRow("echo-1", "echo", [], None, None, "registered", 2, 1_700_000_000 * 10**9)
        gone = AgentRow("echo-2", "echo", [], None, None, "lost", 5, None)
        return [live, gone]

    async def queues(self) -> list[QueueState]:
        spec = priority_queue("default", "echo", "high", ack_wait=1.0, max_deliver=2)
        return [QueueState(spec.name, spec.filter_subject, 3, 1, 0)]

    async def last_seq(self) -> int:
        return 7


def app_over(stand_in: StandIn) -> Starlette:
    return metrics_app(cast(Client, stand_in))


async def get(app: Any, path: str, **headers: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        return await http.get(path, headers=headers)


def samples(text: str) -> dict[str, float]:
    return {
        s.name + str(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_it_answers_at_its_root_and_at_metrics_alone_or_mounted() -> None:
    alone = app_over(StandIn())
    mounted = Starlette(routes=[Mount("/metrics", alone)])  # as the console mounts it
    for app, path in ((alone, "/metrics"), (alone, "/"), (mounted, "/metrics/")):
        response = await get(app, path)
        assert response.status_code == 200, path
        assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        seen = samples(response.text)
        assert seen["swarmlog_projector_lag_events[]"] == 2
        assert seen["swarmlog_queue_depth[('priority', 'high'), ('role', 'echo')]"] == 3
        assert seen["swarmlog_tasks[('role', 'echo'), ('status', 'succeeded')]"] == 2
        # liveness from the agents' presence: the registered one's load, not the lost one's
        assert seen["swarmlog_agent_in_flight_tasks[('role', 'echo')]"] == 2


async def test_openmetrics_when_the_scraper_asks_for_it() -> None:
    response = await get(
        app_over(StandIn()), "/metrics", accept="application/openmetrics-text; version=1.0.0"
    )
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


async def test_a_projector_that_does_not_answer_is_a_source_down_not_an_error() -> None:
    response = await get(app_over(StandIn(projector_up=False)), "/metrics")
    assert response.status_code == 200
    seen = samples(response.text)
    assert seen["swarmlog_source_up[('source', 'projections')]"] == 0
    assert seen["swarmlog_source_up[('source', 'queues')]"] == 1
    assert seen["swarmlog_queue_depth[('priority', 'high'), ('role', 'echo')]"] == 3
    assert not any(name.startswith("swarmlog_tasks") for name in seen)


async def test_scrapes_that_come_together_share_one_reading() -> None:
    stand_in = StandIn()
    stand_in.release = asyncio.Event()
    readings = _Readings(cast(Client, stand_in))
    # Both start before the reading they start can end: asyncio runs the second scrape's first
    # step before the reading the first one made, so by the time the query is asked both wait.
    first = asyncio.ensure_future(readings.reading())
    second = asyncio.ensure_future(readings.reading())
    await until(lambda: stand_in.queries == 1)
    stand_in.release.set()
    one, two = await asyncio.wait_for(asyncio.gather(first, second), 10)
    assert one is two  # the same reading
    assert stand_in.queries == 1
    await readings.reading()  # one asked after that reads again
    assert stand_in.queries == 2
