"""Validating a policy's settings when it is built (pure)."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["require"]


def require(what: str, rules: Iterable[tuple[bool, str]]) -> None:
    """Raise one :class:`ValueError` that names every rule of ``what`` that does not hold.

    ``rules`` are ``(holds, message)`` pairs: a user who set three values wrong hears of all
    three at once, not one per try.
    """
    problems = [message for holds, message in rules if not holds]
    if problems:
        raise ValueError(f"invalid {what}: " + "; ".join(problems))
