"""Read-only SQL over the projections.

A query must be exactly one statement whose parsed type is SELECT (DuckDB's own parser decides, no
string matching). The database runs with external access disabled (see ``store.SAFE_CONFIG``), so a
SELECT cannot read files or the network either: ``read_csv('/etc/passwd')`` is refused.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from typing import Any

import duckdb
import msgspec

from swarmlog.errors import QueryError

__all__ = ["MAX_ROWS", "QueryResult", "run_query", "validate_query"]

MAX_ROWS = 10_000
"""Rows returned at most; the result says when it was cut."""


class QueryResult(msgspec.Struct, frozen=True):
    """Columns and rows of a query; ``truncated`` when more rows existed than were returned."""

    columns: list[str]
    rows: list[list[Any]]
    truncated: bool = False


def validate_query(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Raise :class:`QueryError` unless ``sql`` is exactly one SELECT."""
    if not sql.strip():
        raise QueryError(
            "empty query; pass one SELECT, e.g. `swarmlog query 'SELECT * FROM tasks'`"
        )
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(f"cannot parse the query: {_first_line(exc)}") from None
    if len(statements) != 1:
        raise QueryError(f"one statement per query, got {len(statements)}")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise QueryError(
            f"only read-only SELECT queries are allowed, not {kind.name}; the projections are"
            " written by the projector alone"
        )


def run_query(con: duckdb.DuckDBPyConnection, sql: str, *, max_rows: int = MAX_ROWS) -> QueryResult:
    """Validate and run ``sql`` on ``con`` (a cursor of the projection)."""
    validate_query(con, sql)
    try:
        result = con.execute(sql)
        columns = [d[0] for d in result.description or []]
        rows = result.fetchmany(max_rows + 1)
    except duckdb.CatalogException as exc:
        raise QueryError(
            f"{_first_line(exc)}; `swarmlog query 'SHOW TABLES'` lists the projection tables"
        ) from None
    except duckdb.Error as exc:
        raise QueryError(_first_line(exc)) from None
    truncated = len(rows) > max_rows
    return QueryResult(columns, [[_plain(v) for v in row] for row in rows[:max_rows]], truncated)


def _plain(value: Any) -> Any:
    """A JSON-friendly form of a DuckDB value."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID | datetime.timedelta):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__
