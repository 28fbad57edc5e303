"""What the Prometheus metrics say, from one reading of a running system (pure).

A :class:`Reading` holds what a scrape gathered (:mod:`swarmlog.observability.metrics` does the
I/O): the rows of :data:`FIGURES_SQL`, one SELECT of aggregates over the projections; where each
durable consumer of the stream stands (:class:`~swarmlog.bus.ports.QueueState`); the stream's
last sequence. :func:`families` turns it into Prometheus metric families, every name prefixed
``swarmlog_`` and listed in :data:`METRICS`.

The metrics are counts, sums and states: no payload, input, output, error text, detail of a
quarantined message, key or secret reaches a label or a value. Label values are names the
projection keeps (roles, statuses, event types, quarantine reason codes, circuits, models, the
ids of running workflows with a budget) and their number is bounded: by the roles, the closed
sets of statuses and types, and :data:`BUDGET_WORKFLOWS`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from swarmlog.bus.ports import QueueState
from swarmlog.bus.queues import router_queue, work_queue_of
from swarmlog.bus.subjects import offer_filter

__all__ = [
    "BUCKETS",
    "BUDGET_WORKFLOWS",
    "ENDED",
    "FIGURES_SQL",
    "METRICS",
    "LiveAgent",
    "Reading",
    "families",
]

BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
)
"""Upper bounds (seconds) of the task duration histogram's buckets, then ``+Inf``: from a no-op
task's milliseconds to an hour of model calls."""

ENDED = ("succeeded", "failed", "cancelled")
"""The statuses a task ends in: the duration histogram counts tasks in these."""

BUDGET_WORKFLOWS = 50
"""Workflows with a series of their own in the budget metrics, at most: the running ones with a
budget, those that have used the most of it first."""

_NS = 1e9  # the projection's times are nanoseconds since the epoch
_go_float = cast(Callable[[float], str], floatToGoString)  # how Prometheus spells a bound


def _bucket_case() -> str:
    """SQL: the index of the first bucket a task's ``seconds`` falls in (``len(BUCKETS)``:
    ``+Inf``)."""
    whens = " ".join(f"WHEN seconds <= {b!r} THEN {i}" for i, b in enumerate(BUCKETS))
    return f"CASE {whens} ELSE {len(BUCKETS)} END"


_ENDED_SQL = ", ".join(f"'{s}'" for s in ENDED)

FIGURES_SQL = f"""
WITH ended AS (
    SELECT coalesce(role, '') AS role, status,
           greatest(updated_at - created_at, 0) / {_NS!r} AS seconds
    FROM tasks
    WHERE status IN ({_ENDED_SQL}) AND created_at IS NOT NULL AND updated_at IS NOT NULL
),
budgeted AS (
    SELECT w.workflow_id, coalesce(b.used_tokens, 0) AS used, w.budget_tokens AS budget
    FROM workflows w
    LEFT JOIN budgets b ON b.scope = 'workflow' AND b.scope_id = w.workflow_id
    WHERE w.status = 'running' AND w.budget_tokens IS NOT NULL
    ORDER BY coalesce(b.used_tokens, 0) / greatest(w.budget_tokens, 1) DESC, w.workflow_id
    LIMIT {BUDGET_WORKFLOWS}
)
SELECT 'position' AS figure, '' AS a, '' AS b, '' AS c,
       coalesce(max(seq), 0)::DOUBLE AS v FROM projector_position
UNION ALL SELECT 'tasks', coalesce(role, ''), coalesce(status, ''), '', count(*)
    FROM tasks GROUP BY ALL
UNION ALL SELECT 'task_bucket', role, status, ({_bucket_case()})::VARCHAR, count(*)
    FROM ended GROUP BY ALL
UNION ALL SELECT 'task_seconds', role, status, '', sum(seconds) FROM ended GROUP BY ALL
UNION ALL SELECT 'events', type, '', '', count(*) FROM events GROUP BY ALL
UNION ALL SELECT 'quarantined', reason, '', '', count(*) FROM quarantine GROUP BY ALL
UNION ALL SELECT 'escalations', status, '', '', count(*) FROM escalations GROUP BY ALL
UNION ALL SELECT 'circuit', circuit, state, '', 1 FROM breakers
UNION ALL SELECT 'workflows', coalesce(pattern, ''), coalesce(status, ''), '', count(*)
    FROM workflows GROUP BY ALL
UNION ALL SELECT 'budget_used', workflow_id, '', '', used FROM budgeted
UNION ALL SELECT 'budget_limit', workflow_id, '', '', budget FROM budgeted
UNION ALL SELECT 'budgets_exceeded', scope, 'soft', '', count(*) FILTER (WHERE soft_exceeded)
    FROM budgets GROUP BY ALL
UNION ALL SELECT 'budgets_exceeded', scope, 'hard', '', count(*) FILTER (WHERE hard_exceeded)
    FROM budgets GROUP BY ALL
UNION ALL SELECT 'tokens_used', coalesce(a.role, ''), '', '', sum(b.used_tokens)
    FROM budgets b LEFT JOIN agents a ON a.agent_id = b.scope_id
    WHERE b.scope = 'agent' GROUP BY ALL
UNION ALL SELECT 'agents', coalesce(role, ''), coalesce(status, ''), '', count(*)
    FROM agents GROUP BY ALL
UNION ALL SELECT 'model_calls', coalesce(model, ''), coalesce(status, ''), '', count(*)
    FROM model_calls GROUP BY ALL
UNION ALL SELECT 'model_tokens', coalesce(model, ''), 'input', '',
       coalesce(sum(prompt_tokens), 0) FROM model_calls GROUP BY ALL
UNION ALL SELECT 'model_tokens', coalesce(model, ''), 'output', '',
       coalesce(sum(completion_tokens), 0) FROM model_calls GROUP BY ALL
UNION ALL SELECT 'tool_calls', coalesce(status, ''), '', '', count(*) FROM tool_calls GROUP BY ALL
"""
"""One read-only SELECT over the projections, a few aggregates: rows ``(figure, a, b, c, v)``,
``figure`` naming what the row counts, ``a``-``c`` its labels, ``v`` the number."""


@dataclass(frozen=True)
class LiveAgent:
    """A registered agent as a scrape sees it, from its presence (the views' own reading)."""

    role: str
    in_flight: int
    """Tasks in hand (0 without a presence)."""
    last_heard_at: int | None
    """When it was last heard from, in Unix nanoseconds (``None``: never)."""


@dataclass(frozen=True)
class Reading:
    """What one scrape gathered; a part that could not be read is ``None`` (its metrics are
    left out and ``swarmlog_source_up`` says so)."""

    namespace: str
    stream: str
    rows: Sequence[Sequence[Any]] | None
    """The rows of :data:`FIGURES_SQL`, in its column order."""
    queues: Sequence[QueueState] | None
    """Every durable consumer of the stream (:meth:`~swarmlog.bus.ports.EventLog.queues`)."""
    stream_last_seq: int | None
    """The stream's last sequence, read after the rows (so the projector cannot seem ahead)."""
    live: Sequence[LiveAgent] | None = None
    """The registered agents with what their verified presence says (load and when last heard
    from: the log no longer carries it)."""
    seconds: float = 0.0
    """How long gathering it took."""


METRICS: dict[str, str] = {
    "swarmlog_info": "The namespace and stream these metrics are of.",
    "swarmlog_source_up": "1 when the scrape could read the source (projections, queues, "
    "stream), else 0 and its metrics are missing.",
    "swarmlog_scrape_duration_seconds": "Seconds this scrape took to gather its figures.",
    "swarmlog_stream_last_sequence": "The stream's last sequence: messages stored so far.",
    "swarmlog_projector_position": "The last stream sequence the projection has folded.",
    "swarmlog_projector_lag_events": "Messages on the stream the projection has not folded yet.",
    "swarmlog_queue_depth": "Assignments waiting in a role's priority queue, never delivered.",
    "swarmlog_queue_unacked": "Assignments of a role's priority queue delivered and not yet "
    "acknowledged (in hand, or waiting to be redelivered).",
    "swarmlog_queue_redelivered": "Of the unacknowledged assignments, those delivered more "
    "than once.",
    "swarmlog_router_queue_depth": "Task offers no router has taken yet.",
    "swarmlog_router_queue_unacked": "Task offers a router holds and has not settled.",
    "swarmlog_tasks": "Tasks by role and status, now.",
    "swarmlog_task_duration_seconds": "Seconds from a task's first event (its offer or "
    "assignment) to its last, for every task that ended.",
    "swarmlog_task_retries_total": "Retries scheduled (task_retry_scheduled events).",
    "swarmlog_events_total": "Events applied to the projection, by type.",
    "swarmlog_quarantined_total": "Messages quarantined (not applied), by reason code.",
    "swarmlog_escalations": "Escalations to a human, by status.",
    "swarmlog_circuit_open": "1 while a circuit (a role's, or a dependency's) is open: no "
    "work goes through it.",
    "swarmlog_circuit_half_open": "1 while a circuit is half open: a trial goes through.",
    "swarmlog_workflows": "Workflows by pattern and status, now.",
    "swarmlog_budget_used_tokens": "Tokens a running workflow with a budget has used (at "
    f"most {BUDGET_WORKFLOWS} workflows, those nearest their budget).",
    "swarmlog_budget_limit_tokens": "The token budget of a running workflow (the same "
    "workflows as swarmlog_budget_used_tokens).",
    "swarmlog_budgets_exceeded": "Agents and workflows past their soft or hard token limit.",
    "swarmlog_tokens_used_total": "Tokens the agents of a role have spent.",
    "swarmlog_agents": "Agents by role and status (issued, registered, killed).",
    "swarmlog_agent_in_flight_tasks": "Tasks the registered agents of a role hold, as their "
    "presence says.",
    "swarmlog_agent_last_heartbeat_timestamp_seconds": "When a registered agent of the role "
    "was last heard from: its presence, or its registration (Unix time).",
    "swarmlog_model_calls": "Journaled model calls by model and status.",
    "swarmlog_model_tokens_total": "Tokens of journaled model calls by model and kind "
    "(input: the prompt, output: the completion).",
    "swarmlog_tool_calls": "Journaled tool calls by status.",
}
"""Every metric :func:`families` can produce, with its help text."""


def _gauge(name: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, METRICS[name], labels=list(labels))


def _counter(name: str, labels: Sequence[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(name, METRICS[name], labels=list(labels))


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _number(value: Any) -> float:
    return 0.0 if value is None else float(value)


def _circuit(circuit: str) -> tuple[str, str]:
    """``role:x`` / ``dep:y`` (:func:`swarmlog.agents.policy.routing.circuits`) as (kind, name)."""
    kind, sep, name = circuit.partition(":")
    if not sep:
        return "", circuit
    return {"role": "role", "dep": "dependency"}.get(kind, kind), name


def families(reading: Reading) -> list[Metric]:
    """The metric families ``reading`` shows, in a stable order."""
    info = InfoMetricFamily("swarmlog", METRICS["swarmlog_info"])
    info.add_metric([], {"namespace": reading.namespace, "stream": reading.stream})
    up = _gauge("swarmlog_source_up", ["source"])
    for source, part in (
        ("projections", reading.rows),
        ("queues", reading.queues),
        ("stream", reading.stream_last_seq),
    ):
        up.add_metric([source], 0.0 if part is None else 1.0)
    scrape = _gauge("swarmlog_scrape_duration_seconds")
    scrape.add_metric([], reading.seconds)
    out: list[Metric] = [info, up, scrape]
    position = None
    if reading.rows is not None:
        grouped: dict[str, list[tuple[str, str, str, float]]] = defaultdict(list)
        for figure, a, b, c, v in reading.rows:
            grouped[str(figure)].append((_text(a), _text(b), _text(c), _number(v)))
        position = int(next((v for *_, v in grouped["position"]), 0))
        if reading.live is not None:
            grouped.update(_liveness(reading.live))
        out += _projection_families(grouped)
    if reading.stream_last_seq is not None:
        last = _gauge("swarmlog_stream_last_sequence")
        last.add_metric([], reading.stream_last_seq)
        out.append(last)
    if position is not None:
        at = _gauge("swarmlog_projector_position")
        at.add_metric([], position)
        out.append(at)
        if reading.stream_last_seq is not None:
            lag = _gauge("swarmlog_projector_lag_events")
            lag.add_metric([], max(0, reading.stream_last_seq - position))
            out.append(lag)
    if reading.queues is not None:
        out += _queue_families(reading.namespace, reading.queues)
    return out


def _liveness(live: Iterable[LiveAgent]) -> dict[str, list[tuple[str, str, str, float]]]:
    """The ``in_flight`` and ``heartbeat`` figures per role, as rows of the aggregate."""
    held: dict[str, float] = defaultdict(float)
    heard: dict[str, float] = {}
    for agent in live:
        held[agent.role] += agent.in_flight
        if agent.last_heard_at is not None:
            heard[agent.role] = max(heard.get(agent.role, 0.0), float(agent.last_heard_at))
    return {
        "in_flight": [(role, "", "", v) for role, v in sorted(held.items())],
        "heartbeat": [(role, "", "", v) for role, v in sorted(heard.items())],
    }


def _queue_families(namespace: str, queues: Iterable[QueueState]) -> list[Metric]:
    depth = _gauge("swarmlog_queue_depth", ["role", "priority"])
    unacked = _gauge("swarmlog_queue_unacked", ["role", "priority"])
    redelivered = _gauge("swarmlog_queue_redelivered", ["role", "priority"])
    offers = _gauge("swarmlog_router_queue_depth")
    held = _gauge("swarmlog_router_queue_unacked")
    router = router_queue(namespace, give_up_after=1).name
    for queue in queues:
        key = work_queue_of(namespace, queue.name, queue.filter_subject)
        if key is not None:
            depth.add_metric(list(key), queue.waiting)
            unacked.add_metric(list(key), queue.unacked)
            redelivered.add_metric(list(key), queue.redelivered)
        elif queue.name == router and queue.filter_subject == offer_filter(namespace):
            offers.add_metric([], queue.waiting)
            held.add_metric([], queue.unacked)
    # Inboxes (one per agent) and swarm queues stay out: the label sets would grow with agents.
    return [depth, unacked, redelivered, offers, held]


_Kind = Literal["gauge", "counter"]

_PLAIN: tuple[tuple[str, _Kind, str, tuple[str, ...], float], ...] = (
    # (figure of FIGURES_SQL, kind, metric, its labels from the row's first keys, divided by)
    ("quarantined", "counter", "swarmlog_quarantined_total", ("reason",), 1.0),
    ("escalations", "gauge", "swarmlog_escalations", ("status",), 1.0),
    ("workflows", "gauge", "swarmlog_workflows", ("pattern", "status"), 1.0),
    ("budget_used", "gauge", "swarmlog_budget_used_tokens", ("workflow",), 1.0),
    ("budget_limit", "gauge", "swarmlog_budget_limit_tokens", ("workflow",), 1.0),
    ("budgets_exceeded", "gauge", "swarmlog_budgets_exceeded", ("scope", "limit"), 1.0),
    ("tokens_used", "counter", "swarmlog_tokens_used_total", ("role",), 1.0),
    ("agents", "gauge", "swarmlog_agents", ("role", "status"), 1.0),
    ("in_flight", "gauge", "swarmlog_agent_in_flight_tasks", ("role",), 1.0),
    (
        "heartbeat",
        "gauge",
        "swarmlog_agent_last_heartbeat_timestamp_seconds",
        ("role",),
        _NS,
    ),
    ("model_calls", "gauge", "swarmlog_model_calls", ("model", "status"), 1.0),
    ("model_tokens", "counter", "swarmlog_model_tokens_total", ("model", "kind"), 1.0),
    ("tool_calls", "gauge", "swarmlog_tool_calls", ("status",), 1.0),
)
"""The families that are one row of an aggregate each: labelled by the row's keys."""


def _plain(
    kind: _Kind,
    name: str,
    labels: Sequence[str],
    rows: list[tuple[str, str, str, float]],
    by: float,
) -> Metric:
    family = _gauge(name, labels) if kind == "gauge" else _counter(name, labels)
    for first, second, _, value in rows:
        family.add_metric([first, second][: len(labels)], value / by)
    return family


def _projection_families(grouped: dict[str, list[tuple[str, str, str, float]]]) -> list[Metric]:
    def rows(figure: str) -> list[tuple[str, str, str, float]]:
        return grouped.get(figure, [])

    tasks = _plain("gauge", "swarmlog_tasks", ("role", "status"), rows("tasks"), 1.0)
    retries = _counter("swarmlog_task_retries_total")
    retries.add_metric([], sum(v for t, _, _, v in rows("events") if t == "task_retry_scheduled"))
    events = _plain("counter", "swarmlog_events_total", ("type",), rows("events"), 1.0)

    opened = _gauge("swarmlog_circuit_open", ["kind", "name"])
    half = _gauge("swarmlog_circuit_half_open", ["kind", "name"])
    for circuit, state, _, _ in sorted(rows("circuit")):
        labels = list(_circuit(circuit))
        opened.add_metric(labels, 1.0 if state == "open" else 0.0)
        half.add_metric(labels, 1.0 if state == "half_open" else 0.0)

    plain = {
        figure: _plain(kind, name, labels, rows(figure), by)
        for figure, kind, name, labels, by in _PLAIN
    }
    return [
        tasks,
        _durations(rows("task_bucket"), rows("task_seconds")),
        retries,
        events,
        plain["quarantined"],
        plain["escalations"],
        opened,
        half,
        *(plain[figure] for figure, *_ in _PLAIN[2:]),
    ]


def _durations(
    buckets: Sequence[tuple[str, str, str, float]], sums: Sequence[tuple[str, str, str, float]]
) -> HistogramMetricFamily:
    """The duration histogram from per-bucket counts (``c``: the bucket's index), made
    cumulative here."""
    name = "swarmlog_task_duration_seconds"
    histogram = HistogramMetricFamily(name, METRICS[name], labels=["role", "status"])
    counts: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0] * (len(BUCKETS) + 1))
    for role, status, index, v in buckets:
        counts[role, status][int(index)] += v
    total = {(role, status): v for role, status, _, v in sums}
    bounds = [*(_go_float(b) for b in BUCKETS), "+Inf"]
    for key in sorted(counts):
        running, cumulative = 0.0, []
        for bound, n in zip(bounds, counts[key], strict=True):
            running += n
            cumulative.append((bound, running))
        histogram.add_metric(list(key), cumulative, sum_value=total.get(key, 0.0))
    return histogram
