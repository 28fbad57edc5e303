"""The physical limits ``bench limits`` derives from stage costs, and ``bench compare``'s table:
pure arithmetic, checked on costs chosen by hand."""

from __future__ import annotations

import pytest

from swarmlog.harness.bench.compare import ratio_table
from swarmlog.harness.bench.limits import StageCosts, physical_limits
from swarmlog.harness.bench.swarm import per_task_cpu

US = 1e-6


def costs(**changes: float) -> StageCosts:
    base = {
        "seal": 30 * US,
        "sign": 20 * US,
        "seal_batched": 12 * US,
        "publish_client": 30 * US,
        "server_store": 20 * US,
        "server_deliver": 5 * US,
        "consume_client": 10 * US,
        "decode": 10 * US,
        "verify": 55 * US,
        "verify_batched": 5 * US,
        "fold": 15 * US,
        "write": 30 * US,
        "commit_one": 2_000 * US,
        "fold_one": 300 * US,
        "round_trip": 200 * US,
    }
    return StageCosts(**(base | changes), cores=2, events=1000)


def test_each_limit_is_the_smaller_of_every_core_busy_and_the_critical_path() -> None:
    limits = physical_limits(costs())
    # Runs of events are signed in batches: out is 12 + 30 + 20 = 62 us, in 5 + 10 + 10 + 5 =
    # 30 us. publish: 62 us of CPU per event over 2 cores; the publisher's part is 12 + 30 us.
    assert limits["publish"].all_cores == pytest.approx(2 / 62e-6)
    assert limits["publish"].critical_path == pytest.approx(1 / 42e-6)
    assert limits["publish"].value == pytest.approx(1 / 42e-6)
    # replay: 30 in + 45 apply = 75 us over 2 cores; the projector's serial 10+10+45 = 65 us.
    assert limits["replay"].all_cores == pytest.approx(2 / 75e-6)
    assert limits["replay"].value == pytest.approx(1 / 65e-6)
    # ingest: both, all 137 us of it over 2 cores.
    assert limits["ingest"].value == pytest.approx(2 / 137e-6)
    # tasks: 3 x 62 out + 5 x 30 in + 3 x 45 apply = 471 us per task.
    assert limits["tasks"].value == pytest.approx(2 / 471e-6)


def test_the_latency_floor_is_the_offers_commit_or_the_way_to_the_result_then_a_fold() -> None:
    floor = physical_limits(costs())["latency"]
    assert floor.unit.startswith("ms")
    # One task at a time: each event signed alone (read: 5 + 10 + 10 + 55 = 80 us). The offer
    # committed alone (round trip, read, commit) outlasts the way to the result (3 round
    # trips, 2 reads, 3 seals); then the rest's read and fold (the wait answers while it
    # commits), and the wait's trip.
    first = max(3 * 200 + 2 * 80 + 3 * 30, 200 + 80 + 2_000)
    assert floor.value == pytest.approx((first + 80 + 300 + 200) * US * 1000)
    # More cores do not make one task faster.
    assert physical_limits(costs(commit_one=0.0))["latency"].value < floor.value


def test_batched_signing_raises_the_throughput_limits_and_not_the_latencys() -> None:
    batched = physical_limits(costs())
    alone = physical_limits(costs(seal_batched=30 * US, verify_batched=55 * US))
    for name in ("publish", "ingest", "replay", "tasks"):
        assert batched[name].all_cores > alone[name].all_cores, name
    assert batched["latency"].value == alone["latency"].value


def test_a_dearer_stage_lowers_the_limits_it_is_part_of_and_no_other() -> None:
    before, after = physical_limits(costs()), physical_limits(costs(fold=100 * US))
    assert after["publish"].value == before["publish"].value
    for name in ("ingest", "replay", "tasks"):
        assert after[name].value < before[name].value


def test_the_compare_table_is_swarmlog_over_the_peer() -> None:
    table = ratio_table(1200.0, 14000.0, {"tasks_per_s": 400.0}, {"saved_events_per_s": 7000.0})
    assert [(r["swarmlog"]["benchmark"], r["peer"]["name"], r["ratio"]) for r in table] == [
        ("tasks", "langgraph", 3.0),
        ("publish", "eventsourcing", 2.0),
    ]


def test_a_tasks_cpu_is_told_by_kind_of_process_beside_the_limits_model() -> None:
    before = {"projector": 1.0, "router": 2.0, "workers": 0.5, "server": 3.0, "bench": 0.25}
    after = {"projector": 1.6, "router": 2.3, "workers": 0.9, "server": 3.2, "bench": 0.35}
    per_task = per_task_cpu(before, after, 1000, cores=2, limit=2500.0)
    assert per_task == {
        "projector": 600.0,
        "router": 300.0,
        "workers": 400.0,
        "server": 200.0,
        "bench": 100.0,
        "total": 1600.0,
        "limit_model": 800.0,  # two cores at 2,500 tasks/s: 800 µs a task
    }
    assert per_task_cpu(before, after, 1000, cores=2, limit=0.0)["limit_model"] == 0.0
