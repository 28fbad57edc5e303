"""Serving the console: uvicorn in the process's own event loop, beside the operator's client.

``swarmlog console`` runs :func:`serve` in the foreground; ``swarmlog up`` runs the same command
as a daemon of the data dir. Once bound, the server writes where it listens to
``run/console-<namespace>.json`` (the URL without the token), which ``status --json`` reads as
``console_url`` and ``metrics_url``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os

from swarmlog.config import Settings
from swarmlog.console.app import ConsoleState, console_app
from swarmlog.console.auth import load_token
from swarmlog.console.live import Hub
from swarmlog.control.client import Client
from swarmlog.control.http import listen
from swarmlog.control.system import CONSOLE_PORT, console_url, console_where
from swarmlog.errors import ServerError
from swarmlog.files import write_atomic
from swarmlog.observability.metrics import metrics_app

__all__ = ["login_url", "serve"]

log = logging.getLogger(__name__)

_WHAT = "the console"


def login_url(settings: Settings) -> str | None:
    """The running console's login link: its URL with the token (a secret: show, never log)."""
    url = console_url(settings)
    if url is None:
        return None
    return f"{url}login?token={load_token(settings.data_dir)}"


async def serve(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Serve the console on ``host:port`` until ``stop`` is set; ``port`` 0 is any free port,
    ``None`` is 8470, or any free port when that one is taken."""
    settings.require_data_dir()
    token = load_token(settings.data_dir)
    async with await Client.connect(settings) as client:
        state = ConsoleState(client, settings, token, host)
        app = console_app(state, metrics=metrics_app(client))
        try:
            listening = await listen(app, host, CONSOLE_PORT if port is None else port, _WHAT)
        except ServerError:
            if port is not None:
                raise
            listening = await listen(app, host, 0, _WHAT)  # 8470 is taken: any free one
        state.port = listening.port
        state.hub = Hub(client)
        await state.hub.start()
        url = f"http://{host}:{state.port}/"
        write_atomic(console_where(settings), json.dumps({"url": url, "pid": os.getpid()}) + "\n")
        log.warning("console at %s (log in with the link `swarmlog console --url` prints)", url)
        print(f"console at {url}", flush=True)
        if ready is not None:
            ready.set()
        try:
            await listening.until(stop)
        finally:
            await state.hub.stop()
            console_where(settings).unlink(missing_ok=True)
