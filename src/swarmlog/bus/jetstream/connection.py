"""Connecting to NATS: the login, a deadline on the first connection, a probe of the broker's
permissions, and JetStream calls that ride out the moment the server reloads its logins.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client

from swarmlog.bus.permissions import Login
from swarmlog.errors import BusError

__all__ = ["ASKED_AGAIN", "TRANSIENT", "Patient", "connect", "refusals"]


log = logging.getLogger(__name__)

_LOGIN_REFUSALS = 3  # refused logins in a row that make a refusal final


TRANSIENT = (
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.NoStreamResponseError,
    nats.errors.NoRespondersError,
)
"""What the server answers for the moment it re-registers an account's JetStream API (while it
reloads its logins: `keys issue`, `kill`, `revive`): nobody took the request, so nothing was
done, and asking again is safe."""
_PATIENCE = 2.0  # seconds a call keeps retrying through such a moment
_LOST_ANSWERS = 3  # calls made again whose answer went with a reset connection, at most
ASKED_AGAIN = frozenset(
    {
        # Reads: asked twice, they answer alike.
        "stream_info",
        "consumer_info",
        "consumers_info",
        "get_msg",
        "get_last_msg",
        "key_value",
        "object_store",
        "get",
        # Made from a config: asked again with the same one, the server answers with what the
        # first made (a durable consumer, a stream, a bucket), or refuses as a changed config.
        "add_stream",
        "update_stream",
        "create_key_value",
        "create_object_store",
        "add_consumer",
        # Its second asking finds nothing to delete, which its callers take as done.
        "delete_consumer",
    }
)
"""The JetStream calls made again when their answer was lost with a reset connection. Not
the writes whose effect depends on when they land: a ``publish`` (its second ack would call the
publisher's own event a duplicate, or refuse a claim's expected sequence the first moved on; a
lost ack stays the publisher's "not acknowledged"), a key's ``put`` or ``delete`` (a stale one
landing after a newer write would undo it: a revive's delete after a kill's put). An object
store's ``get`` and ``put`` stream a file part of which is already read or written: its
:class:`Patient` is given no client, so none of its calls is made again."""


class Patient:
    """A nats-py JetStream context whose calls ride out a reload: a call that found no responder
    is made again, with growing pauses, for up to :data:`_PATIENCE` seconds; one of
    :data:`ASKED_AGAIN` that timed out because the connection was reset under it is made again
    on the new connection.

    A reload that changes the logins can close a client's connection (seen: nine `agent start`s
    at once, each reloading, and one's `stream_info` got no answer: nats-py reconnects on its
    own, but a request in flight on the old connection is never answered and times out). Such
    a timeout is told apart from a slow server by ``nc``: only when the client reconnected since
    the call began and is connected now is it made again, at most :data:`_LOST_ANSWERS` times.
    A server that is only slow still raises its timeout, and so does one that stays away (a
    call is never held longer than its own timeout for a connection to come back)."""

    def __init__(self, inner: Any, nc: Client | None = None) -> None:
        self._inner = inner
        self._nc = nc

    def _reconnects(self) -> int:
        assert self._nc is not None
        return int(self._nc.stats["reconnects"])

    def _lost(self, reconnects: int) -> bool:
        """Whether the client reconnected since the call began, and is connected now: the
        call's answer went with the old connection, and the new one can take it again. A
        client still reconnecting when its call timed out is not waited for: its server may be
        gone, and the caller's own deadline says how long that may take."""
        assert self._nc is not None
        return self._reconnects() != reconnects and self._nc.is_connected

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        # Decided once per call, not per try: a publish (every event) reads no counter.
        again = self._nc is not None and name in ASKED_AGAIN

        async def patient(*args: Any, **kwargs: Any) -> Any:
            delay, waited, lost = 0.005, 0.0, 0
            while True:
                reconnects = self._reconnects() if again else 0
                try:
                    return await attr(*args, **kwargs)
                except TRANSIENT:
                    if waited >= _PATIENCE:
                        raise
                except nats.errors.TimeoutError:
                    if not again or lost >= _LOST_ANSWERS or not self._lost(reconnects):
                        raise
                    lost += 1
                    log.info("nats: %s lost its answer to a reconnect; asking again", name)
                    continue
                await asyncio.sleep(delay)
                waited += delay
                delay = min(delay * 2, 0.25)

        return patient


async def _quiet_error(exc: Exception) -> None:
    # nats-py prints connection errors to stderr by default; swarmlog reports them itself. A
    # permissions violation is worth a warning: the broker refused something this process tried.
    if "permissions violation" in str(exc).lower():
        log.warning("nats refused: %s", exc)
    else:
        log.debug("nats: %s", exc)


async def _nothing_listens(url: str) -> bool:
    """Whether every server in ``url`` refuses TCP connections (so waiting cannot help)."""
    for server in url.split(","):
        parts = urlsplit(server.strip())
        try:
            host, port = parts.hostname, parts.port
        except ValueError:
            return False
        if host is None or port is None:
            return False
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
        except ConnectionRefusedError:
            continue
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return False
    return True


async def connect(
    url: str,
    *,
    name: str = "swarmlog",
    timeout: float = 5.0,
    login: Login | None = None,
    **opts: Any,
) -> Client:
    """Connect to NATS at ``url`` (as ``login``, when given); raises :class:`BusError` with what to
    do when the server is unreachable or refuses the login.

    nats-py retries a first connection without end, so it gets a deadline, and a URL nothing
    listens on fails at once.
    """
    unreachable = BusError(
        f"cannot reach NATS at {url}; start it with `swarmlog up --detach` or pass a reachable"
        " --nats-url"
    )
    if await _nothing_listens(url):
        raise unreachable
    if login is not None:
        opts |= {"nkeys_seed_str": login.seed, "inbox_prefix": login.inbox_prefix}
    refused = asyncio.Event()
    refusals_seen = 0

    async def on_error(exc: Exception) -> None:
        nonlocal refusals_seen
        if "authorization" in str(exc).lower():
            # nats-py would retry a refused login until the deadline. One refusal can be the
            # server reloading its logins at that moment; three in a row (0.5 s) are an answer.
            refusals_seen += 1
            if refusals_seen >= _LOGIN_REFUSALS:
                refused.set()
        await _quiet_error(exc)

    connecting = asyncio.ensure_future(
        nats.connect(
            url,
            name=name,
            connect_timeout=max(1, round(timeout)),
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.25,
            error_cb=on_error,
            **opts,
        )
    )
    told = asyncio.ensure_future(refused.wait())
    try:
        await asyncio.wait({connecting, told}, timeout=timeout, return_when="FIRST_COMPLETED")
    finally:
        told.cancel()
    if connecting.done() and connecting.exception() is None:
        client = connecting.result()
        if not refused.is_set():
            return client
        await client.close()
    else:
        connecting.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await connecting
    if refused.is_set() or refusals_seen:
        who = login.inbox_prefix.removeprefix("_INBOX_") if login else "an anonymous client"
        raise BusError(
            f"NATS at {url} refused the login of {who}: its key is unknown to the server,"
            " or it was killed, revoked or expired; see `swarmlog keys show`"
        )
    raise unreachable


async def refusals(url: str, login: Login, subjects: Sequence[str]) -> list[str]:
    """Log in as ``login`` and publish to each of ``subjects``; the ones the server refuses, as
    it says so (a probe of the broker's permissions, for the demo and for operators)."""
    said: list[str] = []
    all_said = asyncio.Event()

    def refused() -> list[str]:
        return [
            s
            for s in subjects
            if any(f'permissions violation for publish to "{s.lower()}"' in e for e in said)
        ]

    async def on_error(exc: Exception) -> None:
        said.append(str(exc).lower())
        if len(refused()) == len(subjects):
            all_said.set()

    nc = await nats.connect(
        url,
        nkeys_seed_str=login.seed,
        inbox_prefix=login.inbox_prefix,
        error_cb=on_error,
        allow_reconnect=False,
    )
    try:
        for subject in subjects:
            await nc.publish(subject, b"{}")
        await nc.flush()
        # The server answers each refused publish before the flush's pong, but nats-py reports
        # errors from a task of its own: give them a moment to arrive.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_said.wait(), 2.0)
    finally:
        await nc.close()
    return refused()
