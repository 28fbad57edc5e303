"""The log reader survives a restart of nats-server without skipping or repeating an event."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from swarmlog.bus.jetstream import JetStreamLog
from swarmlog.bus.ports import Append
from swarmlog.bus.server import EmbeddedServer

pytestmark = [
    pytest.mark.integration,
    # nats-py leaves the socket of the connection the restart dropped to the garbage collector.
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


async def test_following_reader_resumes_after_a_server_restart(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path / "nats")
    url = server.start()
    port = urlsplit(url).port
    assert port is not None
    log = await JetStreamLog.open(url, "restart", provision=True)
    seen: list[int] = []
    first, enough = asyncio.Event(), asyncio.Event()

    async def follow() -> None:
        async for batch in log.read(1, follow=True):
            seen.extend(m.seq for m in batch)
            if len(seen) >= 20:
                first.set()
            if len(seen) >= 40:
                enough.set()
                return

    def items(start: int) -> list[Append]:
        return [
            Append(f"swarmlog.restart.a.task.t{i}.result", b"x", msg_id=f"m{i}")
            for i in range(start, start + 20)
        ]

    reader = asyncio.create_task(follow())
    servers = [server]
    try:
        async with asyncio.timeout(90):  # fail, never hang, if the reconnect does not happen
            await log.append_many(items(0))
            # The reader is following (its consumer made, the first 20 read) when the server
            # goes away: what is tested is resuming, not opening during a restart.
            await first.wait()
            server.stop()
            servers.append(EmbeddedServer(tmp_path / "nats", port=port))
            servers[-1].start()
            # The client reconnects by itself; appends go through once it has.
            while True:
                try:
                    await log.append_many(items(20))
                    break
                except Exception:
                    await asyncio.sleep(0.1)
            await enough.wait()
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await log.close()
        for each in servers:
            each.stop()
    assert seen == list(range(1, 41))
