"""Constrained scalar types shared by every schema: limits live in the types.

A value that breaks a limit fails at decode time with the field path in the error.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta

__all__ = [
    "MAX_INT",
    "PRIORITIES",
    "TOOL_NAME_PATTERN",
    "AgentId",
    "Capability",
    "EventId",
    "Hash",
    "Json",
    "KeyId",
    "Name",
    "Namespace",
    "Priority",
    "Role",
    "Text",
    "Timestamp",
    "ToolName",
    "TrustLevel",
]

#: A token safe to use inside a NATS subject: lower-case letters, digits, ``_`` and ``-``.
#: Patterns end in ``\Z``, not ``$``: msgspec matches with ``re.search``, where ``$`` would also
#: accept a trailing newline.
_TOKEN = r"^[a-z0-9][a-z0-9_-]*\Z"

AgentId = Annotated[str, Meta(pattern=_TOKEN, min_length=1, max_length=64)]
"""An agent's id; also a subject token, so no dots, wildcards or spaces."""
Role = Annotated[str, Meta(pattern=_TOKEN, min_length=1, max_length=64)]
"""A role name (``researcher``, ``router``); a subject token."""
Capability = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9_.:-]*\Z", max_length=64)]
"""A capability an agent declares and a task requires."""
Name = Annotated[str, Meta(pattern=_TOKEN, min_length=1, max_length=64)]
"""An aggregate id (workflow, task, request): a subject token."""
Namespace = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9_-]*\Z", min_length=1, max_length=32)]
EventId = Annotated[str, Meta(pattern=r"^[0-9A-HJKMNP-TV-Z]{26}\Z")]
"""A ULID: 26 Crockford base32 characters, sortable by creation time."""
KeyId = Annotated[str, Meta(pattern=r"^[0-9a-f]{64}\Z")]
"""An Ed25519 public key, hex encoded: the key id is the key itself."""
Hash = Annotated[str, Meta(pattern=r"^([0-9a-f]{64})?\Z")]
"""A SHA-256 digest in hex, or the empty string for "none yet"."""
TOOL_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\Z"
ToolName = Annotated[str, Meta(pattern=TOOL_NAME_PATTERN, min_length=1, max_length=192)]
"""A tool's name: a Python tool's bare name (``word_count``) or an MCP tool's qualified one,
``SERVER.TOOL`` (``time.get_current_time``): the characters MCP recommends for tool names."""
MAX_INT = 2**63 - 1
"""Every integer in an event fits a signed 64-bit column (DuckDB BIGINT)."""
Timestamp = Annotated[int, Meta(ge=0, le=MAX_INT)]
"""Nanoseconds since the Unix epoch, from the injected clock."""
Text = Annotated[str, Meta(max_length=65_536)]
"""Free text with a bound."""
Json = Any
"""Any JSON-compatible value (the message size limit bounds it)."""

Priority = Literal["critical", "high", "normal", "low"]
PRIORITIES: tuple[Priority, ...] = ("critical", "high", "normal", "low")
"""Priority levels, most urgent first; each has its own work consumer."""

TrustLevel = Literal["internal", "external"]
