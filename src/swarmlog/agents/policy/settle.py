"""Settling failed work (pure): retry, hand over to the fallback role, or escalate.

After an attempt fails, the runtime (and the simulation) ask :func:`after_failure` what happens
to the task: it is **retried** by the agent's :class:`~swarmlog.agents.policy.retry.RetryPolicy`
while attempts remain and the error is retryable; out of attempts, a retryable failure is **handed
over** to the agent's ``fallback_role`` when it has one (and it is not the task's own role);
otherwise it is **escalated** to a human. A permanent error (not retryable: a ``ValueError`` of
the handler, a model's 4xx, a :class:`~swarmlog.errors.TaskError` with ``retryable=False``, see
:data:`~swarmlog.agents.policy.retry.PERMANENT_ERRORS`) is escalated at once, not handed over:
the input is at fault, and the fallback role would get the same input. A claimed swarm task is
escalated at once (its claim is on the log, it cannot go back to a queue), and work past its
deadline **times out**. A replica past its token budget settles work it must not spend on with
:func:`over_budget`.

Clock and randomness are inputs (``draw``, uniform in [0, 1)), so the same inputs always give the
same settlement.
"""

from __future__ import annotations

from swarmlog.agents.policy.retry import RetryPolicy
from swarmlog.agents.policy.values import Value

__all__ = [
    "Escalate",
    "HandOver",
    "Retry",
    "Settlement",
    "TimedOut",
    "after_failure",
    "over_budget",
]


class Retry(Value):
    """Try again after ``delay`` seconds, as attempt ``attempt``."""

    attempt: int
    delay: float


class HandOver(Value):
    """Reassign the task to ``role`` (the agent's fallback role)."""

    role: str


class Escalate(Value):
    """Give the task to a human, saying why."""

    reason: str


class TimedOut(Value):
    """The task failed for good: it is past its deadline."""


Settlement = Retry | HandOver | Escalate | TimedOut


def after_failure(
    policy: RetryPolicy,
    *,
    attempt: int,
    retryable: bool,
    draw: float,
    role: str,
    fallback_role: str | None = None,
    code: str = "",
    swarm: bool = False,
    timed_out: bool = False,
) -> Settlement:
    """What happens to a task whose attempt ``attempt`` failed.

    ``role`` is the task's role, ``code`` the error's code, ``swarm`` whether the task was
    claimed from a swarm offer, ``timed_out`` whether it failed by running past its deadline.
    """
    if swarm:
        return Escalate(f"claimed swarm task failed: {code}")
    if timed_out:
        return TimedOut()
    decision = policy.decide(attempt, retryable=retryable, draw=draw)
    if decision.retry:
        return Retry(attempt + 1, decision.delay)
    if not retryable:
        # Permanent: the same input fails the same way for any role, so a human looks at it.
        return Escalate(f"{code} is not retryable (a permanent error)" if code else decision.reason)
    if fallback_role and fallback_role != role:
        # Out of attempts here, but another role can do it.
        return HandOver(fallback_role)
    return Escalate(decision.reason)


def says_retryable(decision: Settlement, *, swarm: bool) -> bool:
    """What the failure's ``error`` event says of another attempt: whether one is scheduled.
    A claimed swarm task's error keeps the default (``True``): a human may still retry it."""
    return swarm or isinstance(decision, Retry)


def over_budget(
    *, role: str, fallback_role: str | None, agent_id: str, spent: int
) -> HandOver | Escalate:
    """Work a replica past its token budget must not spend on: it goes to the agent's
    ``fallback_role`` (a cheaper tier, say) when it has one, else to a human."""
    if fallback_role and fallback_role != role:
        return HandOver(fallback_role)
    return Escalate(f"{agent_id} spent its token budget ({spent} tokens)")
