"""The durable work queues (JetStream pull consumers) each role reads, by name (pure).

One place decides them, because three parties must agree: the runtime that reads them, the
operator that creates them before an agent starts (agents may not create consumers), and the
broker permissions that let an agent read exactly these.
"""

from __future__ import annotations

from swarmlog.bus.ports import QueueSpec
from swarmlog.bus.subjects import inbox_filter, offer_filter, work_filter
from swarmlog.schemas.types import PRIORITIES

__all__ = [
    "GIVE_UP_AFTER",
    "ROUTER_QUEUE_MAX_DELIVER_SLACK",
    "QueueSpec",
    "agent_queues",
    "inbox_queue",
    "priority_queue",
    "queue_names",
    "router_queue",
    "swarm_queue",
    "work_queue_of",
]

ROUTER_QUEUE_MAX_DELIVER_SLACK = 5
"""Deliveries past the router's own give-up count before the server stops redelivering."""


def _priority_queue_name(namespace: str, role: str, priority: str) -> str:
    return f"{namespace}-{role}-{priority}"


def priority_queue(
    namespace: str, role: str, priority: str, *, ack_wait: float, max_deliver: int
) -> QueueSpec:
    """``role``'s assignments at ``priority``, shared by all its replicas."""
    return QueueSpec(
        _priority_queue_name(namespace, role, priority),
        work_filter(namespace, role, priority),
        ack_wait=ack_wait,
        max_deliver=max_deliver,
    )


def swarm_queue(namespace: str, role: str, *, ack_wait: float) -> QueueSpec:
    """Every task offer since the role first started: its replicas share them, so claims race
    between roles, not between replicas of one role."""
    return QueueSpec(
        f"{namespace}-swarm-{role}",
        offer_filter(namespace),
        ack_wait=ack_wait,
        max_deliver=3,
        new_only=True,
    )


def inbox_queue(namespace: str, agent_id: str, *, ack_wait: float) -> QueueSpec:
    """Messages addressed to one agent (clarifications, a deadlock it must break)."""
    return QueueSpec(
        f"{namespace}-inbox-{agent_id}", inbox_filter(namespace, agent_id), ack_wait=ack_wait
    )


GIVE_UP_AFTER = 60
"""Deliveries of one offer before the router escalates it (when no agent can take it)."""


def router_queue(namespace: str, *, give_up_after: int) -> QueueSpec:
    """The task offers the routers share."""
    return QueueSpec(
        f"{namespace}-router",
        offer_filter(namespace),
        ack_wait=30.0,
        max_deliver=give_up_after + ROUTER_QUEUE_MAX_DELIVER_SLACK,
    )


def agent_queues(
    namespace: str,
    role: str,
    agent_id: str,
    *,
    swarm: bool,
    max_attempts: int,
    ack_wait: float,
) -> list[QueueSpec]:
    """Every queue a replica ``agent_id`` of ``role`` reads."""
    # The runtime decides when to stop retrying (by policy); the server's limit is a backstop.
    specs = [
        priority_queue(namespace, role, p, ack_wait=ack_wait, max_deliver=max_attempts + 1)
        for p in PRIORITIES
    ]
    if swarm:
        specs.append(swarm_queue(namespace, role, ack_wait=ack_wait))
    specs.append(inbox_queue(namespace, agent_id, ack_wait=ack_wait))
    return specs


def queue_names(namespace: str, role: str, agent_id: str) -> list[str]:
    """The names of every queue an agent of ``role`` may read (its permissions), swarm or not."""
    specs = agent_queues(namespace, role, agent_id, swarm=True, max_attempts=1, ack_wait=1.0)
    names = [spec.name for spec in specs]
    if role == "router":
        names.append(router_queue(namespace, give_up_after=1).name)
    return names


def work_queue_of(namespace: str, name: str, filter_subject: str) -> tuple[str, str] | None:
    """The ``(role, priority)`` whose assignments the durable consumer ``name`` (filtering on
    ``filter_subject``) holds, ``None`` when it is no role's priority queue: read from the
    filter, which the grammar makes unambiguous (a name such as ``ns-a-b-high`` is not), and
    checked against the name :func:`priority_queue` gives."""
    tokens = filter_subject.split(".")
    if len(tokens) != 7:
        return None
    role, priority = tokens[4], tokens[5]
    if priority not in PRIORITIES or role in ("*", ">"):
        return None
    if name != _priority_queue_name(namespace, role, priority) or filter_subject != work_filter(
        namespace, role, priority
    ):
        return None
    return role, priority
