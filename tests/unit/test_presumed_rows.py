"""An offer's task row is presumed new rather than looked up (the lookup was the dearest statement
of a lone offer's commit), and a wrong guess never reaches the file (the projector's side:
``test_chain_rules``, an offer repeating a task id)."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmlog.errors import RowExists
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


def test_a_presumed_row_that_is_stored_fails_the_whole_batch(tmp_path: Path) -> None:
    with ProjectionStore(tmp_path / "p.duckdb") as store:
        state = State()
        state.put("events", _event(1))
        state.put("tasks", _task("t1"))
        store.flush(state, 1)
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


def test_a_presumed_row_the_batch_does_not_create_is_not_trusted(tmp_path: Path) -> None:
    # The fold read the row as absent but wrote nothing to it, so no insert would check the
    # guess: the batch is refused before anything is written.
    with ProjectionStore(tmp_path / "p.duckdb") as store:
        state = State()
        presumed = store.preload(state, [], [], presume=[("tasks", ("t9",))])
        state.put("events", _event(1))
        with pytest.raises(RowExists, match="not created"):
            store.flush(state, 1, presumed)
        assert store.position() == 0


def test_a_row_in_memory_or_known_absent_is_not_presumed(tmp_path: Path) -> None:
    with ProjectionStore(tmp_path / "p.duckdb") as store:
        state = State()
        state.put("tasks", _task("held"))
        state.unstored["tasks"].add(("known",))
        keys = [("tasks", ("held",)), ("tasks", ("known",))]
        assert store.preload(state, keys, [], presume=keys) == []
