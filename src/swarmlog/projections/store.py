# Over 400 lines: the one DuckDB adapter (open, lock, load, apply, hash, snapshot copy), kept whole.
"""The DuckDB projection store: the only module that writes the projection file.

A batch is written in one transaction, and the projector's stream position is the last sequence
its rows hold (``projector_position``, a view), so a crash at any point leaves the file at the end
of a whole batch: no event lost, none applied twice.

One writer, and readers that never keep it out. DuckDB lets a file be open by one read-write
process or by any number of read-only ones, so a reader that opens the file while no projector
runs (the fallback of ``ProjectionClient``) would make a projector starting then fail on
the file lock. A **gate** (``<file>.gate``, an ``flock``) gives the writer precedence: the
writer takes it exclusively for as long as it has the file open, then waits (at most
:data:`WRITER_WAIT`) for the readers already in to leave; a reader takes it shared only while it
opens the file, so none gets in once a writer is at the gate (it is told the projector owns the
file, and asks it instead), and a reader's query is bounded in time (:data:`READER_TIMEOUT`). The
kernel drops an ``flock`` when its process dies, so a projector killed with ``kill -9`` leaves
no stale gate behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb

from swarmlog.errors import RowExists, StoreBusy, StoreError
from swarmlog.projections.recentids import RecentIds, millisecond_range
from swarmlog.projections.state import Key, Row, State
from swarmlog.projections.statehash import StateHasher
from swarmlog.projections.tables import LAYOUT, META_DDL, TABLES, Table, table

__all__ = [
    "MEMORY_LIMIT",
    "READER_TIMEOUT",
    "SAFE_CONFIG",
    "SNAPSHOT_READER_MEMORY",
    "TEMP_LIMIT",
    "WRITER_THREADS",
    "WRITER_WAIT",
    "ProjectionStore",
    "state_of_file",
]

log = logging.getLogger(__name__)

READER_TIMEOUT = 10.0
"""Seconds a reader that opened the file itself may run a query (then it is interrupted): how
long it can keep a starting projector waiting."""
WRITER_WAIT = 3 * READER_TIMEOUT
"""Seconds a writer waits for the gate and for readers already in to close the file."""

_SMALL = 64
"""Up to this many rows or keys go as SQL parameters, more as an Arrow table."""
_FEW_UPDATES = 2
"""Up to this many changed rows of a table are updated one statement each (about 0.4 ms each on
a small table); more in one ``UPDATE ... FROM (VALUES ...)``, which costs more to plan but little
per row (measured: three rows 0.96 ms against 1.17 ms one by one, eight 1.2 ms against 3.1)."""

MEMORY_LIMIT = "1GB"
"""DuckDB's memory for one projection file (every connection and query on it together): one
query that would need more spills to the temp directory, then fails, instead of taking the
machine's memory (DuckDB's default is 80% of it)."""
WRITER_THREADS = 1
"""DuckDB threads of the projector's own database (its fold's writes, and the queries it answers):
its work is many small statements, and a second thread makes each cost 10-30 % more CPU
(measured: a five-statement transaction 2.5-2.9 ms of CPU with one, 3.0-3.7 ms with two) while
taking a core from the verifying pool. A process that opens the file to read keeps every core."""
TEMP_LIMIT = "2GB"
"""Disk a projection's spilled intermediates may take in its temp directory (``<file>.tmp``)."""

SAFE_CONFIG: dict[str, Any] = {
    # Queries reach nothing but the projections: no files, no network, no extensions, no
    # Python objects of the process (DuckDB's replacement scans), bounded memory and disk.
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "python_enable_replacements": False,
    "memory_limit": MEMORY_LIMIT,
    "max_temp_directory_size": TEMP_LIMIT,
    # Last: nothing run on this database may change the settings above back.
    "lock_configuration": True,
}

_HASH_FETCH = 10_000
_CHECKPOINT_TRIES = 8
"""Tries at a snapshot's checkpoint (a query reading holds it off) over about 13 s."""


def _arrow() -> Any:
    """pyarrow, imported at the first bulk write or key lookup, not with the store: it costs
    about 0.27 s of CPU to import, and most processes that open a projection (every CLI query,
    a projector that only ever sees a trickle) never hand DuckDB more than ``_SMALL`` rows."""
    import pyarrow

    return pyarrow


def _batch_of(t: Table, rows: list[Row], columns: Sequence[str]) -> Any:
    """``columns`` of ``rows`` of table ``t`` as an Arrow table."""
    pa = _arrow()
    types = dict(t.columns)
    return pa.table(
        {c: pa.array([r[c] for r in rows], type=_arrow_type(pa, types[c])) for c in columns}
    )


def _arrow_type(pa: Any, duck_type: str) -> Any:
    """The Arrow type a column of DuckDB type ``duck_type`` is handed over as."""
    return {"VARCHAR": pa.string, "BIGINT": pa.int64, "BOOLEAN": pa.bool_}[duck_type]()


class ProjectionStore:
    """A DuckDB file holding the projection tables (and so the projector's position)."""

    def __init__(
        self,
        path: Path | str,
        *,
        read_only: bool = False,
        wait: float = WRITER_WAIT,
        memory: str = MEMORY_LIMIT,
    ) -> None:
        """Open the file at ``path``: read-write (the writer, waiting up to ``wait`` seconds
        for readers to leave), or ``read_only`` (a reader: :class:`StoreBusy` at once when a
        writer holds or waits for the file). ``memory``: DuckDB's memory limit for it (a reader
        that only scans may take less; what does not fit spills to the temp directory)."""
        self.path = Path(path)
        self.read_only = read_only
        if read_only and not self.path.exists():
            raise StoreError(
                f"no projection at {self.path}; start the projector with `swarmlog up` first"
            )
        self._gate: int | None = None
        if read_only:
            with _reader_gate(self.path):
                self._con = _connect(self.path, read_only=True, memory=memory)
                try:
                    self._refuse_other_layout(self._meta())
                except BaseException:
                    self._con.close()
                    raise
        else:
            self._gate = _writer_gate(self.path, time.monotonic() + wait)
            try:
                self._con = _connect_waiting(self.path, time.monotonic() + wait)
            except BaseException:
                os.close(self._gate)
                raise
        self._lock = threading.Lock()  # one writer/reader of the main connection at a time
        self._recent: RecentIds | None = None
        if not read_only:
            with self._lock:
                try:
                    self._lay_out()
                except BaseException:
                    self.close()  # the file and its gate: another process may take it now
                    raise

    def close(self) -> None:
        self._con.close()
        if self._gate is not None:
            os.close(self._gate)  # releases the flock: readers may open the file again
            self._gate = None

    def __enter__(self) -> ProjectionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- metadata ---------------------------------------------------------------------------------

    def bind(self, *, namespace: str, operator_key: str) -> None:
        """Tie the file to one namespace and trust root (its layout it names from the start);
        refuse to mix projections."""
        wanted = {"namespace": namespace, "operator_key": operator_key}
        with self._lock:
            existing = self._meta()
            self._refuse_other_layout(existing)
            for key, value in wanted.items():
                if key in existing and existing[key] != value:
                    raise StoreError(
                        f"{self.path} is a projection of {key} {existing[key][:16]}, not"
                        f" {value[:16]}; use another --data-dir or replay into a new file"
                    )
                if key not in existing:
                    self._con.execute("INSERT INTO projection_meta VALUES (?, ?)", [key, value])

    def _lay_out(self) -> None:
        """Make the tables (a new file) or refuse another layout's, before any DDL: another
        layout's tables may not even take this one's views. The tables and the layout's name
        are one transaction, so no file has tables without saying whose they are."""
        meta = self._meta()
        self._refuse_other_layout(meta)
        self._con.execute("BEGIN TRANSACTION")
        try:
            for t in TABLES:
                self._con.execute(t.ddl())
            for ddl in META_DDL:
                self._con.execute(ddl)
            if "layout" not in meta:
                self._con.execute("INSERT INTO projection_meta VALUES ('layout', ?)", [LAYOUT])
            self._con.execute("COMMIT")
        except BaseException:
            self._con.execute("ROLLBACK")
            raise

    def _meta(self) -> dict[str, str]:
        """What the file is bound to: nothing for a new file, which has no tables (tables that
        do not say whose they are count as another layout's)."""
        try:
            meta = dict(self._con.execute("SELECT key, value FROM projection_meta").fetchall())
        except duckdb.CatalogException:
            meta = {}
        if not meta:
            (tables,) = self._con.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database()"
            ).fetchall()[0]
            if tables:
                return {"layout": "unnamed"}
        return meta

    def _refuse_other_layout(self, meta: dict[str, str]) -> None:
        if meta and meta.get("layout") != LAYOUT:
            raise StoreError(
                f"{self.path} was written by another version of swarmlog (table layout"
                f" {meta.get('layout', 'unnamed')}, now {LAYOUT}); it is only a"
                " projection: move it away and start the projector, which refolds the stream"
            )

    def position(self) -> int:
        """The last stream sequence folded into this file (0 for none)."""
        with self._lock:
            try:
                # fetchall: DuckDB refuses register() while a result is left half-read.
                row = self._con.execute("SELECT max(seq) FROM projector_position").fetchall()[0]
            except duckdb.CatalogException:
                return 0
        return int(row[0]) if row and row[0] is not None else 0

    def folded_at(self, seq: int) -> tuple[str, str | None, int] | None:
        """What this file holds of the message at stream sequence ``seq``: its subject, its
        hash (an applied event's, or a quarantined one's that moved its chain on) and when the
        server stored it; ``None`` when it holds no row for it."""
        with self._lock:
            rows = self._con.execute(
                "SELECT subject, hash, stored_at FROM events WHERE seq = ?"
                " UNION ALL SELECT subject, hash, stored_at FROM quarantine WHERE seq = ?",
                [seq, seq],
            ).fetchall()
        return (rows[0][0], rows[0][1], rows[0][2]) if rows else None

    # --- the batch cycle --------------------------------------------------------------------------

    def preload(
        self,
        state: State,
        keys: Iterable[tuple[str, Key]],
        ids: Sequence[tuple[str, int]],
        where: Iterable[tuple[str, str, Any]] = (),
        presume: Iterable[tuple[str, Key]] = (),
    ) -> list[tuple[str, Key]]:
        """Load the rows a batch will read, and which of its event ids are already applied.

        Keys in ``presume`` (rows the batch should create, :func:`~swarmlog.projections.verify.
        creates`) are not looked up but taken to be absent, where nothing says otherwise: those
        are returned, for :meth:`flush`, which makes sure the guess was right.

        ``keys`` name rows by their key; ``where`` as ``(table, column, value)``, every row of
        the table with that value in that column (see :func:`~swarmlog.projections.verify.
        touches_where`). A row the batch holds already is newer than storage's and is kept.

        ``ids`` are the batch's ``(event id, occurred_at)``. An id embeds its event's
        ``occurred_at`` (checked on read), so an id can only repeat among events of the same
        instant: those dated from the horizon of the ids this store committed lately are
        answered from them (:mod:`~swarmlog.projections.recentids`), the rest by a lookup
        confined to their range of ``occurred_at``, which DuckDB's zone maps find without
        scanning the whole audit trail.
        """
        presumed: list[tuple[str, Key]] = []
        for name, key in presume:
            if key not in state.rows[name] and not state.known_absent(name, key):
                # Known absent from here on: not looked up below, and written with a plain
                # INSERT, which checks the guess.
                state.unstored[name].add(key)
                presumed.append((name, key))
        wanted: dict[str, set[Key]] = {}
        for name, key in keys:
            if key not in state.rows[name] and not state.known_absent(name, key):
                wanted.setdefault(name, set()).add(key)
        with self._lock:
            for name, key_set in wanted.items():
                t = table(name)
                if t.derived:
                    # A view has no index: a lookup by key scans what it derives from (the
                    # whole audit trail for `chain_heads`), so one scan loads every row.
                    for values in self._con.execute(
                        f"SELECT {', '.join(t.column_names)} FROM {name}"
                    ).fetchall():
                        row = dict(zip(t.column_names, values, strict=True))
                        if tuple(row[k] for k in t.key) not in state.rows[name]:
                            state.load(name, row)
                    state.whole.add(name)
                    continue
                for values in self._rows_at(name, key_set, t.column_names):
                    state.load(name, dict(zip(t.column_names, values, strict=True)))
                not_found = key_set - set(state.rows[name])
                state.unstored[name] |= not_found
                if name in state.absent:
                    state.absent[name].update(not_found)
            by_column: dict[tuple[str, str], set[Any]] = {}
            for name, column, value in where:
                by_column.setdefault((name, column), set()).add(value)
            for (name, column), wanted_values in sorted(by_column.items()):
                t = table(name)
                if column not in t.column_names:
                    raise ValueError(f"{name} has no column {column}")
                found_rows = self._select_keys(
                    f"SELECT {', '.join(t.column_names)} FROM {name}"
                    f" WHERE {column} IN (SELECT k FROM _keys)",
                    sorted(wanted_values),
                )
                for values in found_rows:
                    row = dict(zip(t.column_names, values, strict=True))
                    if tuple(row[k] for k in t.key) not in state.rows[name]:
                        state.load(name, row)
            recent = self._recent_ids()
            older: list[tuple[str, int]] = []
            for event_id, occurred_at in ids:
                if not recent.covers(occurred_at):
                    older.append((event_id, occurred_at))
                elif recent.seen(event_id, occurred_at):
                    state.seen_ids.add(event_id)
            if older:
                low, high = millisecond_range(t for _, t in older)
                found = self._select_keys(
                    f"SELECT id FROM events WHERE occurred_at BETWEEN {int(low)} AND {int(high)}"
                    " AND id IN (SELECT k FROM _keys)",
                    [i for i, _ in older],
                )
                state.seen_ids.update(r[0] for r in found)
        return presumed

    def _recent_ids(self) -> RecentIds:
        """The ids committed lately, from the millisecond after the latest event storage held
        when first asked (call it holding the lock)."""
        if self._recent is None:
            (latest,) = self._con.execute("SELECT max(occurred_at) FROM events").fetchall()[0]
            # From the next millisecond: an id names only its millisecond, so an event dated a
            # nanosecond after the latest may repeat the latest's id, and storage must say so.
            self._recent = RecentIds.after(None if latest is None else int(latest))
        return self._recent

    def _rows_at(
        self, name: str, keys: Iterable[Key], columns: Sequence[str]
    ) -> list[tuple[Any, ...]]:
        """``columns`` of the rows of table ``name`` stored at ``keys`` (call it holding the
        lock)."""
        t, keys, selected = table(name), list(keys), ", ".join(columns)
        if len(t.key) == 1:
            return self._select_keys(
                f"SELECT {selected} FROM {name} WHERE {t.key[0]} IN (SELECT k FROM _keys)",
                [k[0] for k in keys],
            )
        conds = " OR ".join("(" + " AND ".join(f"{c} = ?" for c in t.key) + ")" for _ in keys)
        return self._con.execute(
            f"SELECT {selected} FROM {name} WHERE {conds}", [v for k in keys for v in k]
        ).fetchall()

    def _stored_of(self, keys: Iterable[tuple[str, Key]]) -> list[tuple[str, Key]]:
        """Which of ``keys`` (``(table, key)``) storage holds a row at (holding the lock)."""
        by_table: dict[str, list[Key]] = {}
        for name, key in keys:
            by_table.setdefault(name, []).append(key)
        found = []
        for name, wanted in by_table.items():
            key_columns = table(name).key
            found += [(name, tuple(row)) for row in self._rows_at(name, wanted, key_columns)]
        return found

    def _select_keys(self, sql: str, keys: list[Any]) -> list[tuple[Any, ...]]:
        """Run ``sql`` with ``keys`` as ``(SELECT k FROM _keys)``: parameters for a few keys,
        an Arrow table for many (cheaper than that many parameters)."""
        if len(keys) <= _SMALL:
            placeholders = "(" + ", ".join("?" * len(keys)) + ")"
            return self._con.execute(
                sql.replace("(SELECT k FROM _keys)", placeholders), keys
            ).fetchall()
        pa = _arrow()
        self._con.register("_keys", pa.table({"k": pa.array(keys)}))
        try:
            return self._con.execute(sql).fetchall()
        finally:
            self._con.unregister("_keys")

    def flush(self, state: State, position: int, presumed: Sequence[tuple[str, Key]] = ()) -> None:
        """Write every changed row in one transaction; ``position`` is the last sequence of
        the batch, which its rows must hold (it is what the file's position will say).

        ``presumed``: the rows :meth:`preload` took to be absent without asking. One the batch
        writes goes with a plain ``INSERT``, which fails on a key the table holds; one it does
        not write (its event refused, say) is looked up now, since nothing else would check the
        guess the fold made with it. Either way, when storage holds one, nothing is written and
        :class:`RowExists` says to fold the batch again without presuming."""
        if (position,) not in state.dirty["events"] and (position,) not in state.dirty[
            "quarantine"
        ]:
            # Committing without it would leave the position behind the rows: a restart would
            # fold again what is applied already.
            raise StoreError(f"the batch to write holds no row for its last sequence {position}")
        unwritten = [
            (name, key)
            for name, key in presumed
            if key not in state.dirty[name] or key not in state.unstored[name]
        ]
        with self._lock:
            if unwritten and self._stored_of(unwritten):
                raise RowExists(f"a row presumed absent and not written is stored: {unwritten}")
            con = self._con
            con.execute("BEGIN TRANSACTION")
            try:
                for t in TABLES:
                    if t.derived:  # storage derives its rows from the tables written here
                        continue
                    deleted = state.deleted[t.name]
                    if deleted:
                        self._delete(t.name, deleted)
                    dirty = state.dirty[t.name]
                    if dirty:
                        self._write(state, t, dirty)
                con.execute("COMMIT")
            except duckdb.ConstraintException as exc:
                con.execute("ROLLBACK")
                # Only a key the batch took for new, found stored, is a wrong guess; any other
                # violation is a fault of this code, and must show, not be folded away.
                if presumed and self._stored_of(presumed):
                    raise RowExists(f"a row presumed absent is stored: {_first_line(exc)}") from exc
                raise
            except BaseException:
                con.execute("ROLLBACK")
                raise
            if self._recent is not None:
                events = state.rows["events"]
                self._recent.add(
                    (events[k]["id"], events[k]["occurred_at"]) for k in state.dirty["events"]
                )
        state.written()
        state.clear_changes()

    def _write(self, state: State, t: Table, dirty: set[Key]) -> None:
        """Write the changed rows of table ``t``, each the cheapest way storage allows: a plain
        insert where storage is known to hold no row, an update of the columns that changed
        where it holds one, and an insert-or-replace (DuckDB's dearest: a delete and an insert,
        checked) otherwise."""
        rows = state.rows[t.name]
        if t.append_only:  # every row is new
            self._insert(t, "INSERT", [rows[k] for k in dirty])
            return
        stored, unstored = state.stored[t.name], state.unstored[t.name]
        self._insert(t, "INSERT", [rows[k] for k in dirty if k in unstored])
        rest = [rows[k] for k in dirty if k not in stored and k not in unstored]
        self._insert(t, "INSERT OR REPLACE", rest)
        differ, columns = state.changes(t.name, [k for k in dirty if k in stored])
        if differ:
            self._update(t, [rows[k] for k in differ], columns)

    def _insert(self, t: Table, verb: str, changed: list[Row]) -> None:
        if not changed:
            return
        if len(changed) <= _SMALL:
            # A few rows (a trickle: latency matters): parameters cost less than registering
            # an Arrow table.
            row = "(" + ", ".join("?" * len(t.columns)) + ")"
            self._con.execute(
                f"{verb} INTO {t.name} VALUES " + ", ".join([row] * len(changed)),
                [r[c] for r in changed for c in t.column_names],
            )
            return
        # Many rows: Arrow hands the columns to DuckDB in bulk, far cheaper.
        with self._registered(_batch_of(t, changed, t.column_names)):
            self._con.execute(f"{verb} INTO {t.name} SELECT * FROM _batch")

    def _update(self, t: Table, changed: list[Row], columns: list[str]) -> None:
        """Set ``columns`` of the stored ``changed`` rows: an update costs about the columns it
        sets (measured on a table like ``tasks``: three columns 0.8 ms, all fifteen 2.0 ms;
        200 rows' six columns 4.7 ms, where replacing the rows took 7.5 ms)."""
        sets = ", ".join(f"{c} = _batch.{c}" for c in columns)
        match = " AND ".join(f"{t.name}.{k} = _batch.{k}" for k in t.key)
        if len(changed) <= _FEW_UPDATES:
            sql = (
                f"UPDATE {t.name} SET {', '.join(f'{c} = ?' for c in columns)}"
                f" WHERE {' AND '.join(f'{k} = ?' for k in t.key)}"
            )
            for row in changed:
                self._con.execute(sql, [row[c] for c in columns] + [row[k] for k in t.key])
            return
        named = [*t.key, *columns]
        if len(changed) <= _SMALL:
            types = dict(t.columns)
            values = "(" + ", ".join(f"CAST(? AS {types[c]})" for c in named) + ")"
            self._con.execute(
                f"UPDATE {t.name} SET {sets} FROM (VALUES {', '.join([values] * len(changed))})"
                f" AS _batch({', '.join(named)}) WHERE {match}",
                [r[c] for r in changed for c in named],
            )
            return
        with self._registered(_batch_of(t, changed, named)):
            self._con.execute(f"UPDATE {t.name} SET {sets} FROM _batch WHERE {match}")

    @contextlib.contextmanager
    def _registered(self, batch: Any) -> Iterator[None]:
        self._con.register("_batch", batch)
        try:
            yield
        except BaseException:
            # In a transaction the failure aborted, unregistering fails too, and its error
            # would take the place of the one that matters (a duplicate key's, say).
            with contextlib.suppress(duckdb.Error):
                self._con.unregister("_batch")
            raise
        self._con.unregister("_batch")

    def _delete(self, name: str, keys: set[Key]) -> None:
        t = table(name)
        for key in keys:
            cond = " AND ".join(f"{c} = ?" for c in t.key)
            self._con.execute(f"DELETE FROM {name} WHERE {cond}", list(key))

    # --- reading ----------------------------------------------------------------------------------

    def state_hash(self) -> str:
        """The state hash over every projection table (see :mod:`statehash`)."""
        return self.snapshot_state()[1]

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor for concurrent reads (DuckDB's MVCC keeps them consistent)."""
        with self._lock:
            return self._con.cursor()

    def snapshot_state(self) -> tuple[int, str]:
        """The position and state hash at one consistent point."""
        with self._lock:
            cursor = self._con.cursor()
            cursor.execute("BEGIN TRANSACTION")
        try:
            state = _state_of(cursor)
            cursor.execute("COMMIT")
            return state
        finally:
            cursor.close()

    def copy_to(self, path: Path) -> int:
        """Copy this projection, at one consistent point, into a new file at ``path`` (a
        snapshot); returns the position it was copied at.

        The last commit is checkpointed into the file, which is then copied while no batch is
        written (the kernel copies it: nothing is read through DuckDB here, so the projector's
        memory does not grow with the projection, as it did while a copy was written through a
        second database in this process). Its state hash is for whoever opens the copy to
        compute: see :func:`state_of_file`."""
        wal = self.path.with_name(self.path.name + ".wal")
        for attempt in range(_CHECKPOINT_TRIES):
            with self._lock:
                try:
                    self._con.execute("CHECKPOINT")
                except duckdb.TransactionException:
                    checkpointed = False  # a query is reading: DuckDB waits for no one
                else:
                    checkpointed = not (wal.exists() and wal.stat().st_size)
                if checkpointed:
                    (position,) = self._con.execute(
                        "SELECT coalesce(max(seq), 0) FROM projector_position"
                    ).fetchall()[0]
                    shutil.copyfile(self.path, path)
                    return int(position)
            # Batches and queries go on meanwhile; try again when the reader may be done.
            time.sleep(0.05 * 2**attempt)
        raise StoreError(
            f"{self.path} could not be checkpointed for a snapshot while queries ran on it;"
            " try the snapshot again"
        )

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of an internal query (not user SQL: see :mod:`query` for that)."""
        with self._lock:
            return self._con.execute(sql, list(params)).fetchall()


SNAPSHOT_READER_MEMORY = "128MB"
"""DuckDB's memory for computing a snapshot copy's state hash (it scans, sorts and spills; it
runs beside the live projector, whose memory it must not double)."""


def state_of_file(path: Path | str) -> tuple[int, str]:
    """The position and state hash of the projection file at ``path``, opened read-only with
    :data:`SNAPSHOT_READER_MEMORY`."""
    with ProjectionStore(path, read_only=True, memory=SNAPSHOT_READER_MEMORY) as store:
        return store.snapshot_state()


def _gate_path(path: Path) -> Path:
    return path.with_name(path.name + ".gate")


def _connect(
    path: Path, *, read_only: bool, memory: str = MEMORY_LIMIT
) -> duckdb.DuckDBPyConnection:
    try:
        config = dict(SAFE_CONFIG) | {"memory_limit": memory}
        return duckdb.connect(str(path), read_only=read_only, config=config)
    except duckdb.Error as exc:
        raise StoreError(f"cannot open projection {path}: {_first_line(exc)}") from None


def _connect_waiting(path: Path, deadline: float) -> duckdb.DuckDBPyConnection:
    """Open ``path`` read-write, retrying while readers that got in before the gate still hold
    DuckDB's file lock (each for at most :data:`READER_TIMEOUT`)."""
    pause = 0.01
    while True:
        try:
            config = dict(SAFE_CONFIG) | {"threads": WRITER_THREADS}
            return duckdb.connect(str(path), config=config)
        except (duckdb.IOException, duckdb.ConnectionException) as exc:
            # A reader in another process holds DuckDB's file lock; one in this process (its
            # connection configured otherwise) is the same wait.
            held = "lock" in str(exc).lower() or "different configuration" in str(exc)
            if not held or time.monotonic() + pause > deadline:
                raise StoreError(
                    f"cannot open projection {path}: {_first_line(exc)}; another process holds"
                    " it (`swarmlog agent ps`, `lsof` name it)"
                ) from None
            log.info("waiting for readers of %s to close it", path)
        except duckdb.Error as exc:
            raise StoreError(f"cannot open projection {path}: {_first_line(exc)}") from None
        time.sleep(pause)  # a bounded retry of a lock held by another process: nothing to wait on
        pause = min(pause * 2, 0.2)


def _writer_gate(path: Path, deadline: float) -> int:
    """Take ``path``'s gate exclusively (readers hold it only while they open the file): the
    open descriptor, which holds it until closed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(_gate_path(path), os.O_RDWR | os.O_CREAT, 0o600)
    pause = 0.005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() + pause > deadline:
                os.close(fd)
                raise StoreError(
                    f"another process is writing projection {path} (a projector already runs:"
                    " `swarmlog status`); stop it first"
                ) from None
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


@contextlib.contextmanager
def _reader_gate(path: Path) -> Iterator[None]:
    """Hold ``path``'s gate shared while the file is being opened; :class:`StoreBusy` when a
    writer holds or waits for it. No gate file yet: no writer ever opened it, nothing to do."""
    try:
        fd = os.open(_gate_path(path), os.O_RDONLY)
    except FileNotFoundError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreBusy(
                f"the projector owns {path} (it is starting or running) but did not answer;"
                " try again in a moment"
            ) from None
        yield
    finally:
        os.close(fd)


def _state_of(cursor: duckdb.DuckDBPyConnection) -> tuple[int, str]:
    """Position and state hash as ``cursor``'s transaction sees them."""
    row = cursor.execute("SELECT max(seq) FROM projector_position").fetchall()[0]
    position = int(row[0]) if row and row[0] is not None else 0
    # Which tables hold rows, in one statement: an empty table hashes as its name alone, and a
    # sorted read of each costs about a millisecond however small it is.
    counts = ", ".join(f"(SELECT count(*) FROM {t.name})" for t in TABLES)
    held = cursor.execute(f"SELECT {counts}").fetchall()[0]
    hasher = StateHasher()
    for t, rows in zip(TABLES, held, strict=True):
        if not rows:
            hasher.table(t, ())
            continue
        result = cursor.execute(
            f"SELECT {', '.join(t.column_names)} FROM {t.name} ORDER BY {', '.join(t.key)}"
        )
        hasher.table(t, _iterate(result))
    return position, hasher.hexdigest()


def _iterate(result: duckdb.DuckDBPyConnection) -> Iterable[tuple[Any, ...]]:
    while True:
        chunk = result.fetchmany(_HASH_FETCH)
        if not chunk:
            return
        yield from chunk


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
