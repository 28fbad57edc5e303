"""Issuing agent credentials: a key on disk (0600) and an operator-signed credential on the log.

Errors name what is wrong in the library's terms (``parameter`` says which argument); a front
end adds which of its options that is.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Sequence

import msgspec

from swarmlog.agents.publisher import Publisher
from swarmlog.agents.targets import builtin_role, load_agent
from swarmlog.agents.tools import declared_grants
from swarmlog.bus.permissions import valid_login_key
from swarmlog.bus.queues import GIVE_UP_AFTER, agent_queues, router_queue
from swarmlog.config import Settings
from swarmlog.control.broker import provision_queues, refresh_broker
from swarmlog.control.checks import conform
from swarmlog.control.keystore import KeyStore
from swarmlog.control.system import open_log
from swarmlog.errors import ConfigError, KeyStoreError
from swarmlog.schemas.credentials import Credential
from swarmlog.schemas.payloads import PAYLOAD_TYPES
from swarmlog.schemas.signing import (
    AUDITOR_ROLE,
    CONTROL_TYPES,
    OPERATOR_ID,
    ROUTER_ROLE,
    Identity,
    issue_credential,
)
from swarmlog.schemas.types import Name, Role, ToolName

__all__ = ["issue_agent", "issue_replicas"]

_DAY_NS = 86_400 * 1_000_000_000


async def issue_agent(
    settings: Settings,
    role: str,
    *,
    agent_id: str | None = None,
    capabilities: Sequence[str] = (),
    trust: str = "internal",
    allowed: Sequence[str] = (),
    expires_in: float | None = None,
    admit: bool = True,
    tools: Sequence[str] = (),
    mcp_servers: Sequence[str] = (),
    public_key: str | None = None,
    login_key: str | None = None,
) -> tuple[str, str, int]:
    """Create an agent key, save it (0600), publish its credential and (with ``admit``) have the
    broker admit its login; (agent id, key, seq).

    ``tools`` and ``mcp_servers`` are the tools it may call (none by default): Python tools by
    name, MCP tools by ``SERVER.TOOL``, and every tool of the servers named.

    With ``public_key`` (hex) the key was made elsewhere (``swarmlog keys generate``, an HSM):
    no secret is made or kept here, and ``login_key`` is the public nkey its NATS login derives
    from that secret. An ``auditor`` may emit nothing but its own registration unless
    ``allowed`` says otherwise (its broker login may publish nothing at all)."""
    settings.require_data_dir()
    store = KeyStore(settings.keys_dir)
    operator = store.operator()
    try:
        msgspec.convert(role, Role)  # before it names the default agent id
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid role {role!r}: {exc}") from None
    if agent_id is not None and not agent_id:
        raise ConfigError(
            "the agent id is empty; give one, or none for ROLE-<random>", parameter="agent_id"
        )
    agent_id = agent_id or f"{role}-{secrets.token_hex(3)}"
    if agent_id == OPERATOR_ID:
        raise ConfigError(
            "'operator' is reserved for the operator key; choose another agent id",
            parameter="agent_id",
        )
    for type_ in allowed:
        if type_ not in PAYLOAD_TYPES or type_ in CONTROL_TYPES:
            raise ConfigError(
                f"{type_!r} is not an event type agents may emit", parameter="allowed"
            )
    _check_grants(tools, mcp_servers)
    if store.has_agent(agent_id):
        raise KeyStoreError(
            f"agent {agent_id} already has a key; choose another agent id", parameter="agent_id"
        )
    if role == AUDITOR_ROLE and capabilities:
        raise ConfigError(
            "an auditor takes no work: give it no capability", parameter="capabilities"
        )
    if role == AUDITOR_ROLE and not allowed:
        allowed = ["agent_registered"]
    seed = b""
    identity = None
    if public_key is None:
        if login_key is not None:
            raise ConfigError(
                "a login key is given only with the public key it belongs to", parameter="login_key"
            )
        seed = os.urandom(32)
        identity = Identity.from_seed(agent_id, seed)
        public_key = identity.public_key
    else:
        _check_public_key(public_key, login_key)
    now = time.time_ns()
    fields = {
        "agent_id": agent_id,
        "role": role,
        "public_key": public_key,
        "issuer": operator.public_key,
        "issued_at": now,
        "capabilities": list(capabilities),
        "trust_level": trust,
        "allowed_types": list(allowed) or ["*"],
        "expires_at": now + int(expires_in * _DAY_NS) if expires_in else None,
        "tools": list(dict.fromkeys(tools)),
        "mcp_servers": list(dict.fromkeys(mcp_servers)),
    }
    try:
        credential = msgspec.convert(fields, Credential)  # validates ids, limits
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid credential: {exc}") from None
    issued = issue_credential(operator, credential)

    # The seed is on disk before the credential is on the log: a trusted key never goes missing.
    if identity is None:
        assert login_key is not None  # checked with the public key
        store.save_public_agent(agent_id, issued, login_key)
    else:
        store.save_agent(identity, seed, issued)
    try:
        async with open_log(settings) as log_:
            seq = (await Publisher(log_, operator, settings.namespace).publish(issued)).seq
    except BaseException:
        store.remove_agent(agent_id)  # nothing was vouched for: leave no key behind
        raise
    if admit:
        await refresh_broker(settings)
    return agent_id, public_key, seq


def _check_public_key(public_key: str, login_key: str | None) -> None:
    if len(public_key) != 64 or not set(public_key) <= set("0123456789abcdef"):
        raise ConfigError(
            f"{public_key[:80]!r} is not an Ed25519 public key: 64 lowercase hex characters,"
            " as `swarmlog keys generate` prints it",
            parameter="public_key",
        )
    if login_key is None:
        raise ConfigError(
            "a key made elsewhere needs its login key too (the U… line `swarmlog keys"
            " generate` prints): the broker's login is derived from the secret",
            parameter="login_key",
        )
    if not valid_login_key(login_key):
        raise ConfigError(
            f"{login_key[:80]!r} is not an nkey user public key (U and 55 more characters, as"
            " `swarmlog keys generate` prints it)",
            parameter="login_key",
        )


def _check_grants(tools: Sequence[str], mcp_servers: Sequence[str]) -> None:
    for tool in tools:
        conform(
            tool,
            ToolName,
            f"{tool!r} is not a tool name: a Python tool's name (word_count) or an MCP"
            " tool's SERVER.TOOL (time.get_current_time), of letters, digits, _ - and .",
            "tools",
        )
    for server in mcp_servers:
        reason = f"{server!r} is not an MCP server name (lowercase letters, digits, _ and -)"
        conform(server, Name, reason, "mcp_servers")


async def issue_replicas(
    settings: Settings,
    target: str,
    name: str | None,
    replicas: int,
    ack_wait: float = 30.0,
    trust: str = "internal",
    *,
    admit: bool = True,
) -> list[str]:
    """Replica ids for ``target`` (``module:Class`` or a built-in role), each with its own key
    and credential (issued when missing, with ``trust``), its queues created and the broker
    told to admit it. Ids are ``<name>-1..<name>-N``, ``name`` defaulting to the role.
    ``admit=False`` leaves telling the broker (:func:`refresh_broker`) to the caller, who
    issues several at once: each refresh reloads the server."""
    role = builtin_role(target)
    capabilities: tuple[str, ...] = ()
    tools: list[str] = []
    servers: list[str] = []
    cls = None
    if role is None:
        cls = load_agent(target)
        role, capabilities = cls.role, cls.capabilities
        # Least privilege by default: the tools the class declares, and no other.
        tools, servers = declared_grants(cls)
    name = name or role
    keys = KeyStore(settings.keys_dir)
    ids = [f"{name}-{i}" for i in range(1, replicas + 1)]
    issued = False
    for agent_id in ids:
        if not keys.has_agent(agent_id):
            await issue_agent(
                settings,
                role,
                agent_id=agent_id,
                capabilities=capabilities,
                tools=tools,
                mcp_servers=servers,
                trust=trust,
                admit=False,
            )
            issued = True
    # Agents may not create consumers: the operator does, before they start.
    specs = []
    if cls is not None:
        for agent_id in ids:
            specs += agent_queues(
                settings.namespace,
                role,
                agent_id,
                swarm=cls.swarm,
                max_attempts=cls.retry.max_attempts,
                ack_wait=ack_wait,
            )
    elif role == ROUTER_ROLE:
        specs.append(router_queue(settings.namespace, give_up_after=GIVE_UP_AFTER))
    if specs:
        await provision_queues(settings, specs)
    if issued and admit:
        await refresh_broker(settings)
    return ids
