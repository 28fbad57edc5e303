"""What the projection state keeps between batches (:meth:`State.evict`)."""

from __future__ import annotations

from swarmlog.projections.state import RECENT_ROW_TEXT, RECENT_ROWS, State


def _task(state: State, task_id: str, text: str = "") -> None:
    state.put("tasks", {"task_id": task_id, "workflow_id": "w", "input": text})


def test_the_last_rows_are_kept_and_the_oldest_go() -> None:
    state = State()
    for i in range(RECENT_ROWS + 10):
        _task(state, f"t{i}")
    state.written()
    state.clear_changes()
    state.evict(keep_resident=True)
    kept = [key[0] for key in state.rows["tasks"]]
    assert kept == [f"t{i}" for i in range(10, RECENT_ROWS + 10)]
    # What is kept is exactly what storage is known to hold; the rows dropped are not.
    assert state.stored["tasks"] == set(state.rows["tasks"])


def test_a_large_row_is_not_kept_even_when_it_grew_after_an_earlier_batch() -> None:
    state = State()
    _task(state, "small")
    _task(state, "grows")
    state.evict(keep_resident=True)
    assert set(state.rows["tasks"]) == {("small",), ("grows",)}
    # A later batch makes one kept row large: the next evict sees it, though kept before.
    state.upsert("tasks", ("grows",), output="x" * (RECENT_ROW_TEXT + 1))
    state.evict(keep_resident=True)
    assert set(state.rows["tasks"]) == {("small",)}
    assert ("grows",) not in state.stored["tasks"]


def test_a_large_row_loaded_from_storage_is_not_kept() -> None:
    state = State()
    state.load("tasks", {"task_id": "big", "input": "y" * (RECENT_ROW_TEXT + 1)})
    state.load("tasks", {"task_id": "small", "input": "y"})
    state.evict(keep_resident=True)
    assert set(state.rows["tasks"]) == {("small",)}
    assert state.stored["tasks"] == {("small",)}


def test_evicting_everything_forgets_every_row() -> None:
    state = State()
    _task(state, "t")
    state.put("events", {"seq": 1, "id": "e"})
    state.evict(keep_resident=True)
    assert not state.rows["events"]  # an event is never read again
    state.evict()
    assert not state.rows["tasks"]
    assert not state.stored["tasks"]
    assert not any(state.touched.values())
