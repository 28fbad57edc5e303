"""What a projection query may reach: one SELECT over the projection tables, nothing that
writes (``checkpoint()``), reads files (the projection's own ``.duckdb`` / ``.wal`` included),
settings or secrets, or runs SQL unchecked; and a database whose memory, temp space and
configuration a query cannot take over."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from swarmlog.errors import QueryError
from swarmlog.projections.query import run_query
from swarmlog.projections.store import ProjectionStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ProjectionStore]:
    with ProjectionStore(tmp_path / "p.duckdb") as store:
        yield store


ALLOWED = [
    "SELECT count(*) AS n FROM tasks",
    "SHOW TABLES",
    "DESCRIBE tasks",
    "SELECT * FROM range(3)",
    "SELECT t.status, count(*) FROM tasks t JOIN agents a ON a.agent_id = t.completed_by"
    " GROUP BY ALL",
    "SELECT table_name FROM duckdb_tables() ORDER BY 1",
    "SELECT json_extract_string('{\"a\": 1}', '$.a'), uuid() IS NOT NULL",
]

REFUSED = [
    ("SELECT * FROM checkpoint()", "checkpoint()"),
    ("SELECT * FROM CHECKPOINT()", "checkpoint()"),
    ("SELECT * FROM force_checkpoint()", "force_checkpoint()"),
    ("WITH c AS (SELECT * FROM checkpoint()) SELECT * FROM c", "checkpoint()"),
    ("SELECT (SELECT count(*) FROM checkpoint())", "checkpoint()"),
    ("SELECT * FROM tasks WHERE task_id IN (SELECT content FROM read_text('x'))", "read_text()"),
    ("SELECT * FROM read_blob('{path}')", "read_blob()"),
    ("SELECT * FROM read_text('{path}.wal')", "read_text()"),
    ("SELECT * FROM read_duckdb('{path}')", "read_duckdb()"),
    ("SELECT * FROM '{path}'", "is a file"),
    ("SELECT * FROM 'p.duckdb'", "is a file"),
    ("SELECT * FROM pragma_database_size()", "pragma_database_size()"),
    ("SELECT * FROM pragma_storage_info('tasks')", "pragma_storage_info()"),
    ("SELECT * FROM duckdb_secrets()", "duckdb_secrets()"),
    ("SELECT * FROM duckdb_settings()", "duckdb_settings()"),
    ("SELECT * FROM system.main.duckdb_settings()", "duckdb_settings()"),
    ("SELECT * FROM query('SELECT * FROM checkpoint()')", "query()"),
    ("SELECT * FROM json_execute_serialized_sql('{{}}')", "json_execute_serialized_sql()"),
    ("SELECT nextval('s')", "nextval()"),
    ("SELECT setseed(0.5)", "setseed()"),
    ("SELECT sleep_ms(100000)", "sleep_ms()"),
]


@pytest.mark.parametrize("sql", ALLOWED)
def test_plain_selects_over_the_projection_run(store: ProjectionStore, sql: str) -> None:
    run_query(store.cursor(), sql)


@pytest.mark.parametrize(("sql", "named"), REFUSED, ids=[s for s, _ in REFUSED])
def test_what_writes_or_reaches_outside_is_refused_in_one_line(
    store: ProjectionStore, sql: str, named: str
) -> None:
    with pytest.raises(QueryError) as refused:
        run_query(store.cursor(), sql.format(path=store.path))
    message = str(refused.value)
    assert named in message
    assert "\n" not in message


def test_memory_and_temp_space_are_bounded_and_locked(store: ProjectionStore) -> None:
    limits = run_query(
        store.cursor(),
        "SELECT current_setting('memory_limit'), current_setting('max_temp_directory_size'),"
        " current_setting('lock_configuration'), current_setting('enable_external_access')",
    )
    assert limits.rows == [["953.6 MiB", "1.8 GiB", True, False]]
    # Even a statement that got past the checks could not change them back.
    cursor = store.cursor()
    for setting in ("memory_limit = '100GB'", "max_temp_directory_size = '1TB'"):
        with pytest.raises(duckdb.Error, match="locked"):
            cursor.execute(f"SET {setting}")
    with pytest.raises(duckdb.Error, match="locked"):
        cursor.execute("SET lock_configuration = false")
