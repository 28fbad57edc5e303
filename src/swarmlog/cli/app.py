"""The root click group, its global options and shared helpers for commands."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from swarmlog.config import DEFAULT_NAMESPACE, Settings
from swarmlog.control.system import open_projections
from swarmlog.rendering.console import print_table

__all__ = ["CliContext", "cli", "emit_json", "pass_ctx", "print_table", "projection_rows", "run"]

T = TypeVar("T")


@dataclass
class CliContext:
    """What every command gets: the settings and where to print."""

    settings: Settings
    debug: bool
    console: Console
    err: Console


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--data-dir",
    envvar="SWARMLOG_DATA",
    default=".swarmlog",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Keys, the embedded server's store, projections, pidfiles, logs.",
)
@click.option(
    "--nats-url",
    envvar="SWARMLOG_NATS_URL",
    default=None,
    help="An external NATS server or cluster (default: the embedded server).",
)
@click.option(
    "--namespace",
    envvar="SWARMLOG_NAMESPACE",
    default=DEFAULT_NAMESPACE,
    show_default=True,
    help="Separates independent swarms: one stream per namespace.",
)
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.version_option(package_name="swarmlog")
@click.pass_context
def cli(
    ctx: click.Context, data_dir: Path, nats_url: str | None, namespace: str, debug: bool
) -> None:
    """swarmlog: multi-agent systems on a signed, append-only event log."""
    ctx.obj = CliContext(
        Settings(data_dir=data_dir, nats_url=nats_url or None, namespace=namespace),
        debug,
        Console(),
        Console(stderr=True),
    )


pass_ctx = click.make_pass_decorator(CliContext)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's async body."""
    return asyncio.run(coro)


def emit_json(value: Any) -> None:
    """Print one JSON document to stdout."""
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def projection_rows(settings: Settings, sql: str) -> list[dict[str, Any]]:
    """A read-only query over the projections, each row as a dict by column name."""

    async def ask() -> list[dict[str, Any]]:
        async with open_projections(settings) as projections:
            return await projections.query(sql)

    return run(ask())
