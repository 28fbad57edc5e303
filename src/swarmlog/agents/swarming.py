"""Swarm mode: a replica claims the offers it can do, and runs the ones whose claim it won.

A swarm offer (``task_offered`` with ``mode="swarm"``) goes to every capable agent; each tries
to claim it (:func:`~swarmlog.agents.claims.claim`, optimistic concurrency on the task), and the
one claim that wins makes its agent the task's holder. Internal-only work is left to roles with
no external replica (:func:`~swarmlog.agents.policy.followups.refusal`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from swarmlog.agents.api import Agent
from swarmlog.agents.claims import claim
from swarmlog.agents.jobs import Job, Outcome
from swarmlog.agents.policy.followups import follow_up
from swarmlog.agents.publisher import Publisher
from swarmlog.bus.ports import Delivery, EventLog
from swarmlog.projections.verify import check
from swarmlog.schemas.payloads import TaskAssignment, TaskOffered

__all__ = ["claim_offers"]


async def claim_offers(
    deliveries: Sequence[Delivery],
    *,
    agent: Agent,
    log: EventLog,
    publisher: Publisher,
    refusal: Callable[[TaskAssignment], Awaitable[str | None]],
    taking: Callable[[], bool],
) -> tuple[list[Outcome], list[Job]]:
    """Claim each offer ``agent`` can do while it is ``taking`` work: the outcomes of the
    offers settled here (rejected, not trusted, lost), and the jobs of the claims it won."""
    namespace = publisher.namespace
    outcomes: list[Outcome] = []
    jobs: list[Job] = []
    for delivery in deliveries:
        checked = check(delivery.message, namespace)
        envelope = checked.envelope
        if checked.rejection is not None or envelope is None:
            await delivery.term()  # never act on an event whose signature does not check out
            outcomes.append(Outcome("", "rejected", 1))
            continue
        offer = envelope.payload
        if (
            not isinstance(offer, TaskOffered)
            or offer.mode != "swarm"
            or offer.capability not in agent.capabilities
            or not taking()
        ):
            await delivery.ack()
            continue
        task = follow_up(offer, role=agent.role)
        if await refusal(task) is not None:
            await delivery.ack()  # internal work: left to a role with no external replica
            outcomes.append(Outcome(offer.task_id, "not_trusted", 1))
            continue
        claimed = await claim(log, publisher, offer.task_id)
        if not claimed.won:
            await delivery.ack()  # another agent has it
            outcomes.append(Outcome(offer.task_id, "lost_claim", 1))
            continue
        wf: dict[str, Any] = {"workflow_id": envelope.workflow_id, "causation_id": envelope.id}
        jobs.append(Job(delivery, envelope.id, task, 1, wf, swarm=True))
    return outcomes, jobs
