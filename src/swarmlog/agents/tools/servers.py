"""The MCP servers an agent declares (pure): a stdio command or a streamable-HTTP URL, checked
when the class is defined.

::

    class Clerk(Agent):
        role = "clerk"
        mcp_servers = (
            MCPServer(name="time", command=("mcp-server-time",)),  # stdio
            MCPServer(  # streamable HTTP
                name="crm",
                url="http://127.0.0.1:8931/mcp",
                headers={"Authorization": "Bearer ..."},
            ),
        )
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from swarmlog.errors import ConfigError

__all__ = ["SERVER_NAME", "MCPServer"]

SERVER_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
"""A server's name: a lower-case identifier, the ``SERVER`` of its tools' ``SERVER.TOOL``."""


@dataclass(frozen=True)
class MCPServer:
    """An MCP server an agent uses: either ``command`` (stdio) or ``url`` (streamable HTTP)."""

    name: str
    """Lower-case identifier; the agent's tools from it are named ``NAME.TOOL``."""
    command: tuple[str, ...] = ()
    """stdio: the program and its arguments (``("python", "-m", "mcp_server_time")``)."""
    url: str = ""
    """Streamable HTTP: the server's MCP endpoint (``http://host:port/mcp``)."""
    env: Mapping[str, str] = field(default_factory=dict, repr=False, hash=False)
    """stdio: variables for the server process, on top of ``PATH``, ``HOME`` and the like."""
    cwd: str = ""
    """stdio: the server's working directory (default: the agent's)."""
    headers: Mapping[str, str] = field(default_factory=dict, repr=False, hash=False)
    """HTTP: headers sent with every request (an ``Authorization`` token); never logged."""
    timeout: float = 60.0
    """Seconds to wait for the server to start and for each answer (a listing, a call)."""

    def __post_init__(self) -> None:
        where = f"MCP server {self.name!r}"
        if not isinstance(self.name, str) or not SERVER_NAME.match(self.name):
            raise ConfigError(
                f"{where}: a server's name is a lower-case identifier (a-z, 0-9, _; at most 32)",
                parameter="name",
            )
        if isinstance(self.command, str):
            raise ConfigError(
                f"{where}: command is a sequence of words, e.g. ('mcp-server-time',), not a string",
                parameter="command",
            )
        object.__setattr__(self, "command", tuple(self.command))
        if bool(self.command) == bool(self.url):
            raise ConfigError(
                f"{where}: give either command (a stdio server) or url (streamable HTTP)",
                parameter="command",
            )
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}: url must start with http:// or https://", parameter="url")
        if self.url and (self.env or self.cwd):
            raise ConfigError(f"{where}: env and cwd are for stdio servers", parameter="env")
        if self.command and self.headers:
            raise ConfigError(f"{where}: headers are for HTTP servers", parameter="headers")
        if not self.timeout > 0:
            raise ConfigError(f"{where}: timeout must be positive", parameter="timeout")

    @property
    def transport(self) -> Literal["stdio", "http"]:
        return "stdio" if self.command else "http"

    def describe(self) -> str:
        """Where the server is, for an error message: its program or its URL (no query)."""
        return f"command {self.command[0]!r}" if self.command else f"url {self.url.split('?')[0]}"
