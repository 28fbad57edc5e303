"""Validating a policy's settings when it is built (pure).

A policy's settings are a frozen dataclass deriving from :class:`Checked`, each bounded setting
declared with :func:`setting`: its default, its bounds (numbers, or the names of other settings)
and the rule they make, in words. Every setting's bounds are checked once, when the policy is
built, by the one ``__post_init__`` here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import field, fields
from typing import ClassVar, TypeVar

from swarmlog.agents.policy.values import Value

__all__ = ["Bound", "Checked", "require", "setting"]

_T = TypeVar("_T")

Bound = float | str
"""A limit of a setting: a number, or the name of another setting of the same policy."""

_BOUNDS = "swarmlog.bounds"
"""The field metadata key :func:`setting` keeps a setting's bounds under."""


def require(what: str, rules: Iterable[tuple[bool, str]]) -> None:
    """Raise one :class:`ValueError` that names every rule of ``what`` that does not hold.

    ``rules`` are ``(holds, message)`` pairs: a user who set three values wrong hears of all
    three at once, not one per try.
    """
    problems = [message for holds, message in rules if not holds]
    if problems:
        raise ValueError(f"invalid {what}: " + "; ".join(problems))


class _Bounds(Value):
    rule: str
    """What the bounds say, after the setting's name: ``must be at least 1``."""
    above: Bound | None = None
    at_least: Bound | None = None
    at_most: Bound | None = None


def setting(
    default: _T,
    rule: str,
    *,
    above: Bound | None = None,
    at_least: Bound | None = None,
    at_most: Bound | None = None,
) -> _T:
    """A dataclass field for a setting of a :class:`Checked` policy: ``default``, and the bounds
    its value must keep (greater than ``above``, from ``at_least``, up to ``at_most``).

    ``rule`` says the bounds in words for the error, after the setting's name.
    """
    bounds = _Bounds(rule, above, at_least, at_most)
    return field(default=default, metadata={_BOUNDS: bounds})


class Checked(Value):
    """Base of a policy's settings: built, every :func:`setting` keeps its bounds, or one
    :class:`ValueError` names each that does not (see :func:`require`)."""

    WHAT: ClassVar[str] = "settings"
    """What the settings are called in the error (``retry policy``)."""

    def __post_init__(self) -> None:
        require(self.WHAT, self._rules())

    def _rules(self) -> Iterator[tuple[bool, str]]:
        for f in fields(self):
            bounds: _Bounds | None = f.metadata.get(_BOUNDS)
            if bounds is None:
                continue
            value = getattr(self, f.name)
            holds = (
                (bounds.above is None or value > self._limit(bounds.above))
                and (bounds.at_least is None or value >= self._limit(bounds.at_least))
                and (bounds.at_most is None or value <= self._limit(bounds.at_most))
            )
            yield holds, f"{f.name} {bounds.rule}"

    def _limit(self, bound: Bound) -> float:
        limit: float = getattr(self, bound) if isinstance(bound, str) else bound
        return limit
