"""The keeper's back-off (pure): doubling restarts in a row, capped, reset by a stable run."""

from __future__ import annotations

from swarmlog.control.restarts import (
    BACKOFF_BASE,
    BACKOFF_CAP,
    STABLE_RUN,
    next_streak,
    restart_delay,
)


def test_a_crash_loop_backs_off_doubling_up_to_the_cap() -> None:
    streak, delays = 0, []
    for _ in range(12):
        streak = next_streak(streak, uptime=0.2)
        delays.append(restart_delay(streak))
    assert delays[:4] == [BACKOFF_BASE, 2 * BACKOFF_BASE, 4 * BACKOFF_BASE, 8 * BACKOFF_BASE]
    assert delays == sorted(delays)
    assert delays[-1] == BACKOFF_CAP


def test_a_stable_run_starts_a_new_streak() -> None:
    assert next_streak(7, uptime=STABLE_RUN) == 0
    assert restart_delay(next_streak(7, uptime=STABLE_RUN + 1)) == BACKOFF_BASE
    assert next_streak(7, uptime=STABLE_RUN - 1) == 8
