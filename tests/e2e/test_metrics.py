"""`swarmlog metrics serve` as a real process beside a running system, scraped over HTTP and
read with prometheus_client's own parser: the figures move with the work (tasks succeeded,
their durations, queue depth of a role nobody serves yet) and the projector's lag comes back
to 0."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from clikit import ROOT, Cli, start_agents
from prometheus_client.parser import text_string_to_metric_families

from swarmlog.schemas.payloads import TaskAssignment
from waiting import wait_until

pytestmark = pytest.mark.e2e

DEADLINE = 30.0  # seconds any wait for the system may take

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def metrics_url(cli: Cli, tmp_path: Path) -> Iterator[str]:
    """``swarmlog metrics serve --port 0`` for ``cli``'s data dir; the URL it prints."""
    out = tmp_path / "metrics.log"
    with out.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "swarmlog", "metrics", "serve", "--port", "0"],
            env=cli.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        found: list[str] = []

        def listening() -> bool:
            found[:] = re.findall(r"metrics at (\S+)", out.read_text())
            return bool(found) or process.poll() is not None

        wait_until(listening, DEADLINE)
        assert found, out.read_text()
        yield found[0]
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0, out.read_text()  # a clean stop on SIGTERM


def scrape(url: str) -> Samples:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: Samples, sample: str, /, **labels: str) -> float:
    return samples.get((sample, frozenset(labels.items())), 0.0)


def test_the_metrics_move_with_the_work(cli: Cli, metrics_url: str) -> None:
    start_agents(cli, "examples.echo:Echo")
    provisioned = cli("agent", "provision", "tests.e2e.picky:Picky")  # queues, nobody reading
    assert provisioned.returncode == 0, provisioned.stderr
    before = scrape(metrics_url)
    assert value(before, "swarmlog_source_up", source="projections") == 1
    assert value(before, "swarmlog_source_up", source="queues") == 1
    ok = {"role": "echo", "status": "succeeded"}

    done = cli("submit", "pipeline", "--stage", "text", "--stage", "text", "--data", "hi", "--wait")
    assert done.returncode == 0, done.stderr
    cli.submit([TaskAssignment(task_id=f"q{i}", role="picky", priority="high") for i in (1, 2)])

    seen: list[Samples] = []

    def moved() -> bool:
        seen[:] = [scrape(metrics_url)]
        now = seen[0]
        return (
            value(now, "swarmlog_tasks", **ok) == value(before, "swarmlog_tasks", **ok) + 2
            and value(now, "swarmlog_queue_depth", role="picky", priority="high") == 2
            and value(now, "swarmlog_projector_lag_events") == 0
        )

    wait_until(moved, DEADLINE)
    after = seen[0]
    count = "swarmlog_task_duration_seconds_count"
    assert value(after, count, **ok) == value(before, count, **ok) + 2
    assert value(after, "swarmlog_task_duration_seconds_bucket", le="+Inf", **ok) == value(
        after, count, **ok
    )
    assert value(after, "swarmlog_task_duration_seconds_sum", **ok) > 0
    result = {"type": "result"}
    assert (
        value(after, "swarmlog_events_total", **result)
        >= value(before, "swarmlog_events_total", **result) + 2
    )
    assert value(after, "swarmlog_workflows", pattern="pipeline", status="succeeded") == 1
    assert value(after, "swarmlog_queue_depth", role="echo", priority="normal") == 0
    assert value(after, "swarmlog_projector_position") == value(
        after, "swarmlog_stream_last_sequence"
    )
    assert value(after, "swarmlog_stream_last_sequence") > value(
        before, "swarmlog_stream_last_sequence"
    )
