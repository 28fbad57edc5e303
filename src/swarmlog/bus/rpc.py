"""Request/reply over NATS (outside the stream): JSON in, JSON out.

A service answers each request onto its reply subject, which for every agent is an inbox the
server mapped back into the agent's own account (see :mod:`swarmlog.bus.permissions`): an agent
cannot have a service write anywhere it could not write itself. The server also says who asks
(:func:`~swarmlog.bus.permissions.caller_of`), so a handler can limit work per caller. Requests
are answered concurrently: a slow one holds up no other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from swarmlog.bus.permissions import REQUEST_INFO_HEADER, caller_of
from swarmlog.errors import BusError

__all__ = ["MAX_IN_FLIGHT", "Handler", "request", "serve"]

log = logging.getLogger(__name__)

Handler = Callable[[Any, str], Awaitable[Any]]
"""Takes the decoded request and who sent it (an agent id, or ``operator``); returns a
JSON-able reply."""

MAX_IN_FLIGHT = 32
"""Requests one service answers at once; more are told to come back (never queued unbounded)."""

_MAX_REPLY = 900_000  # below NATS's default 1 MiB max payload


def _error(code: str, message: str) -> bytes:
    return msgspec.json.encode({"error": {"code": code, "message": message}})


async def serve(
    client: Client, subject: str, handler: Handler, *, max_in_flight: int = MAX_IN_FLIGHT
) -> Subscription:
    """Answer requests on ``subject`` with ``handler``; errors become ``{"error": ...}``."""
    in_flight: set[asyncio.Task[None]] = set()

    async def answer(msg: Msg, caller: str) -> None:
        try:
            request_body = msgspec.json.decode(msg.data) if msg.data else None
            reply: Any = await handler(request_body, caller)
            data = msgspec.json.encode(reply)
        except Exception as exc:  # a bad request must never take the service down
            data = _error(getattr(exc, "code", "SWL000"), str(exc))
        if len(data) > _MAX_REPLY:
            data = _error("SWL411", "reply too large; add a LIMIT")
        try:
            await msg.respond(data)
        except nats.errors.Error as exc:  # the asker went away: nothing to do
            log.debug("could not answer a request on %s: %s", subject, exc)

    async def on_request(msg: Msg) -> None:
        if not msg.reply:
            return  # nobody to answer
        caller = caller_of((msg.headers or {}).get(REQUEST_INFO_HEADER))
        if caller == "unknown":
            await msg.respond(_error("SWL412", "requests are answered for swarmlog logins only"))
            return
        if len(in_flight) >= max_in_flight:
            await msg.respond(_error("SWL413", f"{subject} is busy; try again shortly"))
            return
        task = asyncio.ensure_future(answer(msg, caller))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)

    return await client.subscribe(subject, cb=on_request, queue="swarmlog-rpc")


async def request(client: Client, subject: str, body: Any, timeout: float) -> Any | None:
    """Ask ``subject``; ``None`` when nobody serves it, :class:`BusError` when no reply comes."""
    try:
        msg = await client.request(subject, msgspec.json.encode(body), timeout=timeout)
    except nats.errors.NoRespondersError:
        return None
    except nats.errors.TimeoutError:
        raise BusError(
            f"no reply on {subject} within {timeout:g} s; the service is busy or stuck (see its"
            " log under the data dir's logs/)"
        ) from None
    return msgspec.json.decode(msg.data)
