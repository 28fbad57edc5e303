"""Serving the console: uvicorn in the process's own event loop, beside the operator's client.

``swarmlog console`` runs :func:`serve` in the foreground; ``swarmlog up`` runs the same command
as a daemon of the data dir. Once bound, the server writes where it listens to
``run/console-<namespace>.json`` (the URL without the token), which ``status --json`` reads as
``console_url`` and ``metrics_url``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from pathlib import Path

import uvicorn

from swarmlog.bus.osprocesses import pid_alive
from swarmlog.config import Settings
from swarmlog.console.app import ConsoleState, console_app
from swarmlog.console.auth import load_token
from swarmlog.control.client import Client
from swarmlog.control.system import command_argv
from swarmlog.errors import ServerError
from swarmlog.files import write_atomic

__all__ = ["DEFAULT_PORT", "console_argv", "console_name", "console_url", "login_url", "serve"]

log = logging.getLogger(__name__)

DEFAULT_PORT = 8470
"""``swarmlog console``'s port when none is given (``up`` takes any free one when it is taken)."""


def console_name(settings: Settings) -> str:
    """The console daemon's name (pidfile, log) for the namespace."""
    return f"console-{settings.namespace}"


def _where_file(settings: Settings) -> Path:
    return settings.run_dir / f"{console_name(settings)}.json"


def console_url(settings: Settings) -> str | None:
    """The running console's URL (no token), or ``None`` when none runs for the namespace."""
    try:
        where = json.loads(_where_file(settings).read_text())
        url, pid = str(where["url"]), int(where["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return url if pid_alive(pid) else None


def login_url(settings: Settings) -> str | None:
    """The running console's login link: its URL with the token (a secret: show, never log)."""
    url = console_url(settings)
    if url is None:
        return None
    return f"{url}login?token={load_token(settings.data_dir)}"


def console_argv(settings: Settings, port: int) -> list[str]:
    """The command line of the console daemon (``up`` starts it)."""
    return command_argv(settings, "console", "--port", str(port))


async def serve(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Serve the console on ``host:port`` (0: any free port) until ``stop`` is set."""
    settings.require_data_dir()
    token = load_token(settings.data_dir)
    async with await Client.connect(settings) as client:
        state = ConsoleState(client, settings, token, host)
        app = console_app(state)
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", access_log=False, lifespan="on"
        )
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve())
        while not server.started:
            if serving.done():
                # uvicorn exits (SystemExit) when it cannot bind; it logged the OS's reason.
                with contextlib.suppress(SystemExit):
                    serving.result()
                raise ServerError(
                    f"the console could not listen on {host}:{port} (in use?): give another"
                    " --port, or 0 for any free one"
                )
            await asyncio.sleep(0.02)  # uvicorn offers no event for "bound": poll its flag
        state.port = server.servers[0].sockets[0].getsockname()[1]
        url = f"http://{host}:{state.port}/"
        write_atomic(_where_file(settings), json.dumps({"url": url, "pid": os.getpid()}) + "\n")
        log.warning("console at %s (log in with the link `swarmlog console --url` prints)", url)
        print(f"console at {url}", flush=True)
        if ready is not None:
            ready.set()
        try:
            if stop is None:
                await serving
            else:
                waiting = asyncio.create_task(stop.wait())
                await asyncio.wait({serving, waiting}, return_when=asyncio.FIRST_COMPLETED)
                waiting.cancel()
        finally:
            server.should_exit = True
            await serving
            _where_file(settings).unlink(missing_ok=True)
