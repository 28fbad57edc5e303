"""The JetStream doorbell: plain core subscriptions to the subjects it watches."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg

from swarmlog.bus.doorbells import drain_queue

__all__ = ["JetStreamDoorbell"]


class JetStreamDoorbell:
    def __init__(self) -> None:
        self.subs: list[Any] = []
        self._rung: asyncio.Queue[str] = asyncio.Queue(maxsize=1024)

    async def ring(self, msg: Msg) -> None:
        with contextlib.suppress(asyncio.QueueFull):  # a full queue already means "ring"
            self._rung.put_nowait(msg.subject)

    async def wait(self, timeout: float) -> list[str]:
        return await drain_queue(self._rung, timeout)

    async def close(self) -> None:
        for sub in self.subs:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
        self.subs = []
