"""The state hash: one SHA-256 over every projection table, rows ordered by primary key.

Computed the same way over DuckDB (``ProjectionStore.state_hash``) and over an in-memory
:class:`~swarmlog.projections.state.State`, so a replay, a live projection and the pure reference
fold can be compared.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import msgspec

from swarmlog.projections.state import State
from swarmlog.projections.tables import TABLES, Table

__all__ = ["StateHasher", "state_hash"]

_encoder = msgspec.msgpack.Encoder()


class StateHasher:
    """Feed tables in :data:`TABLES` order, each with its rows in key order."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()

    def table(self, t: Table, rows: Iterable[tuple[Any, ...]]) -> None:
        update = self._digest.update
        update(_encoder.encode(t.name))
        for row in rows:
            update(_encoder.encode(row))

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def state_hash(state: State) -> str:
    """The state hash of an in-memory state (the reference projection)."""
    hasher = StateHasher()
    for t in TABLES:
        rows = state.rows[t.name]
        hasher.table(t, (tuple(rows[k][c] for c in t.column_names) for k in sorted(rows)))
    return hasher.hexdigest()
