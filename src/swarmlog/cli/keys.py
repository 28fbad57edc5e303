"""``keys init|show|generate|issue|authorization``: the operator key, agent keys and
credentials, and the broker logins they give."""

from __future__ import annotations

import os
from pathlib import Path

import click
import msgspec

from swarmlog.cli.app import CliContext, emit_json, option_for, pass_ctx, print_table, run
from swarmlog.cli.options import file_option, json_option
from swarmlog.control.broker import authorization_text
from swarmlog.control.issuing import issue_agent
from swarmlog.control.keystore import KeyStore
from swarmlog.errors import ConfigError, KeyStoreError
from swarmlog.files import write_private
from swarmlog.schemas.signing import OPERATOR_ID
from swarmlog.schemas.types import AgentId

__all__ = ["keys"]


@click.group()
def keys() -> None:
    """The operator key (root of trust) and agent credentials."""


@keys.command("init")
@pass_ctx
def keys_init(ctx: CliContext) -> None:
    """Create the operator key under the data dir (mode 0600)."""
    ctx.settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    identity = KeyStore(ctx.settings.keys_dir).init_operator(os.urandom(32))
    ctx.say(f"operator key {identity.public_key}")


@keys.command("show")
@json_option
@pass_ctx
def keys_show(ctx: CliContext, as_json: bool) -> None:
    """The operator public key and the agent credentials issued from this data dir."""
    ctx.settings.require_data_dir()
    store = KeyStore(ctx.settings.keys_dir)
    operator = store.operator_public_key()
    credentials = store.agents()
    if as_json:
        agents = [msgspec.to_builtins(c) for c in credentials]
        emit_json({"operator": operator, "agents": agents})
        return
    ctx.say(f"operator {operator}")
    rows = [
        (
            c.agent_id,
            c.role,
            c.public_key[:16],
            ",".join(c.capabilities),
            c.trust_level,
            ",".join(c.tools),
            ",".join(c.mcp_servers),
        )
        for c in credentials
    ]
    columns = ["agent", "role", "key", "capabilities", "trust", "tools", "mcp servers"]
    print_table(ctx.console, "agents", columns, rows)


@keys.command("generate")
@click.option("--agent-id", required=True, help="The id the operator will issue it as.")
@json_option
@pass_ctx
def keys_generate(ctx: CliContext, agent_id: str, as_json: bool) -> None:
    """Make an agent key here, for an operator elsewhere to vouch for: the secret stays in
    this data dir (keys/agents/ID.seed, mode 0600); give the operator the two public keys
    printed, for `swarmlog keys issue ROLE --agent-id ID --public-key KEY --login-key LOGIN`."""
    try:
        msgspec.convert(agent_id, AgentId)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid agent id {agent_id!r}: {exc}") from None
    if agent_id == OPERATOR_ID:
        raise ConfigError("'operator' is reserved for the operator key; choose another agent id")
    ctx.settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = KeyStore(ctx.settings.keys_dir)
    path = store.create_agent_seed(agent_id, os.urandom(32))
    identity = store.agent_identity(agent_id)
    login = store.login(agent_id)
    if as_json:
        emit_json(
            {
                "agent_id": agent_id,
                "public_key": identity.public_key,
                "login_key": login.public_key,
                "seed_path": str(path),
            }
        )
        return
    ctx.say(f"made a key for {agent_id}; its secret is {path} (mode 0600): it stays here")
    ctx.say(f"public key {identity.public_key}")
    ctx.say(f"login key  {login.public_key}")
    ctx.say(
        f"the operator issues it with: swarmlog keys issue ROLE --agent-id {agent_id}"
        f" --public-key {identity.public_key} --login-key {login.public_key}"
    )


@keys.command("issue")
@click.argument("role", required=False)
@click.option("--role", "role_option", metavar="ROLE", help="The role (or give it first).")
@click.option("--agent-id", help="The agent's id (default: ROLE-<random>).")
@click.option(
    "--public-key",
    help="The agent's Ed25519 public key (hex), for a key made elsewhere: no secret is made or"
    " kept here.",
)
@click.option(
    "--login-key",
    help="With --public-key: the agent's NATS login key (U…), from `swarmlog keys generate`.",
)
@click.option("--capability", "-c", "capabilities", multiple=True, help="Repeatable.")
@click.option(
    "--trust", type=click.Choice(["internal", "external"]), default="internal", show_default=True
)
@click.option("--allow", "allowed", multiple=True, help="Event types it may emit (default: all).")
@click.option(
    "--tool",
    "tools",
    multiple=True,
    help="A tool it may call: a Python tool's name or SERVER.TOOL (default: none). Repeatable.",
)
@click.option(
    "--mcp",
    "mcp_servers",
    multiple=True,
    metavar="SERVER",
    help="An MCP server every tool of which it may call. Repeatable.",
)
@click.option(
    "--expires-in", type=click.FloatRange(min=0.0, max=36_500.0, min_open=True), help="Days."
)
@json_option
@pass_ctx
def keys_issue(
    ctx: CliContext,
    role: str | None,
    role_option: str | None,
    agent_id: str | None,
    public_key: str | None,
    login_key: str | None,
    capabilities: tuple[str, ...],
    trust: str,
    allowed: tuple[str, ...],
    tools: tuple[str, ...],
    mcp_servers: tuple[str, ...],
    expires_in: float | None,
    as_json: bool,
) -> None:
    """Create an agent key and publish its operator-signed credential to the log (with
    --public-key: vouch for a key made elsewhere, e.g. an auditor's)."""
    settings = ctx.settings
    if role is not None and role_option is not None and role != role_option:
        raise click.UsageError(f"two roles given ({role} and --role {role_option}); give one")
    role = role or role_option
    if role is None:
        raise click.UsageError("give the role: `keys issue ROLE` or `keys issue --role ROLE`")
    try:
        agent_id, public_key, seq = run(
            issue_agent(
                settings,
                role,
                agent_id=agent_id,
                capabilities=capabilities,
                trust=trust,
                allowed=allowed,
                expires_in=expires_in,
                tools=tools,
                mcp_servers=mcp_servers,
                public_key=public_key,
                login_key=login_key,
            )
        )
    except (ConfigError, KeyStoreError) as exc:
        option = option_for(exc.parameter)
        if option is None:
            raise
        raise type(exc)(f"{exc.message} (see {option})", parameter=exc.parameter) from None
    if as_json:
        emit_json(
            {
                "agent_id": agent_id,
                "role": role,
                "public_key": public_key,
                "seq": seq,
                "tools": list(dict.fromkeys(tools)),
                "mcp_servers": list(dict.fromkeys(mcp_servers)),
            }
        )
        return
    ctx.say(f"issued {agent_id} ({role}) key {public_key[:16]}… at seq {seq}")


@keys.command("authorization")
@file_option("--out", "Write it to this file (mode 0600) instead of printing it.")
@pass_ctx
def keys_authorization(ctx: CliContext, out: Path | None) -> None:
    """The nats-server `accounts` block admitting the operator and every agent of this data
    dir, each with its permissions: include it in your own server's configuration (the embedded
    server is kept up to date by itself)."""
    ctx.settings.require_data_dir()
    text = authorization_text(ctx.settings)
    if out is None:
        click.echo(text, nl=False)
        return
    write_private(out, text)
    ctx.say(f"wrote {out}; `include` it in the server's configuration and reload it")
