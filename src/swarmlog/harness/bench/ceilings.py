"""The raw ceilings a benchmark is compared with in the same run: PyNaCl verify, nats-py
``publish_async`` and ordered consume, each with nothing of swarmlog around it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from nats.js.api import ConsumerConfig, DeliverPolicy

from swarmlog.bus.jetstream import JetStreamLog
from swarmlog.bus.subjects import stream_subjects, task_subject
from swarmlog.schemas.codec import decode_envelope, decode_signed
from swarmlog.schemas.signing import EVENT_DOMAIN, verify_signature

__all__ = ["publish_windowed", "raw_consume_rate", "raw_publish_rate", "raw_verify_rate"]


def raw_verify_rate(sample: bytes, *, threads: int = 1, seconds: float = 1.0) -> float:
    """Signatures verified per second by PyNaCl on ``threads`` threads (no decoding, no state).

    Each is checked over the sample's body: for a batch member, whose signature is over its
    batch's root, the check fails, at the same cost (libsodium computes the whole equation
    before it compares)."""
    signed = decode_signed(sample)
    signer = decode_envelope(signed.body).signer

    def spin(deadline: float) -> int:
        count = 0
        while time.perf_counter() < deadline:
            for _ in range(100):
                verify_signature(signer, EVENT_DOMAIN, signed.body, signed.signature)
            count += 100
        return count

    with ThreadPoolExecutor(threads) as pool:
        start = time.perf_counter()
        counts = list(pool.map(spin, [start + seconds] * threads))
        elapsed = time.perf_counter() - start
    return sum(counts) / elapsed


async def publish_windowed(
    js: Any, items: Iterable[tuple[str, bytes, dict[str, str] | None]], window: int = 256
) -> None:
    """``publish_async`` every ``(subject, data, headers)``, at most ``window`` unacknowledged."""
    pending: list[asyncio.Future[Any]] = []
    for subject, data, headers in items:
        pending.append(await js.publish_async(subject, data, headers=headers))
        if len(pending) >= window:
            await pending.pop(0)
    await asyncio.gather(*pending)


async def raw_publish_rate(
    log: JetStreamLog, namespace: str, n: int, size: int, window: int = 256
) -> float:
    """Unsigned ``publish_async`` of ``size``-byte messages with a bounded window."""
    data = b"x" * size
    items = ((task_subject(namespace, "raw", f"t{i}", "raw"), data, None) for i in range(n))
    start = time.perf_counter()
    await publish_windowed(log.client.jetstream(), items, window)
    return n / (time.perf_counter() - start)


async def raw_consume_rate(log: JetStreamLog, namespace: str, n: int) -> float:
    """nats-py ordered consumer (callback) reading ``n`` messages from the stream's start."""
    js = log.client.jetstream()
    done = asyncio.Event()
    count = 0

    async def on_msg(msg: Any) -> None:
        nonlocal count
        count += 1
        if count >= n:
            done.set()

    start = time.perf_counter()
    sub = await js.subscribe(
        stream_subjects(namespace)[0],
        cb=on_msg,
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    await asyncio.wait_for(done.wait(), timeout=600)
    elapsed = time.perf_counter() - start
    await sub.unsubscribe()
    return n / elapsed
