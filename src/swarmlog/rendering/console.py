"""Rendering for people: rich tables (the CLI and the demo print with it), and times as people
read them.

Times are nanoseconds since the Unix epoch everywhere in swarmlog (events, projections,
``--json``). A table shows a time column (named ``*_at``, or one of :data:`TIME_COLUMNS`) as
ISO-8601 in UTC with how long ago it was (:func:`when`); the raw integer stays what ``--json``
prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["TIME_COLUMNS", "ago", "is_time_column", "print_table", "when"]

TIME_COLUMNS = frozenset({"since"})
"""Time columns whose names do not end in ``_at`` (``waits_for.since``)."""


def is_time_column(name: str) -> bool:
    """Whether a column named ``name`` holds a time (nanoseconds since the epoch)."""
    return name.endswith("_at") or name in TIME_COLUMNS


def ago(seconds: float) -> str:
    """A duration for people: ``850 ms``, ``12 s``, ``4 min``, ``3 h``, ``2 d``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def when(ns: int, now: int) -> str:
    """``ns`` (nanoseconds since the epoch) as ISO-8601 in UTC to the second, with how long
    before ``now`` it was: ``2026-12-03T04:20:01Z (3 min ago)``; a time after ``now`` (a
    deadline, an expiry, a clock ahead) says ``(in 5 s)``."""
    at = datetime.fromtimestamp(ns // 1_000_000_000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    delta = (now - ns) / 1e9
    return f"{at} ({ago(delta)} ago)" if delta >= 0 else f"{at} (in {ago(-delta)})"


def _cell(value: Any, timed: bool, now: int) -> str:
    if value is None:
        return ""
    # bool is an int: never a time. Only integers are: a time already in text stays as it is.
    if timed and isinstance(value, int) and not isinstance(value, bool):
        return when(value, now)
    return str(value)


def print_table(
    console: Console,
    title: str | None,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    clock: Callable[[], int] = time.time_ns,
) -> None:
    """Print ``rows`` under ``columns`` as a table; integers in time columns (see
    :func:`is_time_column`) print as :func:`when` relative to ``clock()`` (read once)."""
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(str(column), overflow="fold")
    timed = [is_time_column(str(c)) for c in columns]
    now = clock() if any(timed) else 0
    for row in rows:
        # Cells are data: Text keeps "[/x]" in a payload from being read as markup.
        cells = (_cell(v, i < len(timed) and timed[i], now) for i, v in enumerate(row))
        table.add_row(*(Text(c) for c in cells))
    console.print(table)
