"""Retry with exponential backoff and jitter (pure).

A :class:`RetryPolicy` is validated when built; :meth:`RetryPolicy.next_delay` is a pure function
of the attempt number and an injected random draw, so the runtime and the simulation agree.
Whether to retry at all is a property of the error (``retryable``), not a special case in a handler.
"""

from __future__ import annotations

import math

from swarmlog.agents.policy.validation import Checked, setting
from swarmlog.agents.policy.values import Value

__all__ = ["RetryDecision", "RetryPolicy"]


class RetryDecision(Value):
    """What to do after a failed attempt: retry after ``delay`` seconds, or give up."""

    retry: bool
    delay: float = 0.0
    reason: str = ""


class RetryPolicy(Checked):
    """How a failed task is retried."""

    WHAT = "retry policy"

    initial_delay: float = setting(0.5, "must be > 0", above=0)
    """Seconds before the first retry."""
    multiplier: float = setting(2.0, "must be >= 1", at_least=1)
    """Each further retry waits this many times longer."""
    max_delay: float = setting(60.0, "must be >= initial_delay", at_least="initial_delay")
    """No retry waits longer than this."""
    max_attempts: int = setting(5, "must be between 1 and 1000", at_least=1, at_most=1000)
    """Attempts in all, the first one included; 1 means never retry."""
    jitter: float = setting(0.2, "must be between 0 and 1", at_least=0, at_most=1)
    """Fraction of the delay randomised (0 = none): spreads retries of many tasks apart."""

    def next_delay(self, attempt: int, draw: float) -> float:
        """Seconds to wait after failed ``attempt`` (1-based); ``draw`` is uniform in [0, 1).

        The delay grows geometrically, is capped at ``max_delay``, then scaled by a factor in
        ``[1 - jitter, 1]`` chosen by ``draw`` (jitter only shortens, so the cap holds).
        """
        if attempt < 1:
            raise ValueError("attempts are counted from 1")
        if not 0 <= draw < 1:
            raise ValueError("draw must be in [0, 1)")
        exponent = attempt - 1
        if self.multiplier > 1:
            # Past this many doublings the cap applies anyway; stops float overflow.
            enough = math.log(self.max_delay / self.initial_delay) / math.log(self.multiplier)
            exponent = min(exponent, math.ceil(enough) + 1)
        base = min(self.initial_delay * self.multiplier**exponent, self.max_delay)
        return base * (1 - self.jitter * draw)

    def decide(self, attempt: int, *, retryable: bool, draw: float) -> RetryDecision:
        """After failed ``attempt``: retry (with its delay) or give up, and why."""
        if not retryable:
            return RetryDecision(False, reason="the error is not retryable")
        if attempt >= self.max_attempts:
            return RetryDecision(False, reason=f"{attempt} of {self.max_attempts} attempts failed")
        return RetryDecision(True, self.next_delay(attempt, draw))
