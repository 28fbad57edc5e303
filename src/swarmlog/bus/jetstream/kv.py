"""A JetStream KV bucket (the kill-switch flags, the result cache), read and followed without
creating any consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from swarmlog.bus.subjects import (
    kv_key,
    kv_stream,
)

__all__ = ["JetStreamKV"]


_KV_RESYNC = 2.0
"""Seconds between full reads of a followed bucket (see :meth:`JetStreamKV.watch`)."""


class JetStreamKV:
    """A KV bucket read and followed without creating any consumer: agents may create none
    (see :mod:`swarmlog.bus.permissions`). Keys are listed from the bucket stream's subject
    counts, read one by one (direct get), and followed through a plain subscription to the
    bucket's subjects, on which every put and delete is also published."""

    def __init__(self, kv: Any, nc: Client, js: Any, bucket: str) -> None:
        self._kv = kv
        self._nc = nc
        self._js = js
        self._stream = kv_stream(bucket)
        self._prefix = kv_key(bucket, "")

    async def put(self, key: str, value: bytes) -> None:
        await self._kv.put(key, value)

    async def delete(self, key: str) -> None:
        with contextlib.suppress(nats.js.errors.KeyNotFoundError):
            await self._kv.delete(key)

    async def get(self, key: str) -> bytes | None:
        try:
            entry = await self._kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            return None
        return bytes(entry.value) if entry.value else None

    async def keys(self) -> list[str]:
        """Every key with a message in the bucket (deleted ones included: they hold a marker)."""
        info = await self._js.stream_info(self._stream, subjects_filter=self._prefix + ">")
        subjects = info.state.subjects or {}
        return sorted(s.removeprefix(self._prefix) for s in subjects)

    async def items(self) -> dict[str, bytes]:
        out = {}
        for key in await self.keys():
            value = await self.get(key)
            if value is not None:
                out[key] = value
        return out

    async def watch(self) -> AsyncIterator[tuple[str, bytes | None]]:
        changes: asyncio.Queue[Msg] = asyncio.Queue()

        async def on_change(msg: Msg) -> None:
            changes.put_nowait(msg)

        # Subscribed before the current values are read, so no change falls in between.
        sub = await self._nc.subscribe(self._prefix + ">", cb=on_change)
        known: dict[str, bytes] = {}
        seen: tuple[int, int] | None = None
        try:
            await self._nc.flush()
            while True:
                # Now and every so often, the values as they are: a change published while
                # this connection was away (a revived agent is let back in after its flag is
                # lifted) is not heard, only seen. Any put, delete or expiry moves the bucket
                # stream's last sequence or its count, so while neither moved, one request
                # says nothing changed instead of one per key.
                with contextlib.suppress(nats.errors.Error, nats.js.errors.Error):
                    state = (await self._js.stream_info(self._stream)).state
                    fingerprint = (int(state.last_seq or 0), int(state.messages or 0))
                    if fingerprint != seen:
                        now = await self.items()
                        seen = fingerprint
                        for key in known.keys() - now.keys():
                            yield key, None
                        for key, value in now.items():
                            if known.get(key) != value:
                                yield key, value
                        known = now
                deadline = asyncio.get_running_loop().time() + _KV_RESYNC
                while (left := deadline - asyncio.get_running_loop().time()) > 0:
                    try:
                        msg = await asyncio.wait_for(changes.get(), left)
                    except TimeoutError:
                        break
                    key = msg.subject.removeprefix(self._prefix)
                    operation = (msg.headers or {}).get("KV-Operation")
                    if operation is not None or not msg.data:
                        known.pop(key, None)
                        yield key, None
                    else:
                        known[key] = bytes(msg.data)
                        yield key, known[key]
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
