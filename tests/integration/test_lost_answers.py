"""A JetStream API request whose connection is reset under it (what a reload of the server's
logins can do to a client: nine `agent start`s at once, each reloading, and one's
`stream_info` was never answered) is asked again on the new connection; a request the server
is only slow to answer still times out. Against a real nats-server, through a TCP proxy that
resets the connection, or swallows the request, at the moment the request goes out."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import nats.errors
import pytest
from nats.aio.client import Client

from swarmlog.bus.jetstream import JetStreamLog
from swarmlog.bus.jetstream.connection import Patient, connect
from swarmlog.bus.subjects import stream_name

pytestmark = pytest.mark.integration

STREAM_INFO = b"$JS.API.STREAM.INFO."


@dataclass
class Proxy:
    """Forwards a client's bytes to the server; armed, it meets the next bytes holding
    ``pattern`` with ``action``: ``reset`` closes both sides, ``swallow`` drops them and goes
    on. ``gone``: the reset also stops the listening (a server that stays away)."""

    upstream: tuple[str, int]
    action: str | None = None
    pattern: bytes = STREAM_INFO
    gone: bool = False
    listener: asyncio.Server | None = None
    met: int = 0
    connections: int = 0
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self.writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    if up and self.action and self.pattern in data:
                        action, self.action = self.action, None
                        self.met += 1
                        if action == "reset":
                            if self.gone and self.listener is not None:
                                self.listener.close()  # reconnects are refused from now on
                            for w in (writer, up_writer):
                                w.transport.abort()
                                w.close()
                            return
                        continue  # swallowed: the server never hears it
                    dst.write(data)
                    await dst.drain()
            dst.close()

        # Ends with the test: a handler cancelled at teardown has nothing left to say.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))


@dataclass
class Through:
    """A client connected to the server through a :class:`Proxy`."""

    proxy: Proxy
    nc: Client
    stream: str
    connected: int  # connections the proxy had once the client was in (connect() probes first)

    def js(self) -> Patient:
        return Patient(self.nc.jetstream(timeout=1.0), self.nc)


@pytest.fixture
async def through(nats_server: str) -> AsyncIterator[Through]:
    namespace = f"t{uuid.uuid4().hex[:10]}"
    log = await JetStreamLog.open(nats_server, namespace, provision=True)
    await log.close()
    parts = urlsplit(nats_server)
    assert parts.hostname is not None
    assert parts.port is not None
    proxy = Proxy((parts.hostname, parts.port))
    server = proxy.listener = await asyncio.start_server(proxy.serve, "127.0.0.1", 0)
    nc = await connect(f"nats://127.0.0.1:{server.sockets[0].getsockname()[1]}")
    try:
        yield Through(proxy, nc, stream_name(namespace), proxy.connections)
    finally:
        await nc.close()
        server.close()
        for w in proxy.writers:
            w.transport.abort()
            w.close()


async def test_a_request_whose_connection_is_reset_is_asked_again(through: Through) -> None:
    through.proxy.action = "reset"
    info = await through.js().stream_info(through.stream)
    assert info.config.name == through.stream
    assert through.proxy.met == 1  # the first request was lost with its connection
    assert through.proxy.connections == through.connected + 1  # and asked again on the new one


async def test_a_request_the_server_never_answers_still_times_out(through: Through) -> None:
    through.proxy.action = "swallow"
    with pytest.raises(nats.errors.TimeoutError):
        await through.js().stream_info(through.stream)
    assert through.proxy.met == 1  # asked once
    assert through.proxy.connections == through.connected  # and no reconnect


async def test_a_keys_put_whose_connection_is_reset_is_not_asked_again(through: Through) -> None:
    raw = through.nc.jetstream(timeout=1.0)
    bucket = f"{through.stream}-keys"
    await raw.create_key_value(bucket=bucket)
    kv = Patient(await raw.key_value(bucket), through.nc)
    through.proxy.action, through.proxy.pattern = "reset", f"$KV.{bucket}.".encode()
    with pytest.raises(nats.errors.TimeoutError):
        await kv.put("flag", b"1")
    assert through.proxy.met == 1
    assert through.proxy.connections == through.connected + 1  # reconnected; the put not sent again


async def test_a_server_that_stays_away_ends_the_asking(through: Through) -> None:
    through.proxy.action, through.proxy.gone = "reset", True
    async with asyncio.timeout(60):  # a hang guard: the asking ends well before it
        with pytest.raises(nats.errors.TimeoutError):
            await through.js().stream_info(through.stream)
    assert through.proxy.met == 1  # asked once: no connection came back to ask again on
