"""``bench NAME``: benchmarks with their ceilings and physical limit measured in the same run."""

from __future__ import annotations

import dataclasses
import json

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
    """Run benchmark NAME (own embedded server and temp files; touches no data dir).

    ``limits`` prints every stage's CPU cost and every benchmark's physical limit; ``compare``
    runs ``tasks`` and ``publish`` beside the LangGraph and eventsourcing peers (``make
    peers``)."""
    result = run_benchmark(name, events)
    if as_json:
        emit_json(dataclasses.asdict(result))
        return
    fields = dataclasses.asdict(result)
    table = fields["details"].pop("table", None)
    if table is not None:
        rows = [
            (r["figure"], r["swarmlog"]["value"], f"{r['peer']['name']} {r['peer']['value']}",
             r["ratio"])
            for r in table
        ]  # fmt: skip
        print_table(ctx.console, f"bench {name}", ["figure", "swarmlog", "peer", "ratio"], rows)
    fields_rows = [
        (k, json.dumps(v) if isinstance(v, dict | list) else v)
        for k, v in fields.items()
        if k != "machine"
    ]
    print_table(ctx.console, f"bench {name}", ["field", "value"], fields_rows)
