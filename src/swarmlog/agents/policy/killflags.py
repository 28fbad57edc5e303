"""Kill flags (pure): which of the kill switches' flags stop which agent.

A kill switch is two things at once: an operator-signed ``agent_killed`` event (so the projector
rejects anything the target emits afterwards) and a flag in the namespace's KV bucket that every
runtime watches (so the target stops taking and emitting work within a second). Flag keys:

``all``                 every agent of the namespace
``role.<role>``         every replica of a role
``agent.<agent_id>``    one agent
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

__all__ = ["KillFlag", "flag_key", "killed_by"]

ALL = "all"


class KillFlag(msgspec.Struct, frozen=True):
    """The value of a kill-switch flag."""

    reason: str = ""
    at: int = 0
    """When the operator pulled it (ns since the epoch)."""


def flag_key(*, agent_id: str | None = None, role: str | None = None) -> str:
    """The flag key for one agent, one role, or (neither given) every agent."""
    if agent_id is not None:
        return f"agent.{agent_id}"
    if role is not None:
        return f"role.{role}"
    return ALL


def killed_by(flags: Mapping[str, bytes], agent_id: str, role: str) -> KillFlag | None:
    """The kill switch that stops ``agent_id`` (of ``role``), if any."""
    for key in (ALL, flag_key(role=role), flag_key(agent_id=agent_id)):
        raw = flags.get(key)
        if raw is not None:
            try:
                return msgspec.json.decode(raw, type=KillFlag)
            except msgspec.DecodeError:
                return KillFlag("unreadable kill flag")  # fail safe: a flag is a flag
    return None
