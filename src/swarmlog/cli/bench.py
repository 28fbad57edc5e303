"""``bench NAME``: benchmarks with their ceilings measured in the same run."""

from __future__ import annotations

import dataclasses

import click

from swarmlog.cli.app import CliContext, emit_json, pass_ctx, print_table
from swarmlog.cli.options import json_option
from swarmlog.harness.bench import BENCHMARKS, run_benchmark

__all__ = ["bench"]


@click.command()
@click.argument("name", type=click.Choice(sorted(BENCHMARKS)))
@click.option("--events", "-n", default=50_000, show_default=True, type=click.IntRange(min=100))
@json_option
@pass_ctx
def bench(ctx: CliContext, name: str, events: int, as_json: bool) -> None:
    """Run benchmark NAME (own embedded server and temp files; touches no data dir)."""
    result = run_benchmark(name, events)
    if as_json:
        emit_json(dataclasses.asdict(result))
        return
    rows = [(k, v) for k, v in dataclasses.asdict(result).items() if k not in ("machine",)]
    print_table(ctx.console, f"bench {name}", ["field", "value"], rows)
