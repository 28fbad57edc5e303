"""Projection state as plain rows in memory (pure).

The fold reads and writes rows here. The DuckDB store preloads the rows a batch touches, lets the
fold run on them, then writes back what changed; the reference projection used in tests is this
same state, started empty and never flushed.
"""

from __future__ import annotations

from typing import Any

from swarmlog.projections.tables import TABLES, table

__all__ = ["Key", "Row", "State"]

Row = dict[str, Any]
Key = tuple[Any, ...]


class State:
    """Rows by table and primary key, with a record of what changed since the last flush."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[Key, Row]] = {t.name: {} for t in TABLES}
        self.dirty: dict[str, set[Key]] = {t.name: set() for t in TABLES}
        self.deleted: dict[str, set[Key]] = {t.name: set() for t in TABLES}
        self.seen_ids: set[str] = set()
        """Event ids known to be applied (the store preloads the ids a batch mentions)."""

    def get(self, name: str, *key: Any) -> Row | None:
        return self.rows[name].get(key)

    def put(self, name: str, row: Row) -> Row:
        """Insert or replace a whole row; missing columns are NULL."""
        t = table(name)
        # The fold passes whole rows; only partial ones need filling in.
        full = row if len(row) == len(t.column_names) else {c: row.get(c) for c in t.column_names}
        key = tuple(full[k] for k in t.key)
        self.rows[name][key] = full
        self.dirty[name].add(key)
        self.deleted[name].discard(key)
        return full

    def upsert(self, name: str, key: Key, **changes: Any) -> Row:
        """Update the row at ``key`` (created with its key columns set if missing)."""
        row = self.rows[name].get(key)
        if row is None:
            t = table(name)
            row = {column: None for column in t.column_names}
            row.update(zip(t.key, key, strict=True))
            self.rows[name][key] = row
        row.update(changes)
        self.dirty[name].add(key)
        self.deleted[name].discard(key)
        return row

    def delete(self, name: str, *key: Any) -> None:
        """Remove the row at ``key`` (from storage too, at the next flush)."""
        self.rows[name].pop(key, None)
        self.deleted[name].add(key)
        self.dirty[name].discard(key)

    def load(self, name: str, row: Row) -> None:
        """Add a row read from storage (not a change)."""
        t = table(name)
        self.rows[name][tuple(row[k] for k in t.key)] = row

    def clear_changes(self) -> None:
        for name in self.dirty:
            self.dirty[name].clear()
            self.deleted[name].clear()

    def evict(self) -> None:
        """Forget every row (after a flush), keeping memory flat over a long run."""
        for rows in self.rows.values():
            rows.clear()
        self.seen_ids.clear()
        self.clear_changes()
