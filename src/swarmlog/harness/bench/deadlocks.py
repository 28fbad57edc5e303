"""``bench deadlocks``: the watchdog's deadlock query over a large wait-for graph, against the
pure detector, which must agree."""

from __future__ import annotations

import random
import time
from pathlib import Path

from swarmlog.harness.bench.common import BenchResult, machine
from swarmlog.projections.client import records

__all__ = ["bench_deadlocks", "wait_graph"]


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
        machine(),
    )
