"""When the keeper starts a daemon that exited again (pure): exponential back-off over the
restarts in a row, reset by a stable run.

A daemon that crashes at start would otherwise be restarted in a tight loop, filling its log and
a core; one that ran for a while and then crashed is worth starting again at once.
"""

from __future__ import annotations

__all__ = ["BACKOFF_BASE", "BACKOFF_CAP", "STABLE_RUN", "next_streak", "restart_delay"]

BACKOFF_BASE = 0.5
"""Seconds before the first restart of a streak."""
BACKOFF_CAP = 30.0
"""The longest wait between two restarts."""
STABLE_RUN = 60.0
"""A daemon that ran this many seconds before it exited starts a new streak."""


def next_streak(streak: int, uptime: float) -> int:
    """The restarts in a row once a daemon that ran ``uptime`` seconds exits (``streak``: the
    restarts in a row before it)."""
    return 0 if uptime >= STABLE_RUN else streak + 1


def restart_delay(streak: int) -> float:
    """Seconds to wait after the exit before restarting, for a daemon now at ``streak``."""
    return min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** max(0, streak - 1))
