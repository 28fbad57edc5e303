"""Pulling and releasing kill switches (the shell around :mod:`swarmlog.agents.policy.killflags`).

A kill is written twice, flag first: the KV flag stops the targets' runtimes within a second, the
operator-signed ``agent_killed`` event makes the projector reject whatever a target still emits.
A revive goes the other way round: ``agent_revived`` first, then the flag is deleted, so nothing
a revived agent emits can precede its revival on the log.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import msgspec

from swarmlog.agents.policy.killflags import KillFlag, flag_key
from swarmlog.agents.publisher import Publisher
from swarmlog.config import Settings
from swarmlog.control.broker import refresh_broker, revoked_agents
from swarmlog.control.checks import check_name
from swarmlog.control.daemons import daemon_names, hold
from swarmlog.control.keystore import KeyStore
from swarmlog.control.system import (
    AGENT_DAEMON_PREFIX,
    agent_daemon_name,
    open_log,
    open_projections,
)
from swarmlog.schemas.payloads import AgentKilled, AgentRevived
from swarmlog.schemas.types import AgentId, Role

__all__ = ["Switch", "pull", "release"]


@dataclass(frozen=True)
class Switch:
    """What a kill or revive did: the flag key and the agents it named on the log."""

    flag: str
    agents: list[str]
    seqs: list[int]
    known: bool
    """Whether the targets were known to the projection (a switch may precede its target)."""
    still_refused: list[str] = field(default_factory=list)
    """Agents a revive named whose key is revoked: the broker keeps refusing them."""


async def _targets(
    settings: Settings, agent_id: str | None, role: str | None
) -> tuple[str, list[str], bool]:
    if agent_id is not None:
        check_name(agent_id, "agent id", kind=AgentId)
        rows = await _known(settings, f"SELECT agent_id FROM agents WHERE agent_id = '{agent_id}'")
        return flag_key(agent_id=agent_id), [agent_id], bool(rows)
    if role is not None:
        check_name(role, "role", kind=Role)
        # Validated above: the role cannot carry SQL.
        rows = await _known(
            settings, f"SELECT agent_id FROM agents WHERE role = '{role}' ORDER BY 1"
        )
        return flag_key(role=role), rows, bool(rows)
    return flag_key(), ["*"], True


async def _known(settings: Settings, sql: str) -> list[str]:
    if not settings.projection_path.exists():
        return []
    async with open_projections(settings) as projections:
        return [str(row[0]) for row in (await projections.rows(sql)).rows]


def _hold(settings: Settings, agents: list[str], *, held: bool) -> None:
    """Hold the replicas of ``agents`` (``*``: every one) of this data dir down, or let them go:
    the keeper leaves a held replica down when its process exits."""
    names = (
        daemon_names(settings.run_dir) if "*" in agents else [agent_daemon_name(a) for a in agents]
    )
    for name in names:
        if name.startswith(AGENT_DAEMON_PREFIX):
            hold(settings.run_dir, name, held)


async def pull(
    settings: Settings, *, agent_id: str | None = None, role: str | None = None, reason: str
) -> Switch:
    """Kill one agent, every agent of a role, or (neither given) every agent."""
    operator = KeyStore(settings.keys_dir).operator()
    flag, agents, known = await _targets(settings, agent_id, role)
    async with open_log(settings) as log:
        flags = await log.flags()
        await flags.put(flag, msgspec.json.encode(KillFlag(reason, time.time_ns())))
        publisher = Publisher(log, operator, settings.namespace)
        seqs = [
            (await publisher.publish(AgentKilled(agent_id=a, reason=reason[:4096]))).seq
            for a in agents
        ]
    await refresh_broker(settings)  # and cut off at the broker: its connection is closed now
    _hold(settings, agents, held=True)  # the keeper must not start a killed agent again
    return Switch(flag, agents, seqs, known)


async def release(
    settings: Settings, *, agent_id: str | None = None, role: str | None = None
) -> Switch:
    """Undo :func:`pull` for the same target."""
    operator = KeyStore(settings.keys_dir).operator()
    flag, agents, known = await _targets(settings, agent_id, role)
    async with open_log(settings) as log:
        # The event first: what a revived agent emits must land after its revival.
        publisher = Publisher(log, operator, settings.namespace)
        seqs = [(await publisher.publish(AgentRevived(agent_id=a))).seq for a in agents]
        flags = await log.flags()
        await flags.delete(flag)
    await refresh_broker(settings)  # admitted at the broker again, unless revoked
    refused = sorted(set(agents) & set(await revoked_agents(settings)))
    _hold(settings, [a for a in agents if a not in refused], held=False)  # back, if it exited
    return Switch(flag, agents, seqs, known, refused)
