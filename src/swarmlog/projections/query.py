"""Read-only SQL over the projections.

A query must be exactly one statement whose parsed type is SELECT (DuckDB's own parser decides, no
string matching). A SELECT can still call functions, so its parse tree (DuckDB's own, as JSON) is
checked too: table functions only from :data:`TABLE_FUNCTIONS` (``checkpoint()`` writes,
``read_blob`` reads the projection's own file, ``query()`` runs a string unchecked, ...), none of
the scalar functions in :data:`REFUSED_FUNCTIONS` (they write or stall), and no file name in
place of a table. Underneath, the database runs with external access disabled, bounded memory
and temp space, and its configuration locked (see ``store.SAFE_CONFIG``), so a SELECT cannot read
files or the network either: ``read_csv('/etc/passwd')`` is refused.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from typing import TYPE_CHECKING, Any

import msgspec

from swarmlog.errors import QueryError

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "MAX_ROWS",
    "REFUSED_FUNCTIONS",
    "TABLE_FUNCTIONS",
    "QueryResult",
    "run_query",
    "validate_query",
]

MAX_ROWS = 10_000
"""Rows returned at most; the result says when it was cut."""


TABLE_FUNCTIONS = frozenset(
    {
        "range",
        "generate_series",
        "unnest",
        "repeat",
        "json_each",
        "json_tree",
        "duckdb_tables",
        "duckdb_columns",
        "duckdb_views",
        "duckdb_constraints",
        "duckdb_indexes",
        "duckdb_types",
        "duckdb_functions",
        "duckdb_keywords",
    }
)
"""The table functions a query may use: generators and the catalog of the projection. Every
other one writes (``checkpoint``), reads files or settings (``read_blob``, ``pragma_*``,
``duckdb_secrets``) or runs SQL the checks never saw (``query``,
``json_execute_serialized_sql``)."""

REFUSED_FUNCTIONS = frozenset({"nextval", "currval", "setval", "setseed", "sleep_ms", "write_log"})
"""Scalar functions a query may not call: they change state or stall the service."""


class QueryResult(msgspec.Struct, frozen=True):
    """Columns and rows of a query; ``truncated`` when more rows existed than were returned."""

    columns: list[str]
    rows: list[list[Any]]
    truncated: bool = False


def validate_query(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Raise :class:`QueryError` unless ``sql`` is exactly one SELECT."""
    import duckdb  # here: the query client imports QueryResult, and agents do not load DuckDB

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
    try:
        row = con.execute("SELECT json_serialize_sql(?::VARCHAR)", [sql]).fetchone()
    except duckdb.Error as exc:
        raise QueryError(f"cannot check the query: {_first_line(exc)}") from None
    tree = msgspec.json.decode(row[0]) if row else {"error": True}
    if tree.get("error"):
        raise QueryError(f"cannot check the query: {tree.get('error_message', 'unparsable')}")
    refusal = _refusal(tree)
    if refusal:
        raise QueryError(f"{refusal}; a query reads the projection tables and nothing else")


def _refusal(tree: Any) -> str:
    """Why the parse tree ``tree`` reaches beyond the projections ("" when it does not)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack += node
            continue
        if not isinstance(node, dict):
            continue
        kind = node.get("type")
        if kind == "TABLE_FUNCTION":
            function = node.get("function") or {}
            name = str(function.get("function_name", "")).lower()
            if name not in TABLE_FUNCTIONS:
                return f"table function {name}() is not allowed in a query"
        elif kind == "BASE_TABLE" and any(c in str(node.get("table_name")) for c in "/\\.:"):
            # DuckDB reads `FROM 'file.duckdb'` (or .csv, ...) as a scan of that file.
            return f"{node.get('table_name')!r} is a file, not a projection table"
        if node.get("class") == "FUNCTION":
            name = str(node.get("function_name", "")).lower()
            if name in REFUSED_FUNCTIONS:
                return f"function {name}() is not allowed in a query"
        stack += node.values()
    return ""


def run_query(con: duckdb.DuckDBPyConnection, sql: str, *, max_rows: int = MAX_ROWS) -> QueryResult:
    """Validate and run ``sql`` on ``con`` (a cursor of the projection)."""
    import duckdb

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
