"""``kill`` and ``revive``: the kill switches."""

from __future__ import annotations

import click

from swarmlog.cli.app import CliContext, emit_json, pass_ctx, run
from swarmlog.control.killswitches import Switch, pull, release
from swarmlog.errors import ConfigError

__all__ = ["kill", "revive"]


def _target(agent_id: str | None, role: str | None, every: bool, verb: str) -> None:
    if sum((agent_id is not None, role is not None, every)) != 1:
        raise ConfigError(f"give exactly one of AGENT, --role R or --all to {verb}")


def _report(ctx: CliContext, switch: Switch, verb: str, as_json: bool) -> None:
    if as_json:
        emit_json({"flag": switch.flag, "agents": switch.agents, "seqs": switch.seqs})
        return
    names = ", ".join(switch.agents) if switch.agents else "(no agent yet)"
    ctx.say(f"{verb} {names} (flag {switch.flag})")
    if switch.still_refused:
        ctx.warn(
            f"note: the key of {', '.join(switch.still_refused)} is revoked: the broker keeps"
            " refusing it; issue a new agent id to bring its work back"
        )
    if not switch.known:
        ctx.warn("note: no such agent is known to the projection yet; the switch holds anyway")


@click.command()
@click.argument("agent_id", metavar="AGENT", required=False)
@click.option("--role", help="Kill every replica of this role.")
@click.option("--all", "every", is_flag=True, help="Kill every agent (the log stays queryable).")
@click.option("--reason", required=True, help="Why: recorded in the signed event.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def kill(
    ctx: CliContext, agent_id: str | None, role: str | None, every: bool, reason: str, as_json: bool
) -> None:
    """Stop AGENT, a --role or --all agents from taking or emitting work (within a second)."""
    _target(agent_id, role, every, "kill")
    ctx.settings.require_data_dir()
    switch = run(pull(ctx.settings, agent_id=agent_id, role=role, reason=reason))
    _report(ctx, switch, "killed", as_json)


@click.command()
@click.argument("agent_id", metavar="AGENT", required=False)
@click.option("--role", help="Revive a role killed with --role.")
@click.option("--all", "every", is_flag=True, help="Lift the whole-system switch.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def revive(
    ctx: CliContext, agent_id: str | None, role: str | None, every: bool, as_json: bool
) -> None:
    """Undo a kill switch."""
    _target(agent_id, role, every, "revive")
    ctx.settings.require_data_dir()
    switch = run(release(ctx.settings, agent_id=agent_id, role=role))
    _report(ctx, switch, "revived", as_json)
