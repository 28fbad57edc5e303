"""Circuit breakers (pure): stop sending work to a role that keeps failing, probe it after a
cool-down, and take it back when it works again.

A breaker is ``closed`` (work flows), ``open`` (no work: it goes to other roles with the
capability, or waits), or ``half_open`` (after ``cooldown`` seconds open, up to ``probes`` tasks
are let through as probes). It opens on ``consecutive_failures`` failures in a row, or when at
least ``min_calls`` outcomes of the last ``window`` are in and ``failure_rate`` of them failed.
In half-open, ``probes`` successes close it and any failure opens it again. An outcome that
says nothing of the role's health (``None``: a permanent failure, the work's own bad input or the
handler's bug on it) counts for nothing: one bad input does not open a circuit, and a probe it
answers is let go, neither success nor failure. Time is an input
(``now``, nanoseconds), so the logic is a function of its inputs and can be property-tested.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from swarmlog.agents.policy.validation import Checked, setting
from swarmlog.agents.policy.values import Value

__all__ = ["Breaker", "BreakerPolicy", "record", "routable", "send_through"]

State = Literal["closed", "open", "half_open"]


class BreakerPolicy(Checked):
    """When a breaker opens, and how it is taken back (see the module's docstring)."""

    WHAT = "breaker policy"

    consecutive_failures: int = setting(5, "must be at least 1", at_least=1)
    failure_rate: float = setting(0.5, "must be in (0, 1]", above=0, at_most=1)
    window: int = 20
    min_calls: int = setting(10, "must be 1..window", at_least=1, at_most="window")
    cooldown: float = setting(30.0, "must be >= 0 seconds", at_least=0)
    """Seconds a breaker stays open before it lets a probe through."""
    probes: int = setting(1, "must be at least 1", at_least=1)
    """Probes let through at once in half-open, and successes needed to close."""


class Breaker(Value):
    state: State = "closed"
    recent: tuple[bool, ...] = ()
    """The last outcomes while closed, oldest first (``True``: success)."""
    consecutive: int = 0
    """Failures in a row while closed."""
    opened_at: int | None = None
    probing: int = 0
    """Probes let through and not yet answered (half-open)."""
    probe_successes: int = 0


def record(
    breaker: Breaker, ok: bool | None, *, now: int, policy: BreakerPolicy
) -> tuple[Breaker, str]:
    """The breaker after an outcome (``True`` success, ``False`` failure, ``None`` neither: a
    permanent failure), and why its state changed ("" when it did not)."""
    if breaker.state == "open":
        return breaker, ""  # work that started before it opened: already accounted for
    if breaker.state == "half_open":
        probing = max(0, breaker.probing - 1)
        if ok is None:  # the probe says nothing: let another one through
            return replace(breaker, probing=probing), ""
        if not ok:
            return Breaker("open", opened_at=now), "a probe failed"
        successes = breaker.probe_successes + 1
        if successes >= policy.probes:
            return Breaker(), f"{successes} probe(s) succeeded"
        return replace(breaker, probing=probing, probe_successes=successes), ""
    if ok is None:
        return breaker, ""  # neither resets the failures in a row nor adds to them
    recent = (*breaker.recent, ok)[-policy.window :]
    consecutive = 0 if ok else breaker.consecutive + 1
    if consecutive >= policy.consecutive_failures:
        return Breaker("open", opened_at=now), f"{consecutive} failures in a row"
    failures = recent.count(False)
    if len(recent) >= policy.min_calls and failures >= policy.failure_rate * len(recent):
        return Breaker("open", opened_at=now), f"{failures} of the last {len(recent)} failed"
    return Breaker("closed", recent, consecutive), ""


def routable(breaker: Breaker, *, now: int, policy: BreakerPolicy) -> bool:
    """Whether work may go to the breaker's role now (a probe, when half-open or due one)."""
    if breaker.state == "closed":
        return True
    if breaker.state == "half_open":
        return breaker.probing < policy.probes
    assert breaker.opened_at is not None
    return now - breaker.opened_at >= policy.cooldown * 1e9


def send_through(breaker: Breaker, *, now: int, policy: BreakerPolicy) -> tuple[Breaker, str]:
    """The breaker after a task was sent through it (which must be :func:`routable`), and why
    its state changed: an open breaker past its cool-down goes half-open with this probe."""
    if not routable(breaker, now=now, policy=policy):
        raise ValueError("send_through() on a breaker that is not routable")
    if breaker.state == "closed":
        return breaker, ""
    if breaker.state == "open":
        return Breaker("half_open", probing=1), f"cool-down of {policy.cooldown:g} s over: probing"
    return replace(breaker, probing=breaker.probing + 1), ""
