"""The JetStream doorbell: plain core subscriptions to the bell subjects of the events it
watches, where the stream republishes each event's headers once stored (see
:func:`~swarmlog.bus.subjects.bell_prefix`); a ring names the event's own subject."""

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
        subject = (msg.headers or {}).get("Nats-Subject")
        if subject is None:
            return  # not the stream's republish (nobody else may publish here)
        with contextlib.suppress(asyncio.QueueFull):  # a full queue already means "ring"
            self._rung.put_nowait(subject)

    async def wait(self, timeout: float) -> list[str]:
        return await drain_queue(self._rung, timeout)

    async def close(self) -> None:
        for sub in self.subs:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
        self.subs = []
