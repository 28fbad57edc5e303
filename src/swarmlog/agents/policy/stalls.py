"""Stalled work (pure): tasks that should be moving and have shown no sign of it for too long.

A task that is assigned, claimed, running or waiting for a retry changes on the log as it moves:
attempts, retries, its model and tool calls, the progress its handler reports. One whose last
event is older than ``after`` seconds, and that no live replica says it holds (a long task in
hand is named in its replica's presence, see :func:`~swarmlog.agents.policy.liveness.held_tasks`,
instead of beating on the log), is stalled: its worker is gone and the server will not redeliver
it, or no replica of its role is left to take it. The watchdog escalates it to a human.
"""

from __future__ import annotations

from collections.abc import Container, Iterable

from swarmlog.agents.policy.values import Value

__all__ = ["MOVING", "Stall", "stalled"]

MOVING = frozenset({"assigned", "claimed", "running", "errored", "retry_scheduled"})
"""Task states that are expected to change by themselves."""


class Stall(Value):
    task_id: str
    status: str
    idle_s: float
    """Seconds since the task's last event."""


def stalled(
    tasks: Iterable[tuple[str, str, int | None]],
    *,
    now: int,
    after: float,
    held: Container[str] = frozenset(),
) -> list[Stall]:
    """The tasks ``(task_id, status, updated_at ns)`` idle for more than ``after`` seconds,
    except those in ``held`` (in the hands of a live replica)."""
    found = []
    for task_id, status, updated_at in tasks:
        if status not in MOVING or updated_at is None or task_id in held:
            continue
        idle = (now - updated_at) / 1e9
        if idle > after:
            found.append(Stall(task_id, status, round(idle, 1)))
    return sorted(found, key=lambda s: (-s.idle_s, s.task_id))
