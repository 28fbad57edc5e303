"""Options that several commands take, declared once so that they read and behave the same."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from swarmlog.control.records import MAX_ROWS

__all__ = ["file_option", "json_option", "listen_options", "rows_options", "seconds_option"]

F = TypeVar("F", bound=Callable[..., Any])

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
"""``--json``: the command prints one JSON document (its contract) instead of a table."""


def seconds_option(flag: str, default: float, help: str) -> Callable[[F], F]:
    """A time limit in seconds, from 1 s to an hour."""
    return click.option(
        flag, default=default, show_default=True, type=click.FloatRange(1, 3600), help=help
    )


def rows_options(default_limit: int) -> Callable[[F], F]:
    """The options of a command that lists rows: ``--limit/-n`` (at most that many, by default
    ``default_limit``, never more than a view returns) and ``--json``."""
    limit = click.option(
        "--limit",
        "-n",
        default=default_limit,
        show_default=True,
        type=click.IntRange(1, MAX_ROWS),
    )

    def add(command: F) -> F:
        return limit(json_option(command))

    return add


def file_option(flag: str, help: str) -> Callable[[F], F]:
    """A file the command writes (a path, not a folder; it need not exist yet)."""
    return click.option(flag, type=click.Path(dir_okay=False, path_type=Path), help=help)


def listen_options(port: int, host_help: str, port_help: str = "") -> Callable[[F], F]:
    """``--host`` (loopback by default) and ``--port`` (``None`` when not given: the command's
    own default, ``port``; 0: any free one) of a command that serves HTTP."""
    host_option = click.option(
        "--host",
        default="127.0.0.1",
        show_default=True,
        help=f"The address to listen on; loopback by default ({host_help}).",
    )
    port_option = click.option(
        "--port",
        type=click.IntRange(0, 65535),
        default=None,
        help=f"The port (default {port}{port_help}; 0: any free one).",
    )

    def add(command: F) -> F:
        return host_option(port_option(command))

    return add
