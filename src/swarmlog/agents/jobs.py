"""What the runtime hands around while it works: a delivery's :class:`Outcome`, the :class:`Job`
a screened delivery becomes, and reading what the log says about a task.

Every read of the log here goes through the verifier: an event whose signature does not check
out is never trusted, so a forged result cannot make a replica skip work, nor a forged
checkpoint steer it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from swarmlog.agents.publisher import Published, Publisher
from swarmlog.bus.ports import Delivery, EventLog
from swarmlog.bus.subjects import task_event_filter
from swarmlog.projections.client import Query
from swarmlog.projections.verify import check
from swarmlog.schemas.envelope import Envelope
from swarmlog.schemas.payloads import Payload, TaskAssignment, TaskCheckpointed

__all__ = ["Job", "Outcome", "last_checkpoint", "last_verified"]


@dataclass(frozen=True)
class Outcome:
    """What the runtime did with one delivery."""

    task_id: str
    status: str
    """``succeeded``, ``retrying``, ``escalated``, ``reassigned``, ``timed_out``,
    ``duplicate``, ``handed_back`` (killed mid-task), ``rejected``, or for a swarm offer
    ``lost_claim`` and ``not_trusted`` (internal-only work this role may not take)."""
    attempt: int
    delay: float = 0.0


@dataclass
class Job:
    """A screened delivery about to run."""

    delivery: Delivery
    event_id: str
    task: TaskAssignment
    attempt: int
    wf: dict[str, Any]
    """The envelope fields of everything published about it (workflow, causation)."""
    index: int = 0
    swarm: bool = False
    """Claimed from a swarm offer (not delivered from a work queue)."""


@dataclass(frozen=True)
class JobScope:
    """What a job's handler port and its call journal share: the job, the publisher its events
    go out by, and the projection it reads (``None``: it may not)."""

    job: Job
    publisher: Publisher
    query: Query | None

    async def publish(self, payload: Payload) -> Published:
        """Publish ``payload`` as part of the job: in its workflow, caused by its assignment."""
        return await self.publisher.publish(payload, **self.job.wf)


async def last_verified(log: EventLog, filter_subject: str, namespace: str) -> Envelope | None:
    """The last event on ``filter_subject`` if it checks out (else, or without one, ``None``)."""
    last = await log.last_message(filter_subject)
    if last is None:
        return None
    checked = check(last, namespace)
    if checked.rejection is not None or checked.envelope is None:
        return None
    return checked.envelope


async def last_checkpoint(log: EventLog, namespace: str, task_id: str) -> Any:
    """The data of the task's last checkpoint, for a retry to resume from (``None``: none)."""
    subject = task_event_filter(namespace, task_id, "task_checkpointed")
    saved = await last_verified(log, subject, namespace)
    payload = saved.payload if saved is not None else None
    return payload.data if isinstance(payload, TaskCheckpointed) else None
