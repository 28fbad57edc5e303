"""The projector's position is the last sequence the projection's rows hold (a view, not a table
written with every batch): what a restart resumes from, so it must never run ahead of the rows
or fall behind them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb
import pytest

from swarmlog.errors import StoreError
from swarmlog.projections.state import State
from swarmlog.projections.store import ProjectionStore
from swarmlog.projections.tables import FOLD_REVISION, LAYOUT, TABLES, table

NAMESPACE, OPERATOR = "default", "ab" * 32


def _row(name: str, **values: object) -> dict[str, object]:
    row: dict[str, object] = {c: None for c in table(name).column_names}
    row.update(values)
    return row


def _event(seq: int) -> dict[str, object]:
    return _row("events", seq=seq, id=f"e{seq}", occurred_at=seq, subject="s", type="t")


def test_the_position_is_the_last_sequence_applied_or_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "p.duckdb"
    with ProjectionStore(path) as store:
        assert store.position() == 0
        state = State()
        state.put("events", _event(1))
        state.put("events", _event(2))
        store.flush(state, 2)
        assert store.position() == 2
        state.put("quarantine", _row("quarantine", seq=3, subject="s", reason="bad_signature"))
        store.flush(state, 3)  # a batch of one message that was not applied
        assert store.position() == 3
    with ProjectionStore(path) as store:  # what a restarted projector resumes after
        assert store.position() == 3
        assert store.rows("SELECT seq FROM projector_position") == [(3,)]


def test_a_batch_without_a_row_for_its_last_sequence_is_refused_and_nothing_written(
    tmp_path: Path,
) -> None:
    with ProjectionStore(tmp_path / "p.duckdb") as store:
        state = State()
        state.put("events", _event(1))
        state.put("tasks", _row("tasks", task_id="t1", status="offered"))
        with pytest.raises(StoreError, match="no row for its last sequence 2"):
            store.flush(state, 2)  # the position would be 1 while the caller folded 2
        assert store.position() == 0
        assert store.rows("SELECT count(*) FROM tasks") == [(0,)]


def test_a_batch_that_fails_leaves_the_position_where_it_was(tmp_path: Path) -> None:
    with ProjectionStore(tmp_path / "p.duckdb") as store:
        state = State()
        state.put("events", _event(1))
        store.flush(state, 1)
        state.put("events", _event(2))
        state.put("tasks", _row("tasks", task_id="t1", attempt="not a number"))
        with pytest.raises(duckdb.Error):  # the task's insert fails: the batch rolls back
            store.flush(state, 2)
        assert store.position() == 1


def test_a_file_with_a_position_table_of_its_own_is_refused_as_another_layout(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.duckdb"
    with ProjectionStore(path) as store:
        store.bind(namespace=NAMESPACE, operator_key=OPERATOR)
    # Make it a file of the previous layout: a position table, and the layout's name as that
    # version computed it (the same tables and fold, no bookkeeping in the name).
    before = hashlib.sha256(
        "\n".join([f"fold revision {FOLD_REVISION}", *(t.ddl() for t in TABLES)]).encode()
    ).hexdigest()[:16]
    con = duckdb.connect(str(path))
    con.execute("DROP VIEW projector_position")
    con.execute("CREATE TABLE projector_position (stream VARCHAR PRIMARY KEY, seq BIGINT)")
    con.execute("UPDATE projection_meta SET value = ? WHERE key = 'layout'", [before])
    con.close()
    with pytest.raises(StoreError, match="another version"), ProjectionStore(path):
        pass


def test_a_file_with_a_chain_heads_table_is_refused_before_the_view_is_made(
    tmp_path: Path,
) -> None:
    """The layout before chain heads were derived: a table of its own, and no hashes in
    `events` or `quarantine`, which the view reads (making it would fail with DuckDB's own
    error, not ours)."""
    path = tmp_path / "old.duckdb"
    with ProjectionStore(path) as store:
        store.bind(namespace=NAMESPACE, operator_key=OPERATOR)
    con = duckdb.connect(str(path))
    con.execute("DROP VIEW chain_heads")
    con.execute(
        "CREATE TABLE chain_heads (sender VARCHAR PRIMARY KEY, sender_seq BIGINT, hash VARCHAR,"
        " seq BIGINT)"
    )
    for name, columns in (("events", ("hash",)), ("quarantine", ("sender_seq", "hash"))):
        for column in columns:
            con.execute(f"ALTER TABLE {name} DROP COLUMN {column}")
    con.execute("UPDATE projection_meta SET value = 'previous' WHERE key = 'layout'")
    con.close()
    with pytest.raises(StoreError, match=r"table layout previous, now .*move it away"):
        ProjectionStore(path)


def test_a_file_with_tables_and_no_layout_is_refused(tmp_path: Path) -> None:
    """Tables that do not say whose they are (their `projection_meta` empty) are no file of
    this layout's: refused, not stamped with it."""
    path = tmp_path / "unnamed.duckdb"
    with ProjectionStore(path):
        pass
    con = duckdb.connect(str(path))
    con.execute("DELETE FROM projection_meta")
    con.close()
    with pytest.raises(StoreError, match="table layout unnamed"):
        ProjectionStore(path)
    with pytest.raises(StoreError, match="table layout unnamed"):
        ProjectionStore(path, read_only=True)


def test_a_new_file_says_its_layout_before_it_is_bound(tmp_path: Path) -> None:
    path = tmp_path / "new.duckdb"
    with ProjectionStore(path):
        pass  # opened and closed, never bound
    with ProjectionStore(path, read_only=True) as store:
        assert store.rows("SELECT value FROM projection_meta WHERE key = 'layout'") == [(LAYOUT,)]
    with ProjectionStore(path) as store:
        store.bind(namespace=NAMESPACE, operator_key=OPERATOR)


def test_a_reader_is_told_a_file_is_of_another_layout(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    with ProjectionStore(path) as store:
        store.bind(namespace=NAMESPACE, operator_key=OPERATOR)
    con = duckdb.connect(str(path))
    con.execute("UPDATE projection_meta SET value = 'previous' WHERE key = 'layout'")
    con.close()
    with pytest.raises(StoreError, match="table layout previous"):
        ProjectionStore(path, read_only=True)
