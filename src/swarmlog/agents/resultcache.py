"""The result cache (pure part): keys and entries.

Identical work, the same role and model tier on the same input, can be answered from the
namespace's cache bucket instead of running (and paying for) the handler again. The answer is a
normal ``result`` event with ``cached`` set, so the log says which answers were not computed.
An agent opts in with ``cache_ttl`` (seconds an answer stays good).
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

__all__ = ["CacheEntry", "cache_key", "fresh"]


class CacheEntry(msgspec.Struct, frozen=True):
    """What the cache holds for one key."""

    output: Any
    at: int
    """When it was computed (ns since the epoch)."""
    model: str = ""


def cache_key(role: str, model: str, task_input: Any) -> str:
    """The cache key of a task: a digest of role, model and the canonical JSON of its input."""
    canonical = msgspec.json.encode(task_input, order="sorted")
    digest = hashlib.sha256(f"{role}\x00{model}\x00".encode() + canonical).hexdigest()
    return f"result.{digest}"


def fresh(entry: CacheEntry, *, now: int, ttl: float) -> bool:
    """Whether ``entry`` may still answer at ``now`` (an entry from the future is not trusted)."""
    return 0 <= now - entry.at <= ttl * 1e9
