"""Tool pinning (pure): a digest of each tool's definition, taken when an agent registers, and
the comparison that finds the tools whose definition changed since.

A tool's definition is what the model is told and what the tool accepts: its qualified name, its
description and the JSON Schema of its parameters. The digest is the sha256 of a canonical JSON
encoding of these (keys sorted at every level, no whitespace), so the same definition has the same
digest in any process, and any change to a word of the description or a property of the schema
changes it. A list's order counts (``required: ["a", "b"]`` is not ``["b", "a"]``): a pin errs on
the side of "changed".
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import msgspec

from swarmlog.schemas.payloads import ToolPin

__all__ = ["PinDiff", "ToolDefinition", "ToolPin", "compare_pins", "pin", "tool_digest"]


class ToolDefinition(Protocol):
    """Anything with a tool's name, description and parameters schema (a ``ToolSpec``)."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def parameters(self) -> Mapping[str, Any]: ...


class PinDiff(msgspec.Struct, frozen=True, kw_only=True):
    """How a tool list differs from the pinned one, each part sorted by name."""

    changed: tuple[str, ...] = ()
    """Pinned tools whose definition is not the pinned one any more."""
    appeared: tuple[str, ...] = ()
    """Tools offered now that were not pinned."""
    vanished: tuple[str, ...] = ()
    """Pinned tools no longer offered."""

    @property
    def clean(self) -> bool:
        """Nothing changed, appeared or vanished."""
        return not (self.changed or self.appeared or self.vanished)

    def describe(self) -> str:
        """One line for an operator: ``changed: a, b; appeared: c`` (``unchanged`` when clean)."""
        parts = [
            f"{label}: {', '.join(names)}"
            for label, names in (
                ("changed", self.changed),
                ("appeared", self.appeared),
                ("vanished", self.vanished),
            )
            if names
        ]
        return "; ".join(parts) or "unchanged"


def canonical_definition(spec: ToolDefinition) -> bytes:
    """The bytes a tool's digest is taken over."""
    return msgspec.json.encode(
        {
            "name": spec.name,
            "description": spec.description,
            "parameters": dict(spec.parameters),
        },
        order="sorted",
    )


def tool_digest(spec: ToolDefinition) -> str:
    """sha256 hex of the tool's canonical definition (name, description, parameters)."""
    return hashlib.sha256(canonical_definition(spec)).hexdigest()


def pin(spec: ToolDefinition) -> ToolPin:
    """The pin of one tool as it is defined now."""
    return ToolPin(name=spec.name, digest=tool_digest(spec))


def compare_pins(pinned: Iterable[ToolPin], current: Iterable[ToolPin]) -> PinDiff:
    """Which tools of ``current`` changed, appeared or vanished relative to ``pinned``."""
    before = {p.name: p.digest for p in pinned}
    now = {p.name: p.digest for p in current}
    return PinDiff(
        changed=tuple(sorted(n for n in before.keys() & now.keys() if before[n] != now[n])),
        appeared=tuple(sorted(now.keys() - before.keys())),
        vanished=tuple(sorted(before.keys() - now.keys())),
    )
