"""``keys init|show|issue``: the operator key and agent credentials."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Sequence

import click
import msgspec

from swarmlog.cli.app import Context, emit_json, pass_ctx, print_table, run
from swarmlog.config import Settings
from swarmlog.errors import ConfigError, KeyStoreError
from swarmlog.keystore import KeyStore
from swarmlog.publisher import Publisher
from swarmlog.schemas.credentials import Credential
from swarmlog.schemas.payloads import PAYLOAD_TYPES
from swarmlog.schemas.signing import CONTROL_TYPES, OPERATOR_ID, Identity, issue_credential
from swarmlog.schemas.types import Role
from swarmlog.system import open_log

__all__ = ["issue_agent", "keys"]

_DAY_NS = 86_400 * 1_000_000_000


@click.group()
def keys() -> None:
    """The operator key (root of trust) and agent credentials."""


@keys.command("init")
@pass_ctx
def keys_init(ctx: Context) -> None:
    """Create the operator key under the data dir (mode 0600)."""
    ctx.settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    identity = KeyStore(ctx.settings.keys_dir).init_operator(os.urandom(32))
    ctx.console.print(f"operator key {identity.public_key}")


@keys.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@pass_ctx
def keys_show(ctx: Context, as_json: bool) -> None:
    """The operator public key and the agent credentials issued from this data dir."""
    ctx.settings.require_data_dir()
    store = KeyStore(ctx.settings.keys_dir)
    operator = store.operator_public_key()
    credentials = store.agents()
    if as_json:
        agents = [msgspec.to_builtins(c) for c in credentials]
        emit_json({"operator": operator, "agents": agents})
        return
    ctx.console.print(f"operator {operator}")
    rows = [
        (c.agent_id, c.role, c.public_key[:16], ",".join(c.capabilities), c.trust_level)
        for c in credentials
    ]
    print_table(ctx.console, "agents", ["agent", "role", "key", "capabilities", "trust"], rows)


@keys.command("issue")
@click.argument("role")
@click.option("--agent-id", help="The agent's id (default: ROLE-<random>).")
@click.option("--capability", "-c", "capabilities", multiple=True, help="Repeatable.")
@click.option(
    "--trust", type=click.Choice(["internal", "external"]), default="internal", show_default=True
)
@click.option("--allow", "allowed", multiple=True, help="Event types it may emit (default: all).")
@click.option(
    "--expires-in", type=click.FloatRange(min=0.0, max=36_500.0, min_open=True), help="Days."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@pass_ctx
def keys_issue(
    ctx: Context,
    role: str,
    agent_id: str | None,
    capabilities: tuple[str, ...],
    trust: str,
    allowed: tuple[str, ...],
    expires_in: float | None,
    as_json: bool,
) -> None:
    """Create an agent key and publish its operator-signed credential to the log."""
    settings = ctx.settings
    agent_id, public_key, seq = issue_agent(
        settings,
        role,
        agent_id=agent_id,
        capabilities=capabilities,
        trust=trust,
        allowed=allowed,
        expires_in=expires_in,
    )
    if as_json:
        emit_json({"agent_id": agent_id, "role": role, "public_key": public_key, "seq": seq})
        return
    ctx.console.print(f"issued {agent_id} ({role}) key {public_key[:16]}… at seq {seq}")


def issue_agent(
    settings: Settings,
    role: str,
    *,
    agent_id: str | None = None,
    capabilities: Sequence[str] = (),
    trust: str = "internal",
    allowed: Sequence[str] = (),
    expires_in: float | None = None,
) -> tuple[str, str, int]:
    """Create an agent key, save it (0600) and publish its credential; (agent id, key, seq)."""
    settings.require_data_dir()
    store = KeyStore(settings.keys_dir)
    operator = store.operator()
    try:
        msgspec.convert(role, Role)  # before it names the default agent id
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid role {role!r}: {exc}") from None
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
        seq = run(publish())
    except BaseException:
        store.remove_agent(agent_id)  # nothing was vouched for: leave no key behind
        raise
    return agent_id, identity.public_key, seq
