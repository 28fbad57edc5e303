"""Operator-signed agent credentials."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from swarmlog.schemas.types import AgentId, Capability, KeyId, Role, Timestamp, TrustLevel

__all__ = ["Credential"]


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
