"""Serving an ASGI app (the console, the metrics) with uvicorn inside the process's own event
loop, beside the operator's NATS client: bound before anything says where it listens, stopped
when asked."""

from __future__ import annotations

import asyncio

import uvicorn
from starlette.types import ASGIApp

from swarmlog.errors import ServerError

__all__ = ["Listening", "listen"]


class Listening:
    """An app being served: its port, and :meth:`until` to serve it until a stop."""

    def __init__(self, server: uvicorn.Server, serving: asyncio.Task[None]) -> None:
        self._server = server
        self._serving = serving
        self.port: int = server.servers[0].sockets[0].getsockname()[1]
        """The port it is bound to (the one asked for, or the free one port 0 found)."""

    async def until(self, stop: asyncio.Event | None) -> None:
        """Serve until ``stop`` is set (``None``: until the server stops by itself, on a
        signal), then close it."""
        try:
            if stop is None:
                await self._serving
            else:
                waiting = asyncio.create_task(stop.wait())
                await asyncio.wait({self._serving, waiting}, return_when=asyncio.FIRST_COMPLETED)
                waiting.cancel()
        finally:
            self._server.should_exit = True
            await self._serving


async def listen(app: ASGIApp, host: str, port: int, what: str) -> Listening:
    """Serve ``app`` on ``host:port`` (0: any free port) once bound; :class:`ServerError`
    naming ``what`` (``"the console"``) when it cannot bind."""
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)

    async def run() -> None:
        try:
            await server.serve()
        except SystemExit:  # uvicorn's way to say it cannot bind (it logged the OS's reason)
            # Caught here: a SystemExit leaving a task would stop the event loop itself.
            raise ServerError(
                f"{what} could not listen on {host}:{port} (in use?): give another --port, or 0"
                " for any free one"
            ) from None

    serving = asyncio.create_task(run())
    while not server.started:
        if serving.done():
            serving.result()  # raises why it stopped
            raise ServerError(f"{what} stopped before it listened on {host}:{port}")
        await asyncio.sleep(0.02)  # uvicorn offers no event for "bound": poll its flag
    return Listening(server, serving)
