"""What a model is told about a tool and what calling one came to (pure).

:class:`ToolSpec` is the model layer's (:mod:`swarmlog.agents.llm.messages`); tools build it
from a Python signature or an MCP server's listing. :class:`Invocation` is one call's result as
JSON, or the error text the model reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from swarmlog.agents.llm.messages import ToolSpec

__all__ = ["PYTHON_TOOL_NAME", "Invocation", "ToolSpec"]

PYTHON_TOOL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
"""A Python tool's name: what every function-calling API accepts (no dots: a dot separates an MCP
tool's server from its own name)."""


@dataclass(frozen=True)
class Invocation:
    """What one call of a tool came to (before the toolbox adds which, where and how long)."""

    status: Literal["ok", "error"]
    result: Any = None
    """The return value as JSON builtins (``ok`` only)."""
    error: str = ""
    """What went wrong, worded for the model (``error`` only)."""
