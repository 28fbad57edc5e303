"""``query``: read-only SQL over the projections."""

from __future__ import annotations

import csv
import sys

import click

from swarmlog.cli.app import CliContext, emit_json, pass_ctx, print_table, run
from swarmlog.control.system import open_projections
from swarmlog.projections.query import QueryResult

__all__ = ["query"]


@click.command()
@click.argument("sql")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@pass_ctx
def query(ctx: CliContext, sql: str, fmt: str, as_json: bool) -> None:
    """Run one read-only SELECT over the projections (tables: events, agents, tasks, ...)."""

    async def ask() -> QueryResult:
        async with open_projections(ctx.settings) as projections:
            return await projections.rows(sql)

    result = run(ask())
    if as_json:
        fmt = "json"
    if fmt == "json":
        names = _unique(result.columns)
        emit_json(
            {
                "columns": names,
                "rows": [dict(zip(names, r, strict=True)) for r in result.rows],
                "truncated": result.truncated,
            }
        )
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(result.columns)
        writer.writerows(result.rows)
    else:
        print_table(ctx.console, None, result.columns, result.rows)
        if result.truncated:
            ctx.err.print(f"(first {len(result.rows)} rows; add a LIMIT or narrow the query)")


def _unique(columns: list[str]) -> list[str]:
    """Column names made unique (``a``, ``a_2``), so no value is lost in a JSON object."""
    seen: dict[str, int] = {}
    out = []
    for name in columns:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out
