"""``demo``: the main job end to end on the embedded default, offline."""

from __future__ import annotations

from pathlib import Path

import click

from swarmlog.cli.app import Context, pass_ctx
from swarmlog.demo import run_demo

__all__ = ["demo"]


@click.command()
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the demo's files in this folder (default: a temp dir, removed).",
)
@pass_ctx
def demo(ctx: Context, keep: Path | None) -> None:
    """Start a swarm, play a signed workflow, fold, query, audit and replay; then stop."""
    code = run_demo(ctx.console, keep)
    if code:
        raise SystemExit(code)
