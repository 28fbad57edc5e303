"""An offer's task row is presumed new rather than looked up (the lookup was the dearest statement
of a lone offer's commit), and a wrong guess never reaches the file (the projector's side:
``test_chain_rules``, an offer repeating a task id)."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import duckdb
import pytest

from swarmlog.errors import RowExists
from swarmlog.projections import store as store_module
from swarmlog.projections.state import State
from swarmlog.projections.store import ProjectionStore
from swarmlog.projections.tables import table


def _task(task_id: str) -> dict[str, object]:
    row: dict[str, object] = {c: None for c in table("tasks").column_names}
    row.update(task_id=task_id, status="offered")
    return row


def _event(seq: int) -> dict[str, object]:
    row: dict[str, object] = {c: None for c in table("events").column_names}
    row.update(seq=seq, id=f"e{seq}", occurred_at=seq, subject="s", type="t")
    return row


def _store_t1(store: ProjectionStore) -> None:
    """Commit task ``t1`` at seq 1, by a projector that then forgets it."""
    state = State()
    state.put("events", _event(1))
    state.put("tasks", _task("t1"))
    store.flush(state, 1)


def test_a_presumed_row_that_is_stored_fails_the_whole_batch(tmp_path: Path) -> None:
    with ProjectionStore(tmp_path / "p.duckdb") as store:
        _store_t1(store)
        fresh = State()  # a projector that holds nothing in memory
        presumed = store.preload(fresh, [("tasks", ("t1",))], [], presume=[("tasks", ("t1",))])
        assert presumed == [("tasks", ("t1",))]
        assert fresh.get("tasks", "t1") is None  # not looked up: that is the point
        fresh.put("events", _event(2))
        fresh.put("tasks", _task("t1") | {"status": "claimed"})
        with pytest.raises(RowExists):
            store.flush(fresh, 2, presumed)
        assert store.rows("SELECT status FROM tasks") == [("offered",)]
        assert store.position() == 1


def test_a_presumed_row_the_batch_does_not_create_is_looked_up_before_it_commits(
    tmp_path: Path,
) -> None:
    # The fold read the row as absent but wrote nothing to it (its event refused, say), so no
    # insert checks the guess: the store asks storage before it writes anything.
    with ProjectionStore(tmp_path / "p.duckdb") as store:
        _store_t1(store)
        fresh = State()
        presumed = store.preload(fresh, [], [], presume=[("tasks", ("t1",))])
        fresh.put("events", _event(2))
        with pytest.raises(RowExists, match="not written is stored"):
            store.flush(fresh, 2, presumed)
        assert store.position() == 1
        fresh = State()  # a guess that was right: the batch commits
        presumed = store.preload(fresh, [], [], presume=[("tasks", ("t9",))])
        fresh.put("events", _event(2))
        store.flush(fresh, 2, presumed)
        assert store.position() == 2


def test_on_the_bulk_path_a_wrong_guess_is_a_row_exists_and_the_store_goes_on(
    tmp_path: Path,
) -> None:
    with (
        mock.patch.object(store_module, "_SMALL", 1),  # Arrow tables from two rows on
        ProjectionStore(tmp_path / "p.duckdb") as store,
    ):
        _store_t1(store)
        fresh = State()
        keys = [("tasks", ("t1",)), ("tasks", ("t2",))]
        presumed = store.preload(fresh, [], [], presume=keys)
        fresh.put("events", _event(2))
        fresh.put("tasks", _task("t1"))
        fresh.put("tasks", _task("t2"))
        with pytest.raises(RowExists):  # not the aborted transaction's own complaint
            store.flush(fresh, 2, presumed)
        fresh.evict()
        store.preload(fresh, [("tasks", ("t2",)), ("tasks", ("t3",))], [])
        fresh.put("events", _event(2))
        fresh.put("tasks", _task("t2"))
        fresh.put("tasks", _task("t3"))
        store.flush(fresh, 2)
        assert store.rows("SELECT task_id FROM tasks ORDER BY 1") == [("t1",), ("t2",), ("t3",)]


def test_a_violation_that_is_not_a_wrong_guess_is_not_folded_away(tmp_path: Path) -> None:
    with ProjectionStore(tmp_path / "p.duckdb") as store:
        _store_t1(store)
        fresh = State()
        presumed = store.preload(fresh, [], [], presume=[("tasks", ("t2",))])
        fresh.unstored["tasks"].add(("t1",))  # a wrong record of what storage holds: a fault
        fresh.put("events", _event(2))
        fresh.put("tasks", _task("t1"))
        fresh.put("tasks", _task("t2"))
        with pytest.raises(duckdb.ConstraintException):
            store.flush(fresh, 2, presumed)
        assert store.position() == 1


def test_a_row_in_memory_or_known_absent_is_not_presumed(tmp_path: Path) -> None:
    with ProjectionStore(tmp_path / "p.duckdb") as store:
        state = State()
        state.put("tasks", _task("held"))
        state.unstored["tasks"].add(("known",))
        keys = [("tasks", ("held",)), ("tasks", ("known",))]
        assert store.preload(state, keys, [], presume=keys) == []
