"""Work queues on durable JetStream pull consumers, and their deliveries."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
)

from swarmlog.bus.jetstream.connection import TRANSIENT
from swarmlog.bus.ports import Delivery, QueueSpec, StoredMessage

__all__ = ["JetStreamDelivery", "JetStreamQueue", "consumer_config"]


def consumer_config(spec: QueueSpec) -> ConsumerConfig:
    return ConsumerConfig(
        name=spec.name,
        durable_name=spec.name,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=spec.ack_wait,
        max_deliver=spec.max_deliver,
        filter_subject=spec.filter_subject,
        deliver_policy=DeliverPolicy.NEW if spec.new_only else DeliverPolicy.ALL,
    )


@dataclass
class JetStreamDelivery:
    msg: Msg
    message: StoredMessage

    @property
    def num_delivered(self) -> int:
        return int(self.msg.metadata.num_delivered)

    async def ack(self) -> None:
        await self.msg.ack()

    async def in_progress(self) -> None:
        await self.msg.in_progress()

    async def nak(self, delay: float | None = None) -> None:
        await self.msg.nak(delay=delay)

    async def term(self) -> None:
        await self.msg.term()


@dataclass
class JetStreamQueue:
    sub: Any  # nats.js.client.JetStreamContext.PullSubscription
    closed: bool = False

    async def fetch(self, batch: int, timeout: float) -> list[Delivery]:
        try:
            msgs = await self.sub.fetch(batch, timeout=timeout)
        except TimeoutError:  # nats-py raises its own subclass, or a bare one near the deadline
            return []
        except TRANSIENT:  # the server is reloading its logins: nothing was taken, ask again
            await asyncio.sleep(0.01)
            return []
        return [
            JetStreamDelivery(m, StoredMessage(m.metadata.sequence.stream, m.subject, m.data))
            for m in msgs
        ]

    async def waiting(self) -> int:
        # Only what the server holds undelivered. What it delivered after a fetch gave up is
        # in this subscription's buffer, which the next fetch of the level takes first; its
        # count is no guide (each fetch that gives up leaves the server's late "request
        # timeout" status there, and an empty level would be waited on).
        try:
            info = await self.sub.consumer_info()
        except (TimeoutError, NatsError, *TRANSIENT):  # no answer: nothing known to be there
            return 0
        return int(info.num_pending or 0)

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self.sub.unsubscribe()
