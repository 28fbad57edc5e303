"""Options that several commands take, declared once so that they read and behave the same."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

__all__ = ["json_option", "seconds_option"]

F = TypeVar("F", bound=Callable[..., Any])

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
"""``--json``: the command prints one JSON document (its contract) instead of a table."""


def seconds_option(flag: str, default: float, help: str) -> Callable[[F], F]:
    """A time limit in seconds, from 1 s to an hour."""
    return click.option(
        flag, default=default, show_default=True, type=click.FloatRange(1, 3600), help=help
    )
