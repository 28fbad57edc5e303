"""``demo``: the main job end to end on the embedded default, offline."""

from __future__ import annotations

from pathlib import Path

import click

from swarmlog.cli.app import CliContext, pass_ctx
from swarmlog.harness.demo import run_demo

__all__ = ["demo"]


@click.command()
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the demo's files in this folder (default: a temp dir, removed).",
)
@click.option(
    "--examples",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The examples/ folder of a swarmlog checkout (default: found from here).",
)
@pass_ctx
def demo(ctx: CliContext, keep: Path | None, examples: Path | None) -> None:
    """Start a swarm and example agents, run one workflow of each pattern on local data, show
    the results and a summary from the projections, audit, replay; then stop."""
    code = run_demo(ctx.console, keep, examples)
    if code:
        raise SystemExit(code)
