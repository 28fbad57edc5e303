"""The namespace's :class:`~swarmlog.bus.ports.SnapshotStore` on a JetStream object store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.js.api import (
    ObjectMeta,
)

from swarmlog.errors import BusError

__all__ = ["JetStreamSnapshots"]


class JetStreamSnapshots:
    """The namespace's :class:`~swarmlog.bus.ports.SnapshotStore`: a JetStream object store,
    each object's record kept as JSON in its description."""

    def __init__(self, store: Any) -> None:
        self._store = store

    async def put(self, name: str, path: Path, meta: dict[str, Any]) -> int:
        with path.open("rb") as data:
            info = await self._store.put(
                name, data, meta=ObjectMeta(name=name, description=json.dumps(meta))
            )
        return int(info.size or 0)

    async def get(self, name: str, path: Path) -> dict[str, Any]:
        try:
            with path.open("wb") as out:
                result = await self._store.get(name, writeinto=out)
        except nats.js.errors.ObjectNotFoundError:
            raise BusError(f"no snapshot {name!r}; see `swarmlog snapshot list`") from None
        meta: dict[str, Any] = json.loads(result.info.description or "{}")
        return meta

    async def catalog(self) -> list[dict[str, Any]]:
        try:
            infos = await self._store.list(ignore_deletes=True)
        except nats.js.errors.NotFoundError:
            return []
        found = [
            {"name": i.name, "size": int(i.size or 0)} | json.loads(i.description or "{}")
            for i in infos
        ]
        return sorted(found, key=lambda s: (s.get("seq", 0), s["name"]))
