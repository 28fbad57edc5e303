"""The ids of the events applied lately, complete from a horizon on (pure).

Every event's id must be new (a repeat is quarantined ``duplicate_id``), and asking storage costs
a DuckDB query per batch, most of a small batch's time. An id embeds its event's
``occurred_at``, so a repeat of an id is an event dated the same instant. The projector knows
every id it applies; :class:`RecentIds` keeps those dated at or after a **horizon**, so for
an event dated from the horizon on the answer is in memory, exact: storage is asked only about
events dated before it (a sender whose clock lags, a replay of old events).

It starts with the horizon at the millisecond after the latest ``occurred_at`` storage holds
(ids name only their millisecond; then it holds nothing and misses nothing) and keeps at most
``cap`` ids: past that, the oldest second of them goes, and the horizon moves to the end of
that second.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

__all__ = ["MS", "RECENT_IDS", "RecentIds", "millisecond_range"]

RECENT_IDS = 50_000
"""Ids kept at most (about 6 MB): a few seconds of a busy swarm's events."""
_SECOND = 1_000_000_000
MS = 1_000_000
"""Nanoseconds in the millisecond an event id names."""


def millisecond_range(times: Iterable[int]) -> tuple[int, int]:
    """The whole milliseconds (ns, inclusive) the given times fall in, from first to last: a
    repeat of an id dated at any of them is dated within this range."""
    ordered = sorted(times)
    return ordered[0] // MS * MS, ordered[-1] // MS * MS + MS - 1


class RecentIds:
    """Ids of applied events dated at or after :attr:`horizon` (ns): all of them."""

    def __init__(self, horizon: int, cap: int = RECENT_IDS) -> None:
        if horizon % MS:
            # An id names its millisecond: a horizon inside one would leave the ids dated
            # before it in that millisecond to neither side.
            raise ValueError(f"the horizon {horizon} is not on a millisecond")
        self.horizon = horizon
        self.cap = cap
        self._by_second: dict[int, set[str]] = {}
        self._seconds: list[int] = []  # a heap of the keys of _by_second
        self._size = 0

    @classmethod
    def after(cls, latest: int | None, cap: int = RECENT_IDS) -> RecentIds:
        """Empty, with its horizon at the millisecond after ``latest`` (the latest
        ``occurred_at`` storage holds; ``None``: storage holds no event)."""
        return cls(0 if latest is None else (latest // MS + 1) * MS, cap)

    def covers(self, occurred_at: int) -> bool:
        """Whether every applied event dated ``occurred_at`` is known here."""
        return occurred_at >= self.horizon

    def seen(self, event_id: str, occurred_at: int) -> bool:
        """Whether ``event_id`` (dated ``occurred_at``, which :meth:`covers`) was applied."""
        ids = self._by_second.get(occurred_at // _SECOND)
        return ids is not None and event_id in ids

    def add(self, applied: Iterable[tuple[str, int]]) -> None:
        """Remember events just committed, as ``(id, occurred_at)``; those dated before the
        horizon are storage's to answer for."""
        for event_id, occurred_at in applied:
            if occurred_at < self.horizon:
                continue
            second = occurred_at // _SECOND
            ids = self._by_second.get(second)
            if ids is None:
                ids = self._by_second[second] = set()
                heapq.heappush(self._seconds, second)
            if event_id not in ids:
                ids.add(event_id)
                self._size += 1
        while self._size > self.cap and self._seconds:
            oldest = heapq.heappop(self._seconds)
            self._size -= len(self._by_second.pop(oldest))
            self.horizon = max(self.horizon, (oldest + 1) * _SECOND)

    def __len__(self) -> int:
        return self._size
