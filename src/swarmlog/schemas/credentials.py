"""Operator-signed agent credentials."""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated

import msgspec
from msgspec import Meta

from swarmlog.schemas.types import (
    AgentId,
    Capability,
    KeyId,
    Name,
    Role,
    Timestamp,
    ToolName,
    TrustLevel,
)

__all__ = ["Credential", "tool_permitted"]


class Credential(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What the operator vouches for about an agent key."""

    agent_id: AgentId
    """The agent this key speaks for; events signed by the key must name it as sender."""
    role: Role
    public_key: KeyId
    """The agent's Ed25519 event-signing key (hex)."""
    issuer: KeyId
    """The operator key that signed this credential."""
    issued_at: Timestamp
    capabilities: Annotated[list[Capability], Meta(max_length=64)] = msgspec.field(
        default_factory=list
    )
    trust_level: TrustLevel = "internal"
    allowed_types: Annotated[list[str], Meta(max_length=128)] = msgspec.field(
        default_factory=lambda: ["*"]
    )
    """Event types the agent may emit; ``*`` means every non-control type."""
    expires_at: Timestamp | None = None
    tools: Annotated[list[ToolName], Meta(max_length=256)] = msgspec.field(default_factory=list)
    """Tools the agent may call: Python tools by name (``word_count``), MCP tools by qualified
    name (``time.get_current_time``). None by default (see :func:`tool_permitted`)."""
    mcp_servers: Annotated[list[Name], Meta(max_length=64)] = msgspec.field(default_factory=list)
    """MCP servers every tool of which the agent may call."""


def tool_permitted(
    tools: Collection[str], mcp_servers: Collection[str], tool: str, server: str
) -> bool:
    """Whether a credential granting ``tools`` and ``mcp_servers`` allows a call of ``tool``
    (of MCP server ``server``, ``""`` for a Python tool): the one rule the runtime refuses a
    call by and the verifier quarantines a journaled call by.

    A tool is granted by name, or through its server: then it must be that server's
    (``SERVER.TOOL``), so naming a granted server cannot carry another tool in.
    """
    if tool in tools:
        return True
    return bool(server) and tool.startswith(server + ".") and server in mcp_servers
