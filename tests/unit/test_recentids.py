"""The projector's memory of the ids it committed lately: exact from its horizon on, and the
store asks DuckDB only about events dated before it (a repeated id is caught either way)."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmlog.projections.recentids import MS, RecentIds, millisecond_range
from swarmlog.projections.state import State
from swarmlog.projections.store import ProjectionStore
from swarmlog.projections.tables import table

S = 1_000_000_000


def test_it_answers_from_its_horizon_on() -> None:
    recent = RecentIds(horizon=10 * S)
    recent.add([("a", 10 * S), ("old", 9 * S)])
    assert recent.covers(10 * S)
    assert not recent.covers(10 * S - 1)
    assert recent.seen("a", 10 * S)
    assert not recent.seen("b", 10 * S)
    assert len(recent) == 1  # "old" is before the horizon: storage answers for it


def test_past_its_cap_it_forgets_whole_seconds_and_moves_its_horizon() -> None:
    recent = RecentIds(horizon=0, cap=3)
    recent.add([("a", 1 * S), ("b", 1 * S + 5), ("c", 2 * S), ("d", 3 * S)])
    # Second 1 went whole: nothing dated in it may be answered from memory any more.
    assert recent.horizon == 2 * S
    assert not recent.covers(1 * S + 5)
    assert recent.seen("c", 2 * S)
    assert recent.seen("d", 3 * S)
    assert len(recent) == 2


def _event(seq: int, event_id: str, occurred_at: int) -> dict[str, object]:
    row: dict[str, object] = {c: None for c in table("events").column_names}
    row.update(seq=seq, id=event_id, occurred_at=occurred_at, subject="s", type="t")
    return row


def _seen(store: ProjectionStore, event_id: str, occurred_at: int) -> bool:
    state = State()
    store.preload(state, [], [(event_id, occurred_at)])
    return event_id in state.seen_ids


def test_a_repeated_id_is_found_in_memory_and_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "p.duckdb"
    t = 1_796_000_000 * S
    with ProjectionStore(path) as store:
        assert not _seen(store, "A", t)
        state = State()
        state.put("events", _event(1, "A", t))
        store.flush(state, 1)
        assert _seen(store, "A", t)  # from the ids it committed, no query
        assert not _seen(store, "B", t)
    with ProjectionStore(path) as store:  # a new projector: its horizon is after "A"
        assert _seen(store, "A", t)  # so storage is asked
        # An id names its millisecond: "A" again a nanosecond later is still a repeat.
        assert _seen(store, "A", t + 1)
        assert not _seen(store, "B", t + 1)


def test_a_horizon_inside_a_millisecond_is_refused() -> None:
    with pytest.raises(ValueError, match="millisecond"):
        RecentIds(horizon=10 * S + 1)


def test_it_starts_at_the_millisecond_after_the_latest_stored_event() -> None:
    assert RecentIds.after(None).horizon == 0
    assert RecentIds.after(10 * S + 5).horizon == 10 * S + MS  # not 10 s + 6 ns: same ms
    assert RecentIds.after(10 * S + MS).horizon == 10 * S + 2 * MS
    assert millisecond_range([10 * S + 5, 10 * S + MS + 7]) == (10 * S, 10 * S + 2 * MS - 1)
