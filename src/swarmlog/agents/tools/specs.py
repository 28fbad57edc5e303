"""What a model is told about a tool and what calling one came to (pure).

:class:`ToolSpec` is the shape the model layer offers a model (``swarmlog.agents.llm`` has the
same fields); tools build it from a Python signature or an MCP server's listing.
:class:`Invocation` is one call's result as JSON, or the error text the model reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

__all__ = ["PYTHON_TOOL_NAME", "Invocation", "ToolSpec"]

PYTHON_TOOL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
"""A Python tool's name: what every function-calling API accepts (no dots: a dot separates an MCP
tool's server from its own name)."""


class ToolSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A tool as the model sees it."""

    name: str
    """Bare for a Python tool (``word_count``), ``SERVER.TOOL`` for an MCP server's tool."""
    description: str = ""
    parameters: dict[str, Any] = msgspec.field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )
    """A JSON Schema of the arguments object (any ``$ref`` resolves within it)."""


@dataclass(frozen=True)
class Invocation:
    """What one call of a tool came to (before the toolbox adds which, where and how long)."""

    status: Literal["ok", "error"]
    result: Any = None
    """The return value as JSON builtins (``ok`` only)."""
    error: str = ""
    """What went wrong, worded for the model (``error`` only)."""
