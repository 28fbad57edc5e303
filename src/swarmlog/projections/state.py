"""Projection state as plain rows in memory (pure).

The fold reads and writes rows here. The DuckDB store preloads the rows a batch touches, lets the
fold run on them, then writes back what changed; the reference projection used in tests is this
same state, started empty and never flushed.
"""

from __future__ import annotations

from itertools import islice
from typing import Any

from swarmlog.projections.tables import TABLES, table

__all__ = ["Key", "Row", "State"]

Row = dict[str, Any]
Key = tuple[Any, ...]


RESIDENT = frozenset({"chain_heads", "credentials", "agents", "kill_switches"})
"""Small tables every batch reads (who may say what): kept in memory between batches, with the
keys known to be absent, so a trickle of events does not re-read them from storage each time."""
RECENT_ROWS = 256
"""Rows of each other table kept between batches (the last ones the batch loaded or wrote), and
keys known absent: a task's next event, a moment later, finds its row without a query."""
RECENT_ROW_TEXT = 4096
"""Characters of text a row kept between batches may hold at most (a task's input and output
may be far larger: such a row is read again when needed, not kept in memory)."""


class State:
    """Rows by table and primary key, with a record of what changed since the last flush."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[Key, Row]] = {t.name: {} for t in TABLES}
        self.dirty: dict[str, set[Key]] = {t.name: set() for t in TABLES}
        self.deleted: dict[str, set[Key]] = {t.name: set() for t in TABLES}
        self.absent: dict[str, set[Key]] = {name: set() for name in RESIDENT}
        """Keys of resident tables known to have no row (so they are not looked up again)."""
        self.whole: set[str] = set()
        """Tables every stored row of which is in :attr:`rows` (so a key not there has none):
        the derived ones, which storage can only answer by a scan, are loaded whole once."""
        self.seen_ids: set[str] = set()
        """Event ids known to be applied (the store preloads the ids a batch mentions)."""
        self.stored: dict[str, set[Key]] = {t.name: set() for t in TABLES}
        """Keys storage is known to hold a row for (loaded from it, or written to it), so a
        change is written as an update; with :attr:`unstored`, what lets a trickle of events
        be written without DuckDB's costlier insert-or-replace."""
        self.unstored: dict[str, set[Key]] = {t.name: set() for t in TABLES}
        """Keys storage is known to hold no row for (looked up, not found): a plain insert."""
        self.held: dict[str, dict[Key, Row]] = {t.name: {} for t in TABLES}
        """For each row in memory that storage holds, a copy of it as storage holds it: a
        flush writes only the columns that changed (the fold may change a row in place)."""
        self.touched: dict[str, set[Key]] = {t.name: set() for t in TABLES}
        """Keys put, updated or loaded since the last :meth:`evict`: the only rows whose size
        it must look at (the rows it kept before were small, and unchanged since)."""

    def known_absent(self, name: str, key: Key) -> bool:
        """Whether storage is known to hold no row at ``key`` (so it need not be asked)."""
        return (
            key in self.unstored[name]
            or key in self.absent.get(name, ())
            or (name in self.whole and key not in self.rows[name])
        )

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
        self.touched[name].add(key)
        self.deleted[name].discard(key)
        if name in self.absent:
            self.absent[name].discard(key)
        return full

    def upsert(self, name: str, key: Key, **changes: Any) -> Row:
        """Update the row at ``key`` (created with its key columns set if missing)."""
        row = self.rows[name].get(key)
        if row is None:
            t = table(name)
            row = {column: None for column in t.column_names}
            row.update(zip(t.key, key, strict=True))
            self.rows[name][key] = row
            if name in self.absent:
                self.absent[name].discard(key)
        row.update(changes)
        self.dirty[name].add(key)
        self.touched[name].add(key)
        self.deleted[name].discard(key)
        return row

    def delete(self, name: str, *key: Any) -> None:
        """Remove the row at ``key`` (from storage too, at the next flush)."""
        self.rows[name].pop(key, None)
        self.deleted[name].add(key)
        self.dirty[name].discard(key)
        if name in self.absent:
            self.absent[name].add(key)

    def load(self, name: str, row: Row) -> None:
        """Add a row read from storage (not a change)."""
        t = table(name)
        key = tuple(row[k] for k in t.key)
        self.rows[name][key] = row
        self.held[name][key] = dict(row)
        self.touched[name].add(key)
        self.stored[name].add(key)
        self.unstored[name].discard(key)

    def written(self) -> None:
        """What changed is now what storage holds (after a flush commits)."""
        for name, keys in self.dirty.items():
            self.stored[name] |= keys
            self.unstored[name] -= keys
            if keys and not table(name).append_only:  # an event row is never updated
                rows, held = self.rows[name], self.held[name]
                for key in keys:
                    held[key] = dict(rows[key])
        for name, keys in self.deleted.items():
            self.stored[name] -= keys
            self.unstored[name] |= keys
            held = self.held[name]
            for key in keys:
                held.pop(key, None)

    def changes(self, name: str, keys: list[Key]) -> tuple[list[Key], list[str]]:
        """Of ``keys`` (rows of ``name`` that storage holds), those that differ from what
        storage holds, and the columns that differ in any of them, in table order."""
        t = table(name)
        rows, held = self.rows[name], self.held[name]
        changed: set[str] = set()
        differ = []
        for key in keys:
            row, was = rows[key], held[key]
            columns = [c for c in t.column_names if row[c] != was[c]]
            if columns:
                differ.append(key)
                changed.update(columns)
        return differ, [c for c in t.column_names if c in changed]

    def clear_changes(self) -> None:
        for name in self.dirty:
            self.dirty[name].clear()
            self.deleted[name].clear()

    def evict(self, *, keep_resident: bool = False) -> None:
        """Forget the rows (after a flush), keeping memory flat over a long run.

        ``keep_resident`` keeps the small :data:`RESIDENT` tables and of every other table the
        last :data:`RECENT_ROWS` rows, none holding more than :data:`RECENT_ROW_TEXT`
        characters, and at most as many keys known absent, which are then exactly what storage
        holds (call it only after a successful flush). Its cost is that of the rows touched
        since the last call, not of the rows kept: a trickle of one event per batch pays for
        one event (it paid some 1.5 ms for looking at every kept row, measured)."""
        for name, rows in self.rows.items():
            touched = self.touched[name]
            if keep_resident and name in RESIDENT:
                touched.clear()
                continue
            held = self.held[name]
            if not keep_resident or table(name).append_only:  # no event is read again
                rows.clear()
                held.clear()
                self.stored[name].clear()
                self.unstored[name].clear()
                touched.clear()
                continue
            drop = [key for key in touched if key in rows and not _small(rows[key])]
            touched.clear()
            for key in drop:
                del rows[key]
            if len(rows) > RECENT_ROWS:  # the oldest first: dicts keep the order rows came in
                oldest = list(islice(rows, len(rows) - RECENT_ROWS))
                for key in oldest:
                    del rows[key]
                drop += oldest
            stored = self.stored[name]
            stored.difference_update(drop)
            for key in drop:
                held.pop(key, None)
            if len(stored) > len(rows):  # keys whose rows are gone some other way
                stored.intersection_update(rows)
            if len(held) > len(rows):
                for key in [k for k in held if k not in rows]:
                    del held[key]
            if len(self.unstored[name]) > RECENT_ROWS:
                self.unstored[name].clear()
        if not keep_resident:
            for keys in self.absent.values():
                keys.clear()
            self.whole.clear()
        self.seen_ids.clear()
        self.clear_changes()


def _small(row: Row) -> bool:
    return sum(len(v) for v in row.values() if isinstance(v, str)) <= RECENT_ROW_TEXT
