"""The swarm-mode claim protocol: a task offered to every capable agent is claimed by exactly one.

A claim is a ``task_claimed`` event appended only if the task's aggregate
(``swarmlog.<ns>.*.task.<id>.>``) still ends at the offer: optimistic concurrency on the stream
itself, so however many agents race, one append wins and the others get a conflict.
"""

from __future__ import annotations

from typing import NamedTuple

from swarmlog.agents.publisher import Publisher
from swarmlog.bus.ports import EventLog
from swarmlog.bus.subjects import aggregate_filter
from swarmlog.errors import ConcurrencyConflict, SchemaError
from swarmlog.schemas.codec import decode_envelope, decode_signed
from swarmlog.schemas.payloads import TaskClaimed, TaskOffered

__all__ = ["ClaimOutcome", "claim"]


class ClaimOutcome(NamedTuple):
    """Whether this agent won the task; ``seq`` is where its claim was stored."""

    won: bool
    seq: int = 0
    reason: str = ""


async def claim(log: EventLog, publisher: Publisher, task_id: str) -> ClaimOutcome:
    """Try to claim ``task_id`` for ``publisher``'s agent."""
    aggregate = aggregate_filter(publisher.namespace, "task", task_id)
    last = await log.last_message(aggregate)
    if last is None:
        return ClaimOutcome(False, reason="no such task")
    try:
        envelope = decode_envelope(decode_signed(last.data).body)
    except SchemaError:
        return ClaimOutcome(False, reason="the task's last event is unreadable")
    if not isinstance(envelope.payload, TaskOffered):
        return ClaimOutcome(False, reason=f"the task is past its offer ({envelope.type})")
    try:
        published = await publisher.publish(
            TaskClaimed(task_id=task_id, agent_id=publisher.identity.agent_id),
            expect=(aggregate, last.seq),
            workflow_id=envelope.workflow_id,
        )
    except ConcurrencyConflict:
        return ClaimOutcome(False, reason="another agent claimed it first")
    return ClaimOutcome(True, published.seq)
