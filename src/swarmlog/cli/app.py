"""The root click group, its global options and shared helpers for commands."""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from swarmlog.config import DEFAULT_NAMESPACE, Settings

if TYPE_CHECKING:
    from rich.console import Console

    from swarmlog.control.client import Client

__all__ = [
    "CliContext",
    "LazyGroup",
    "cli",
    "emit_json",
    "emit_listing",
    "option_for",
    "pass_ctx",
    "print_table",
    "projection_rows",
    "run",
    "with_client",
]

T = TypeVar("T")


@dataclass
class CliContext:
    """What every command gets: the settings and where to print.

    The consoles are made when first printed to: a daemon (``agent run``, ``projector run``)
    prints nothing of its own, and rich costs every process's start-up a tenth of its imports.
    """

    settings: Settings
    debug: bool
    _console: Console | None = None
    _err: Console | None = None

    @property
    def console(self) -> Console:
        """Where a command prints (stdout)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console()
        return self._console

    @property
    def err(self) -> Console:
        """Where a command says what went wrong (stderr)."""
        if self._err is None:
            from rich.console import Console

            self._err = Console(stderr=True)
        return self._err

    def say(self, line: str) -> None:
        """Print one plain line to stdout: as written (no markup read into ids or paths, no
        wrapping at the terminal's width, so a script can cut it), and without importing
        rich, which would cost a one-line command a third of its start-up."""
        click.echo(line)

    def warn(self, line: str) -> None:
        """Print one plain line to stderr, like :meth:`say`."""
        click.echo(line, err=True)


def print_table(
    console: Console,
    title: str | None,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    clock: Callable[[], int] = time.time_ns,
) -> None:
    """:func:`swarmlog.rendering.console.print_table`, imported when a table is printed."""
    from swarmlog.rendering import console as rendering

    rendering.print_table(console, title, columns, rows, clock=clock)


class LazyGroup(click.Group):
    """A group whose commands are imported when one is run (or help lists them).

    Every daemon and agent process is a ``swarmlog`` command: importing all the commands, and
    with them the projector, DuckDB, the simulation and the benchmarks, would cost each process
    start-up for code it never runs.
    """

    lazy: dict[str, str] = {}
    """Command name -> ``module:attribute`` of its click command."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            module, _, attribute = self.lazy[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
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
        Settings(data_dir=data_dir, nats_url=nats_url or None, namespace=namespace), debug
    )


pass_ctx = click.make_pass_decorator(CliContext)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's async body."""
    return asyncio.run(coro)


def emit_json(value: Any) -> None:
    """Print one JSON document to stdout."""
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def emit_listing(
    ctx: CliContext,
    key: str,
    documents: Sequence[Mapping[str, Any]],
    as_json: bool,
    table: tuple[Sequence[str], Callable[[Mapping[str, Any]], list[Any]]] | None = None,
) -> None:
    """What a listing command prints: with ``--json`` one document ``{key: documents}``; else
    a table titled ``key`` (``table``: its columns and a document's cells; by default the
    documents' own keys and values), and when there is nothing to list, "no KEY yet" on
    stderr."""
    if as_json:
        emit_json({key: list(documents)})
        return
    if table is None:
        columns: Sequence[str] = list(documents[0]) if documents else []
        rows = [[d[c] for c in columns] for d in documents]
    else:
        columns, cells = table
        rows = [cells(d) for d in documents]
    print_table(ctx.console, key, columns, rows)
    if not documents:
        ctx.warn(f"no {key} yet")


def option_for(parameter: str | None) -> str | None:
    """The running command's option (``--budget``) that gives the library's argument
    ``parameter`` (``budget_tokens``), for saying which option an error is about: a command
    names each such option's destination after the argument it gives. ``None`` when none
    does."""
    if parameter is None:
        return None
    for param in click.get_current_context().command.params:
        if isinstance(param, click.Option) and param.name == parameter:
            return next(o for o in param.opts if o.startswith("--"))
    return None


def projection_rows(settings: Settings, sql: str) -> list[dict[str, Any]]:
    """A read-only query over the projections, each row as a dict by column name."""

    async def ask() -> list[dict[str, Any]]:
        from swarmlog.control.system import open_projections  # the reading commands' cost only

        async with open_projections(settings) as projections:
            return await projections.query(sql)

    return run(ask())


def with_client(
    settings: Settings, use: Callable[[Client], Awaitable[T]], *, require_server: bool = False
) -> T:
    """``use(client)`` over a :class:`~swarmlog.control.client.Client` of ``settings``: the one
    path from a command to the system (reads fall back to the projection file when no server
    runs, unless ``require_server``)."""

    async def go() -> T:
        from swarmlog.control.client import Client  # the commands' cost only, not every process'

        async with await Client.connect(settings, require_server=require_server) as client:
            return await use(client)

    return run(go())
