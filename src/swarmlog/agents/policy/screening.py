"""Screening a delivered assignment (pure): whether it runs, and if not, what it is.

Before a replica runs delivered work it settles what must not run: an event whose signature
does not check out (``rejected``), work taken in the instant of a kill switch (``handed_back``),
an assignment already answered (``duplicate``, idempotency by event id), work past its deadline
(``timed_out``) and work a replica past its token budget must not spend on (``over_budget``).
The order is the rule: a forged event is never looked at further, a killed replica emits
nothing, and a duplicate is acknowledged even when it is late.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["Verdict", "attempt_of", "past", "screen"]

Verdict = Literal["run", "rejected", "handed_back", "duplicate", "timed_out", "over_budget"]


def attempt_of(assigned_attempt: int, num_delivered: int) -> int:
    """The attempt a delivery is: the assignment's own, plus one per redelivery."""
    return assigned_attempt + num_delivered - 1


def past(deadline_at: int | None, now: int) -> bool:
    """Whether a deadline (ns since the epoch, ``None``: none) has passed at ``now``."""
    return deadline_at is not None and now >= deadline_at


def screen(
    *,
    verified: bool,
    killed: bool,
    duplicate: bool,
    deadline_at: int | None,
    now: int,
    over_budget: bool,
) -> Verdict:
    """What to do with a delivery before running it (``run``: it is work to do).

    ``duplicate`` may be left ``False`` by a caller that did not look (it looks only when the
    delivery is verified and the replica not killed, since those verdicts come first).
    """
    if not verified:
        return "rejected"
    if killed:
        return "handed_back"
    if duplicate:
        return "duplicate"
    if past(deadline_at, now):
        return "timed_out"
    if over_budget:
        return "over_budget"
    return "run"
