"""Rendering for people: rich tables (the CLI and the demo print with it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["print_table"]


def print_table(
    console: Console, title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(str(column), overflow="fold")
    for row in rows:
        # Cells are data: Text keeps "[/x]" in a payload from being read as markup.
        table.add_row(*(Text("" if v is None else str(v)) for v in row))
    console.print(table)
