"""The ``swarmlog`` command line: click commands, wiring only.

Global options (each also an environment variable): ``--data-dir`` (``SWARMLOG_DATA``),
``--nats-url`` (``SWARMLOG_NATS_URL``), ``--namespace`` (``SWARMLOG_NAMESPACE``). Exit codes: 0
success, 1 the command ran and found a problem, 2 usage or environment error (one line on stderr,
no traceback unless ``--debug``).
"""

from __future__ import annotations

import logging
import sys

import click

from swarmlog.cli.app import LazyGroup, cli
from swarmlog.errors import SwarmlogError

__all__ = ["cli", "main"]

assert isinstance(cli, LazyGroup)
cli.lazy = {
    name: f"swarmlog.cli.{module}:{name}"
    for module, names in {
        "system": ("up", "down", "status", "projector", "keeper"),
        "keys": ("keys",),
        "kill": ("kill", "revive"),
        "submit": ("submit",),
        "escalations": ("escalations",),
        "deadlocks": ("deadlocks",),
        "views": ("workflows", "tasks", "agents", "budgets", "show"),
        "calls": ("calls", "watch"),
        "traces": ("traces",),
        "events": ("events",),
        "replay": ("replay", "audit"),
        "snapshot": ("snapshot",),
        "sim": ("sim",),
        "cluster": ("cluster",),
        "query": ("query",),
        "bench": ("bench",),
        "demo": ("demo",),
        "agent": ("agent",),
        "console": ("console",),
        "metrics": ("metrics",),
    }.items()
    for name in names
}


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``swarmlog`` console script."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.ERROR,  # findings go in the output
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        code = cli.main(args=args, prog_name="swarmlog", standalone_mode=False)
    except SwarmlogError as exc:
        if debug:
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        if debug:
            raise
        hint = ""
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            hint = f" (see `{exc.ctx.command_path} --help`)"
        click.echo(f"error: {exc.format_message()}{hint}".replace("\n", " "), err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except TimeoutError as exc:  # an OSError too, but no path's: a server that did not answer
        if debug:
            raise
        said = str(exc).strip() or "timed out"
        click.echo(
            f"error: {said}: the server did not answer in time; see `swarmlog status`, then try"
            " again",
            err=True,
        )
        sys.exit(2)
    except OSError as exc:
        if debug:
            raise
        click.echo(f"error: {exc.strerror or exc} ({exc.filename or ''}); check the path", err=True)
        sys.exit(2)
    except Exception as exc:  # never a traceback for a user, unless asked
        if debug:
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        click.echo(
            f"error: unexpected {exc.__class__.__name__}: {first} (rerun with --debug for details)",
            err=True,
        )
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
