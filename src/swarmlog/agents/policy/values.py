"""The values of the pure policies (pure): what their decisions read and what they answer.

Every one is a frozen dataclass: compared by value, hashable, never changed in place, so that
the same inputs give equal decisions wherever they are made (the runtime, the roles, the
simulation, a property test). Deriving from :class:`Value` is how a class says so, in this one
place; a decision's possible answers are a closed union of such classes (``Settlement``,
``Action``), which the shell matches on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, dataclass_transform

__all__ = ["Value"]


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
class Value:
    """Base of the policies' values: each subclass is made a frozen dataclass of the fields it
    annotates (after those of its bases), with ``dataclasses.field`` for the unusual ones."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dataclass(frozen=True)(cls)
