"""Issuing agent credentials: a key on disk (0600) and an operator-signed credential on the log."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Sequence

import msgspec

from swarmlog.brokerauth import refresh_broker
from swarmlog.config import Settings
from swarmlog.errors import ConfigError, KeyStoreError
from swarmlog.keystore import KeyStore
from swarmlog.publisher import Publisher
from swarmlog.schemas.credentials import Credential
from swarmlog.schemas.payloads import PAYLOAD_TYPES
from swarmlog.schemas.signing import CONTROL_TYPES, OPERATOR_ID, Identity, issue_credential
from swarmlog.schemas.types import Role
from swarmlog.system import open_log

__all__ = ["issue_agent"]

_DAY_NS = 86_400 * 1_000_000_000


def issue_agent(
    settings: Settings,
    role: str,
    *,
    agent_id: str | None = None,
    capabilities: Sequence[str] = (),
    trust: str = "internal",
    allowed: Sequence[str] = (),
    expires_in: float | None = None,
    admit: bool = True,
) -> tuple[str, str, int]:
    """Create an agent key, save it (0600), publish its credential and (with ``admit``) have the
    broker admit its login; (agent id, key, seq)."""
    settings.require_data_dir()
    store = KeyStore(settings.keys_dir)
    operator = store.operator()
    try:
        msgspec.convert(role, Role)  # before it names the default agent id
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid role {role!r}: {exc}") from None
    if agent_id is not None and not agent_id:
        raise ConfigError("--agent-id is empty; give an id, or leave it out for ROLE-<random>")
    agent_id = agent_id or f"{role}-{secrets.token_hex(3)}"
    if agent_id == OPERATOR_ID:
        raise ConfigError("'operator' is reserved for the operator key; choose another --agent-id")
    for type_ in allowed:
        if type_ not in PAYLOAD_TYPES or type_ in CONTROL_TYPES:
            raise ConfigError(f"--allow {type_}: not an event type agents may emit")
    if store.agent_paths(agent_id)[0].exists():
        raise KeyStoreError(f"agent {agent_id} already has a key; choose another --agent-id")
    seed = os.urandom(32)
    identity = Identity.from_seed(agent_id, seed)
    now = time.time_ns()
    fields = {
        "agent_id": agent_id,
        "role": role,
        "public_key": identity.public_key,
        "issuer": operator.public_key,
        "issued_at": now,
        "capabilities": list(capabilities),
        "trust_level": trust,
        "allowed_types": list(allowed) or ["*"],
        "expires_at": now + int(expires_in * _DAY_NS) if expires_in else None,
    }
    try:
        credential = msgspec.convert(fields, Credential)  # validates ids, limits
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid credential: {exc}") from None
    issued = issue_credential(operator, credential)

    async def publish() -> int:
        async with open_log(settings) as log_:
            published = await Publisher(log_, operator, settings.namespace).publish(issued)
            return published.seq

    # The seed is on disk before the credential is on the log: a trusted key never goes missing.
    store.save_agent(identity, seed, issued)
    try:
        seq = asyncio.run(publish())
    except BaseException:
        store.remove_agent(agent_id)  # nothing was vouched for: leave no key behind
        raise
    if admit:
        asyncio.run(refresh_broker(settings))
    return agent_id, identity.public_key, seq
