"""The agent runtime (the shell): register, take work by priority, run handlers, settle.

Work for a role arrives as ``task_assignment`` events on one durable consumer per priority level,
shared by every replica of the role. The runtime always looks at the most urgent level first. A
handler's result is published before the delivery is acked (at-least-once in; the projection keeps
one outcome per task). A failure is retried by the agent's :class:`RetryPolicy`: ``nak`` with the
policy's delay and a ``task_retry_scheduled`` event; after the last attempt, or at once for a
non-retryable error, an ``error`` and a ``task_escalated`` event are published and the delivery
is terminated.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from swarmlog.agents.api import Agent, Context, TaskError
from swarmlog.bus.ports import Delivery, EventLog, WorkQueue
from swarmlog.bus.subjects import work_filter
from swarmlog.projections.verify import check
from swarmlog.publisher import Publisher
from swarmlog.schemas.payloads import (
    AgentRegistered,
    Error,
    Result,
    TaskAssignment,
    TaskEscalated,
    TaskRetryScheduled,
    TaskStarted,
)
from swarmlog.schemas.types import PRIORITIES

__all__ = ["AgentRuntime", "Outcome"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What the runtime did with one delivery."""

    task_id: str
    status: str  # "succeeded", "retrying", "escalated", "rejected"
    attempt: int
    delay: float = 0.0


class AgentRuntime:
    """Runs one replica of an :class:`Agent` against an event log."""

    def __init__(
        self,
        agent: Agent,
        log: EventLog,
        publisher: Publisher,
        *,
        replica: str = "",
        ack_wait: float = 30.0,
        draw: Callable[[], float] | None = None,
    ) -> None:
        if not agent.role:
            raise ValueError(f"{type(agent).__name__} has no role")
        self.agent = agent
        self.log = log
        self.publisher = publisher
        self.namespace = publisher.namespace
        self.replica = replica
        self.ack_wait = ack_wait
        self._draw = draw or random.Random().random
        self._queues: list[tuple[str, WorkQueue]] = []
        self.in_flight = 0

    @property
    def agent_id(self) -> str:
        return self.publisher.identity.agent_id

    async def start(self) -> None:
        """Announce this replica and open the role's work queues (most urgent first)."""
        await self.publisher.publish(
            AgentRegistered(
                agent_id=self.agent_id,
                role=self.agent.role,
                capabilities=list(self.agent.capabilities),
                tier=self.agent.tier,
                replica=self.replica,
            )
        )
        role = self.agent.role
        for priority in PRIORITIES:
            queue = await self.log.work_queue(
                f"{self.namespace}-{role}-{priority}",
                work_filter(self.namespace, role, priority),
                ack_wait=self.ack_wait,
                # The runtime decides when to stop (by policy); the server is the backstop.
                max_deliver=self.agent.retry.max_attempts + 1,
            )
            self._queues.append((priority, queue))

    async def close(self) -> None:
        for _, queue in self._queues:
            await queue.close()
        self._queues = []

    async def step(self, wait: float = 0.5) -> Outcome | None:
        """Take and handle at most one task, the most urgent available; ``None`` if none came."""
        last = len(self._queues) - 1
        for i, (_, queue) in enumerate(self._queues):
            # Only the least urgent level waits: an urgent task is never behind a wait.
            deliveries = await queue.fetch(1, timeout=wait if i == last else 0.001)
            if deliveries:
                return await self.handle(deliveries[0])
        return None

    async def run(self, stop: asyncio.Event) -> None:
        """Handle tasks until ``stop`` is set."""
        while not stop.is_set():
            await self.step()

    async def handle(self, delivery: Delivery) -> Outcome:
        checked = check(delivery.message, self.namespace)
        envelope = checked.envelope
        if checked.rejection is not None or envelope is None:
            await delivery.term()  # never run an event whose signature does not check out
            reason = checked.rejection.reason if checked.rejection else "malformed"
            log.warning("rejected work seq %d: %s", delivery.message.seq, reason)
            return Outcome("", "rejected", delivery.num_delivered)
        task = envelope.payload
        assert isinstance(task, TaskAssignment)
        attempt = task.attempt + delivery.num_delivered - 1
        wf: dict[str, Any] = {"workflow_id": envelope.workflow_id, "causation_id": envelope.id}
        handler = self.agent.handler_for(task)
        self.in_flight += 1
        try:
            await self.publisher.publish(TaskStarted(task_id=task.task_id, attempt=attempt), **wf)
            if handler is None:
                raise TaskError(
                    "no_handler", f"{self.agent.role} cannot handle it", retryable=False
                )
            ctx = Context(self.agent_id, task, attempt)
            output = await handler(self.agent, task, ctx)
        except Exception as exc:
            return await self._failed(delivery, task, attempt, exc, wf)
        finally:
            self.in_flight -= 1
        await self.publisher.publish(
            Result(task_id=task.task_id, output=output, usage=ctx.total_usage()), **wf
        )
        await delivery.ack()
        return Outcome(task.task_id, "succeeded", attempt)

    async def _failed(
        self,
        delivery: Delivery,
        task: TaskAssignment,
        attempt: int,
        exc: Exception,
        wf: dict[str, Any],
    ) -> Outcome:
        error = exc if isinstance(exc, TaskError) else TaskError(type(exc).__name__, str(exc))
        decision = self.agent.retry.decide(attempt, retryable=error.retryable, draw=self._draw())
        await self.publisher.publish(
            Error(
                task_id=task.task_id,
                code=error.code[:128],
                message=error.message[:4096],
                retryable=decision.retry,
            ),
            **wf,
        )
        if decision.retry:
            await self.publisher.publish(
                TaskRetryScheduled(
                    task_id=task.task_id, attempt=attempt + 1, delay_ms=int(decision.delay * 1000)
                ),
                **wf,
            )
            await delivery.nak(decision.delay)
            return Outcome(task.task_id, "retrying", attempt, decision.delay)
        await self.publisher.publish(
            TaskEscalated(task_id=task.task_id, reason=decision.reason), **wf
        )
        await delivery.term()
        return Outcome(task.task_id, "escalated", attempt)
