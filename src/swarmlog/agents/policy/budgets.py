"""Token budgets (pure): when spending reaches a budget's soft or hard limit.

An agent replica and a workflow are both warned once at :data:`SOFT_LIMIT` of their token budget
(``budget_exceeded`` with ``limit="soft"``) and stopped at all of it (``limit="hard"``): the
runtime and the conductor decide with these functions, so the two thresholds are written once.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Literal

__all__ = [
    "SOFT_LIMIT",
    "Limit",
    "budget_alert",
    "completion_allowance",
    "estimate_tokens",
    "limit_reached",
]

SOFT_LIMIT = 0.8
"""Share of a token budget at which its owner is warned (``budget_exceeded`` soft)."""

Limit = Literal["soft", "hard"]


def limit_reached(used: int, budget: int | None) -> Limit | None:
    """The highest limit ``used`` tokens have reached of ``budget`` (none without a budget)."""
    if budget is None:
        return None
    if used >= budget:
        return "hard"
    if used >= SOFT_LIMIT * budget:
        return "soft"
    return None


def budget_alert(used: int, budget: int | None, alerted: Collection[str]) -> Limit | None:
    """The limit to announce now: the one reached, unless it was announced already.

    Only the highest limit reached is announced: spending that jumps past the whole budget at
    once is reported as ``hard`` alone, never as a late ``soft`` as well.
    """
    limit = limit_reached(used, budget)
    return None if limit is None or limit in alerted else limit


def estimate_tokens(text: str) -> int:
    """An upper bound of the tokens ``text`` costs a model: its UTF-8 bytes. A byte-level
    tokenizer's token covers at least one byte (and the offline model counts words), so a call
    priced with it cannot cross a budget; prose costs about a quarter of it."""
    return len(text.encode())


def completion_allowance(used: int, budget: int | None, prompt_tokens: int) -> int | None:
    """The most tokens a model call's answer may take without crossing ``budget``, given the
    ``used`` tokens and its ``prompt_tokens`` (``None``: no budget, no cap; 0: the call must
    not be made)."""
    if budget is None:
        return None
    return max(0, budget - used - prompt_tokens)
