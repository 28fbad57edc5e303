"""Retry with exponential backoff and jitter (pure).

A :class:`RetryPolicy` is validated when built; :meth:`RetryPolicy.next_delay` is a pure function
of the attempt number and an injected random draw, so the runtime and the simulation agree.
Whether to retry at all is a property of the error (``retryable``), not a special case in a handler.

**Permanent errors are not retried.** Like Temporal's ``non_retryable_error_types``, a policy
names the error types that another attempt cannot cure (:data:`PERMANENT_ERRORS` by default):
:meth:`RetryPolicy.retries` says whether an error, given the names of its type and of its base
classes (or a :class:`~swarmlog.errors.TaskError`'s code), is worth another attempt. The default
set is the programming and input errors, which fail the same way on the same input: and the same
input is what a retry gets, since every model and tool call of an earlier attempt is answered
from its journal.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from swarmlog.agents.policy.validation import Checked, setting
from swarmlog.agents.policy.values import Value

__all__ = ["PERMANENT_ERRORS", "RetryDecision", "RetryPolicy"]

PERMANENT_ERRORS: frozenset[str] = frozenset(
    {
        "ValueError",  # bad input; UnicodeError and json.JSONDecodeError derive from it
        "UnicodeError",
        "TypeError",
        "KeyError",
        "IndexError",
        "AttributeError",
        "NameError",
        "NotImplementedError",
        "AssertionError",
        "ZeroDivisionError",
        "ValidationError",  # msgspec's (a schema check failed; pydantic's is a ValueError)
    }
)
"""The error types not retried by default: a handler's own bug or its input's fault, which
another attempt on the same input meets again. Matched against an exception's type and its base
classes by name, so a subclass (``UnicodeDecodeError``, ``json.JSONDecodeError``) counts too.
Left out on purpose: ``RuntimeError`` (libraries raise it for passing states too), ``OSError``
and its ``ConnectionError`` and ``TimeoutError`` (the network, a busy service), ``MemoryError``
(the replica's, not the input's), and :class:`~swarmlog.errors.ModelError` and other errors
that say themselves whether they are retryable."""


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
    non_retryable_error_types: frozenset[str] = PERMANENT_ERRORS
    """Error type names (an exception's class or one of its bases, by ``__name__``) and
    :class:`~swarmlog.errors.TaskError` codes that fail a task at once, however many attempts
    are left (empty: retry every error that does not say otherwise). Extend the default with
    ``PERMANENT_ERRORS | {"MyInputError"}``."""

    def __post_init__(self) -> None:
        names = self.non_retryable_error_types
        if isinstance(names, str):
            raise ValueError(
                "invalid retry policy: non_retryable_error_types is a set of names, not one"
                f" string: use {{{names!r}}}"
            )
        # Any iterable of names will do; kept as a frozenset, so the policy stays hashable.
        object.__setattr__(self, "non_retryable_error_types", frozenset(names))
        super().__post_init__()

    def retries(self, names: Iterable[str], *, retryable: bool = True) -> bool:
        """Whether an error is worth another attempt: it says it may be (``retryable``) and
        none of ``names`` (its type's and its bases' names, or a task error's code) is a
        non-retryable error type."""
        return retryable and self.non_retryable_error_types.isdisjoint(names)

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
