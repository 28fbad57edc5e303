"""The Prometheus metrics, as a pure function of one reading: what each figure becomes, the
histogram made cumulative, queues read from their filters, parts that could not be read left
out and said to be down; and the SQL that reads the figures, run on a real projection file (it
must pass the query rules the projector applies, and count what it claims to)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from swarmlog.bus.ports import QueueState
from swarmlog.bus.queues import agent_queues, inbox_queue, router_queue, swarm_queue
from swarmlog.bus.subjects import work_filter
from swarmlog.observability.figures import (
    BUCKETS,
    FIGURES_SQL,
    METRICS,
    LiveAgent,
    Reading,
    families,
)
from swarmlog.projections.query import run_query
from swarmlog.projections.store import ProjectionStore

NS = "default"
SECOND = 1_000_000_000  # the projection's times are nanoseconds


class _Fixed(Collector):
    def __init__(self, made: Sequence[Metric]) -> None:
        self.made = made

    def collect(self) -> Sequence[Metric]:
        return self.made


def scraped(reading: Reading) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """What a scraper sees: the families rendered in the text format and parsed back, by
    sample name and labels."""
    text = generate_latest(_Fixed(families(reading))).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(
    seen: dict[tuple[str, frozenset[tuple[str, str]]], float], sample: str, /, **labels: str
) -> float:
    return seen[sample, frozenset(labels.items())]


def reading(
    rows: list[list[Any]] | None = None,
    queues: list[QueueState] | None = None,
    last: int | None = 0,
) -> Reading:
    return Reading(NS, "SWARMLOG_DEFAULT", rows, queues, last, seconds=0.25)


def test_every_metric_is_prefixed_documented_and_a_scraper_reads_it_back() -> None:
    made = families(reading(rows=[["position", "", "", "", 0]], queues=[]))
    names = {m.name for m in made}
    # prometheus_client keeps counters' and info's names without their suffix
    suffixed = {
        n if n in METRICS else f"{n}_total" if f"{n}_total" in METRICS else f"{n}_info"
        for n in names
    }
    assert suffixed == set(METRICS)  # every documented metric is there, and nothing else
    assert all(n.startswith("swarmlog_") for n in METRICS)
    seen = scraped(reading(rows=[], queues=[]))
    assert value(seen, "swarmlog_info", namespace=NS, stream="SWARMLOG_DEFAULT") == 1
    assert value(seen, "swarmlog_scrape_duration_seconds") == 0.25


def test_task_durations_make_a_cumulative_histogram_per_role_and_status() -> None:
    rows = [
        ["position", "", "", "", 7],
        # per-bucket counts: bucket index 0 (<= 5 ms), 7 (<= 1 s), the last (+Inf)
        ["task_bucket", "echo", "succeeded", "0", 1],
        ["task_bucket", "echo", "succeeded", "7", 2],
        ["task_bucket", "echo", "succeeded", str(len(BUCKETS)), 1],
        ["task_seconds", "echo", "succeeded", "", 4000.5],
        ["task_bucket", "echo", "failed", "3", 1],
        ["task_seconds", "echo", "failed", "", 0.04],
    ]
    seen = scraped(reading(rows))
    bucket = "swarmlog_task_duration_seconds_bucket"
    ok = {"role": "echo", "status": "succeeded"}
    assert value(seen, bucket, le="0.005", **ok) == 1
    assert value(seen, bucket, le="0.5", **ok) == 1
    assert value(seen, bucket, le="1.0", **ok) == 3
    assert value(seen, bucket, le="3600.0", **ok) == 3
    assert value(seen, bucket, le="+Inf", **ok) == 4
    assert value(seen, "swarmlog_task_duration_seconds_count", **ok) == 4
    assert value(seen, "swarmlog_task_duration_seconds_sum", **ok) == 4000.5
    failed = {"role": "echo", "status": "failed"}
    assert value(seen, bucket, le="0.025", **failed) == 0
    assert value(seen, bucket, le="0.05", **failed) == 1
    assert value(seen, "swarmlog_task_duration_seconds_count", **failed) == 1


def test_projection_figures_become_their_metrics() -> None:
    rows = [
        ["position", "", "", "", 40],
        ["tasks", "echo", "succeeded", "", 3],
        ["tasks", "", "offered", "", 1],
        ["events", "task_retry_scheduled", "", "", 2],
        ["events", "result", "", "", 3],
        ["quarantined", "bad_signature", "", "", 5],
        ["escalations", "open", "", "", 1],
        ["circuit", "role:echo", "open", "", 1],
        ["circuit", "dep:search", "half_open", "", 1],
        ["circuit", "dep:db", "closed", "", 1],
        ["workflows", "pipeline", "running", "", 2],
        ["budget_used", "wf-1", "", "", 120],
        ["budget_limit", "wf-1", "", "", 1000],
        ["budgets_exceeded", "agent", "hard", "", 1],
        ["tokens_used", "echo", "", "", 300],
        ["agents", "echo", "registered", "", 2],
        ["model_calls", "small", "ok", "", 4],
        ["model_tokens", "small", "input", "", 90],
        ["model_tokens", "small", "output", "", 30],
        ["tool_calls", "refused", "", "", 1],
    ]
    live = [
        LiveAgent("echo", 1, 1_700_000_000 * SECOND),
        LiveAgent("echo", 2, 1_600_000_000 * SECOND),
        LiveAgent("writer", 0, None),  # registered, never heard from since
    ]
    seen = scraped(dataclasses.replace(reading(rows, last=45), live=live))
    assert value(seen, "swarmlog_tasks", role="echo", status="succeeded") == 3
    assert value(seen, "swarmlog_tasks", role="", status="offered") == 1  # not assigned yet
    assert value(seen, "swarmlog_task_retries_total") == 2
    assert value(seen, "swarmlog_events_total", type="result") == 3
    assert value(seen, "swarmlog_quarantined_total", reason="bad_signature") == 5
    assert value(seen, "swarmlog_escalations", status="open") == 1
    assert value(seen, "swarmlog_circuit_open", kind="role", name="echo") == 1
    assert value(seen, "swarmlog_circuit_half_open", kind="role", name="echo") == 0
    assert value(seen, "swarmlog_circuit_open", kind="dependency", name="search") == 0
    assert value(seen, "swarmlog_circuit_half_open", kind="dependency", name="search") == 1
    assert value(seen, "swarmlog_circuit_open", kind="dependency", name="db") == 0
    assert value(seen, "swarmlog_workflows", pattern="pipeline", status="running") == 2
    assert value(seen, "swarmlog_budget_used_tokens", workflow="wf-1") == 120
    assert value(seen, "swarmlog_budget_limit_tokens", workflow="wf-1") == 1000
    assert value(seen, "swarmlog_budgets_exceeded", scope="agent", limit="hard") == 1
    assert value(seen, "swarmlog_tokens_used_total", role="echo") == 300
    assert value(seen, "swarmlog_agents", role="echo", status="registered") == 2
    # from presence, summed and latest per role
    assert value(seen, "swarmlog_agent_in_flight_tasks", role="echo") == 3
    assert value(seen, "swarmlog_agent_last_heartbeat_timestamp_seconds", role="echo") == 1.7e9
    assert value(seen, "swarmlog_agent_in_flight_tasks", role="writer") == 0
    assert (
        "swarmlog_agent_last_heartbeat_timestamp_seconds",
        frozenset({("role", "writer")}),
    ) not in seen
    assert value(seen, "swarmlog_model_calls", model="small", status="ok") == 4
    assert value(seen, "swarmlog_model_tokens_total", model="small", kind="input") == 90
    assert value(seen, "swarmlog_model_tokens_total", model="small", kind="output") == 30
    assert value(seen, "swarmlog_tool_calls", status="refused") == 1
    assert value(seen, "swarmlog_stream_last_sequence") == 45
    assert value(seen, "swarmlog_projector_position") == 40
    assert value(seen, "swarmlog_projector_lag_events") == 5


def test_the_lag_is_never_negative() -> None:
    # the stream is read after the projection; a projector can still not seem ahead of it
    seen = scraped(reading([["position", "", "", "", 12]], last=10))
    assert value(seen, "swarmlog_projector_lag_events") == 0


def test_queues_are_the_roles_priority_queues_and_the_routers_and_nothing_else() -> None:
    def state(name: str, filter_subject: str, *figures: int) -> QueueState:
        return QueueState(name, filter_subject, *figures)

    echo = {
        q.name: q
        for q in agent_queues(NS, "echo", "echo-1", swarm=True, max_attempts=3, ack_wait=30.0)
    }
    queues = [
        state("default-echo-high", echo["default-echo-high"].filter_subject, 4, 2, 1),
        state("default-echo-normal", echo["default-echo-normal"].filter_subject, 0, 1, 0),
        state(
            router_queue(NS, give_up_after=3).name,
            router_queue(NS, give_up_after=3).filter_subject,
            6,
            1,
            0,
        ),
        # never a series per agent, nor for a consumer that only looks like a role's
        state(
            inbox_queue(NS, "echo-1", ack_wait=1.0).name, "swarmlog.default.*.msg.echo-1.>", 9, 9, 9
        ),
        state(swarm_queue(NS, "echo", ack_wait=1.0).name, "swarmlog.default.*.task.*.x", 9, 9, 9),
        state("default-a-b-high", work_filter(NS, "a", "b-high"), 9, 9, 9),
        state("default-x-high", work_filter(NS, "y", "high"), 9, 9, 9),
        state("other-echo-high", work_filter("other", "echo", "high"), 9, 9, 9),
    ]
    seen = scraped(reading(queues=queues))
    high = {"role": "echo", "priority": "high"}
    assert value(seen, "swarmlog_queue_depth", **high) == 4
    assert value(seen, "swarmlog_queue_unacked", **high) == 2
    assert value(seen, "swarmlog_queue_redelivered", **high) == 1
    assert value(seen, "swarmlog_queue_unacked", role="echo", priority="normal") == 1
    assert value(seen, "swarmlog_router_queue_depth") == 6
    assert value(seen, "swarmlog_router_queue_unacked") == 1
    series = {labels for name, labels in seen if name == "swarmlog_queue_depth"}
    assert series == {
        frozenset(high.items()),
        frozenset({"role": "echo", "priority": "normal"}.items()),
    }


def test_a_part_that_could_not_be_read_is_down_and_its_metrics_are_missing() -> None:
    seen = scraped(Reading(NS, "SWARMLOG_DEFAULT", None, None, 30))
    assert value(seen, "swarmlog_source_up", source="projections") == 0
    assert value(seen, "swarmlog_source_up", source="queues") == 0
    assert value(seen, "swarmlog_source_up", source="stream") == 1
    assert value(seen, "swarmlog_stream_last_sequence") == 30
    names = {name for name, _ in seen}
    assert "swarmlog_projector_lag_events" not in names  # no position: no lag to tell
    assert "swarmlog_tasks" not in names
    assert "swarmlog_queue_depth" not in names
    seen = scraped(Reading(NS, "SWARMLOG_DEFAULT", [["position", "", "", "", 3]], [], None))
    assert value(seen, "swarmlog_source_up", source="stream") == 0
    assert value(seen, "swarmlog_projector_position") == 3
    assert "swarmlog_projector_lag_events" not in {name for name, _ in seen}


# -- the SQL, on a real projection file -------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ProjectionStore]:
    with ProjectionStore(tmp_path / "p.duckdb") as store:
        yield store


def insert(store: ProjectionStore, table: str, **row: Any) -> None:
    columns = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    store.cursor().execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", list(row.values()))


def figures(store: ProjectionStore) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    result = run_query(store.cursor(), FIGURES_SQL)  # the projector's own rules and runner
    assert result.columns == ["figure", "a", "b", "c", "v"]
    return scraped(reading(result.rows, last=9))


def test_the_figures_sql_passes_the_query_rules_on_an_empty_projection(
    store: ProjectionStore,
) -> None:
    seen = figures(store)
    assert value(seen, "swarmlog_projector_position") == 0
    assert value(seen, "swarmlog_projector_lag_events") == 9
    assert value(seen, "swarmlog_task_retries_total") == 0


def test_the_figures_sql_counts_what_the_projection_holds(store: ProjectionStore) -> None:
    t0 = 1_700_000_000 * SECOND
    for task_id, status, seconds in [
        ("a", "succeeded", 0.2),
        ("b", "succeeded", 40.0),
        ("c", "failed", 2.0),
        ("d", "running", 1.0),
    ]:
        insert(
            store,
            "tasks",
            task_id=task_id,
            role="echo",
            status=status,
            created_at=t0,
            updated_at=t0 + int(seconds * SECOND),
        )
    insert(store, "tasks", task_id="e", status="offered", created_at=t0, updated_at=t0)
    for seq, type_ in enumerate(["task_retry_scheduled", "task_retry_scheduled", "result"], 1):
        insert(store, "events", seq=seq, type=type_, payload='{"secret": 1}')
    # The last sequence the rows hold is the position: 8.
    insert(store, "quarantine", seq=8, reason="bad_signature", detail="who knows")
    insert(store, "escalations", escalation_id="x1", task_id="c", status="open")
    insert(store, "breakers", circuit="role:echo", state="open", reason="5 errors")
    for wf, status, budget, used in [
        ("wf-1", "running", 1000, 120),
        ("wf-2", "running", None, 5),
        ("wf-3", "succeeded", 50, 50),
    ]:
        insert(
            store,
            "workflows",
            workflow_id=wf,
            pattern="pipeline",
            status=status,
            budget_tokens=budget,
        )
        insert(
            store,
            "budgets",
            scope="workflow",
            scope_id=wf,
            used_tokens=used,
            hard_exceeded=wf == "wf-3",
            soft_exceeded=wf == "wf-3",
        )
    insert(
        store,
        "agents",
        agent_id="echo-1",
        role="echo",
        status="registered",
        in_flight=2,
        last_heartbeat_at=t0,
    )
    insert(store, "agents", agent_id="echo-2", role="echo", status="killed", in_flight=7)
    insert(store, "budgets", scope="agent", scope_id="echo-1", used_tokens=70)
    insert(store, "budgets", scope="agent", scope_id="echo-2", used_tokens=30)
    insert(
        store,
        "model_calls",
        task_id="a",
        call_index=0,
        model="small",
        status="ok",
        prompt_tokens=11,
        completion_tokens=4,
    )
    insert(store, "model_calls", task_id="a", call_index=1, model="small", status="requested")
    insert(store, "tool_calls", task_id="a", call_index=2, tool="t", status="ok")

    seen = figures(store)
    ok = {"role": "echo", "status": "succeeded"}
    assert value(seen, "swarmlog_tasks", **ok) == 2
    assert value(seen, "swarmlog_tasks", role="echo", status="running") == 1
    assert value(seen, "swarmlog_tasks", role="", status="offered") == 1
    bucket = "swarmlog_task_duration_seconds_bucket"
    assert value(seen, bucket, le="0.25", **ok) == 1
    assert value(seen, bucket, le="30.0", **ok) == 1
    assert value(seen, bucket, le="60.0", **ok) == 2
    assert value(seen, "swarmlog_task_duration_seconds_count", **ok) == 2
    assert value(seen, "swarmlog_task_duration_seconds_sum", **ok) == pytest.approx(40.2)
    assert value(seen, "swarmlog_task_duration_seconds_count", role="echo", status="failed") == 1
    names = {(name, labels) for name, labels in seen}
    assert (
        "swarmlog_task_duration_seconds_count",
        frozenset({"role": "echo", "status": "running"}.items()),
    ) not in names  # not ended
    assert value(seen, "swarmlog_task_retries_total") == 2
    assert value(seen, "swarmlog_quarantined_total", reason="bad_signature") == 1
    assert value(seen, "swarmlog_escalations", status="open") == 1
    assert value(seen, "swarmlog_circuit_open", kind="role", name="echo") == 1
    assert value(seen, "swarmlog_workflows", pattern="pipeline", status="running") == 2
    # a series only for a running workflow with a budget
    assert value(seen, "swarmlog_budget_used_tokens", workflow="wf-1") == 120
    assert value(seen, "swarmlog_budget_limit_tokens", workflow="wf-1") == 1000
    assert {
        dict(labels)["workflow"] for name, labels in seen if name == "swarmlog_budget_used_tokens"
    } == {"wf-1"}
    assert value(seen, "swarmlog_budgets_exceeded", scope="workflow", limit="hard") == 1
    assert value(seen, "swarmlog_budgets_exceeded", scope="agent", limit="soft") == 0
    assert value(seen, "swarmlog_tokens_used_total", role="echo") == 100
    assert value(seen, "swarmlog_agents", role="echo", status="killed") == 1
    # liveness is presence's to say (the scrape reads it beside the SQL): none from the rows
    assert not any(name.startswith("swarmlog_agent_in_flight") for name, _ in seen)
    assert value(seen, "swarmlog_model_calls", model="small", status="requested") == 1
    assert value(seen, "swarmlog_model_tokens_total", model="small", kind="input") == 11
    assert value(seen, "swarmlog_model_tokens_total", model="small", kind="output") == 4
    assert value(seen, "swarmlog_tool_calls", status="ok") == 1
    assert value(seen, "swarmlog_projector_position") == 8
    assert value(seen, "swarmlog_projector_lag_events") == 1
    # counts only: nothing of a payload, a reason's detail or an input reaches the metrics
    text = generate_latest(
        _Fixed(families(reading(run_query(store.cursor(), FIGURES_SQL).rows)))
    ).decode()
    for secret in ("secret", "who knows", "5 errors"):
        assert secret not in text


def test_the_docs_name_every_metric() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "observability.md").read_text()
    missing = [name for name in METRICS if f"`{name}`" not in docs]
    assert not missing, f"docs/observability.md does not describe {missing}"
