"""Request/reply over NATS (outside the stream): JSON in, JSON out."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from swarmlog.errors import BusError

__all__ = ["Handler", "request", "serve"]

log = logging.getLogger(__name__)

Handler = Callable[[Any], Awaitable[Any]]
"""Takes the decoded request, returns a JSON-able reply."""

_MAX_REPLY = 900_000  # below NATS's default 1 MiB max payload


async def serve(client: Client, subject: str, handler: Handler) -> Subscription:
    """Answer requests on ``subject`` with ``handler``; errors become ``{"error": ...}``."""

    async def on_request(msg: Msg) -> None:
        try:
            request_body = msgspec.json.decode(msg.data) if msg.data else None
            reply: Any = await handler(request_body)
        except Exception as exc:  # a bad request must never take the service down
            reply = {"error": {"code": getattr(exc, "code", "SWL000"), "message": str(exc)}}
        data = msgspec.json.encode(reply)
        if len(data) > _MAX_REPLY:
            data = msgspec.json.encode(
                {"error": {"code": "SWL411", "message": "reply too large; add a LIMIT"}}
            )
        await msg.respond(data)

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
