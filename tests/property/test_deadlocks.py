"""Deadlock detection: the pure detector, a brute-force reference and the SQL the projection runs
agree on generated wait-for graphs; every deadlock found is a real cycle with a real victim."""

from __future__ import annotations

from itertools import pairwise

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st

from swarmlog.agents.policy.deadlocks import ON_CYCLES_SQL, Wait, find_deadlocks, on_cycles

NODES = [f"n{i}" for i in range(12)]

edges = st.lists(st.tuples(st.sampled_from(NODES), st.sampled_from(NODES)), max_size=30)


def reaches_itself(graph: list[tuple[str, str]], node: str) -> bool:
    seen: set[str] = set()
    frontier = [b for a, b in graph if a == node]
    while frontier:
        nxt = frontier.pop()
        if nxt == node:
            return True
        if nxt not in seen:
            seen.add(nxt)
            frontier += [b for a, b in graph if a == nxt]
    return False


@given(edges)
def test_the_detector_finds_exactly_the_nodes_that_reach_themselves(
    graph: list[tuple[str, str]],
) -> None:
    expected = {n for n in NODES if reaches_itself(graph, n)}
    assert on_cycles(graph) == expected


@settings(max_examples=60, deadline=None)
@given(edges)
def test_sql_and_pure_detection_agree(graph: list[tuple[str, str]]) -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE waits (waiter TEXT, waits_on TEXT)")
    if graph:
        con.executemany("INSERT INTO waits VALUES (?, ?)", graph)
    rows = con.execute(ON_CYCLES_SQL.format(edges="waits")).fetchall()
    con.close()
    assert {r[0] for r in rows} == on_cycles(graph)


@given(edges, st.lists(st.integers(0, 100), min_size=30, max_size=30))
def test_each_deadlock_is_a_real_cycle_broken_at_its_youngest_wait(
    graph: list[tuple[str, str]], times: list[int]
) -> None:
    waits = [Wait(f"w{i}", a, b, times[i]) for i, (a, b) in enumerate(graph)]
    found = find_deadlocks(waits)
    cyclic = on_cycles(graph)
    assert {n for d in found for n in d.cycle} <= cyclic
    # Every node on a cycle is in exactly one deadlock's component: one report per deadlock.
    assert len({d.cycle[0] for d in found}) == len(found)
    for d in found:
        assert d.cycle[0] == d.cycle[-1]
        for w, (a, b) in zip(d.waits, pairwise(d.cycle), strict=True):
            assert (w.waiter, w.waits_on) == (a, b)
        assert d.victim in d.waits
        assert d.victim.since == max(w.since for w in d.waits)
    assert find_deadlocks(reversed(waits)) == found  # the order waits come in does not matter


def test_two_agents_asking_each_other_is_one_deadlock() -> None:
    waits = [
        Wait("q1", "alice-1", "bob-1", since=10, task_id="t1"),
        Wait("q2", "bob-1", "alice-1", since=20, task_id="t2"),
        Wait("q3", "carol-1", "alice-1", since=30),  # waits on the deadlock, not in it
    ]
    (deadlock,) = find_deadlocks(waits)
    assert deadlock.cycle == ("alice-1", "bob-1", "alice-1")
    assert deadlock.victim.ref == "q2"
    assert deadlock.key == "q1,q2"
