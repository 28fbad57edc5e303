"""``query``: read-only SQL over the projections."""

from __future__ import annotations

import csv
import sys

import click
import msgspec

from swarmlog.cli.app import CliContext, emit_json, pass_ctx, print_table, with_client

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
    result = with_client(ctx.settings, lambda c: c.query(sql))
    if as_json:
        fmt = "json"
    if fmt == "json":
        emit_json(msgspec.to_builtins(result))
        return
    values = [list(r.values()) for r in result.rows]
    if fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(result.columns)
        writer.writerows(values)
    else:
        print_table(ctx.console, None, result.columns, values)
        if result.truncated:
            ctx.warn(f"(first {len(values)} rows; add a LIMIT or narrow the query)")
