"""Tools an agent may call: Python functions marked ``@tool`` and the tools of its MCP servers,
gathered in a :class:`Toolbox` that pins every tool's definition when it opens.

- :mod:`~swarmlog.agents.tools.functions`: ``@tool``, a typed signature as JSON Schema;
- :mod:`~swarmlog.agents.tools.mcp`: :class:`MCPServer` declarations and the MCP client
  (the ``mcp`` SDK is imported only when a server is started);
- :mod:`~swarmlog.agents.tools.pinning`: digests of tool definitions and their comparison (pure);
- :mod:`~swarmlog.agents.tools.toolbox`: :class:`Toolbox`, :class:`ToolOutcome`,
  :func:`declared_grants`.

Nothing here knows the runtime: the agent runtime journals the calls, checks the credential's
grants and passes the call ids.
"""

from swarmlog.agents.tools.functions import FunctionTool, class_tools, function_tools, tool, tool_of
from swarmlog.agents.tools.mcp import MCPConnection
from swarmlog.agents.tools.pinning import PinDiff, ToolPin, compare_pins, pin, tool_digest
from swarmlog.agents.tools.servers import MCPServer
from swarmlog.agents.tools.specs import Invocation, ToolSpec
from swarmlog.agents.tools.toolbox import (
    Toolbox,
    ToolOutcome,
    declared_grants,
    refusal_for_change,
)

__all__ = [
    "FunctionTool",
    "Invocation",
    "MCPConnection",
    "MCPServer",
    "PinDiff",
    "ToolOutcome",
    "ToolPin",
    "ToolSpec",
    "Toolbox",
    "class_tools",
    "compare_pins",
    "declared_grants",
    "function_tools",
    "pin",
    "refusal_for_change",
    "tool",
    "tool_digest",
    "tool_of",
]
