"""A replica's inbox: messages addressed to the agent itself, read while its work runs.

Three kinds matter: a **clarification request** another agent asks (answered by the agent's
handler for it, in a task of its own, so a handler that itself asks does not block the inbox),
the **answer** to a question this agent asked (:meth:`Inbox.ask` is waiting for it), and a
``deadlock_detected`` naming one of this agent's waits as the victim (that wait gives up with a
retryable ``deadlock`` error, so the others on the cycle proceed). Anything unverified is
terminated unread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from swarmlog.agents.api import Agent, Context, TaskError
from swarmlog.agents.flagwatch import FlagWatch
from swarmlog.agents.jobs import Job
from swarmlog.agents.policy import idle
from swarmlog.agents.publisher import Publisher, Speaker
from swarmlog.bus.ports import Delivery, Doorbell, EventLog, WorkQueue
from swarmlog.bus.queues import QueueSpec
from swarmlog.projections.verify import check
from swarmlog.schemas.envelope import Envelope
from swarmlog.schemas.payloads import (
    ClarificationRequest,
    ClarificationResponse,
    DeadlockDetected,
)

__all__ = ["Inbox"]

log = logging.getLogger(__name__)

_SWEEP = idle.FIRST
"""A killed inbox looks at its kill flag this often."""
_RUNG_WAIT = 0.02
"""How long a fetch waits after a ring (the ring can overtake the store)."""


@dataclass(eq=False, repr=False)  # compared and shown as an object, as before
class Inbox(Speaker):
    """Reads one replica's inbox and keeps its open questions."""

    agent: Agent
    publisher: Publisher
    watch: FlagWatch
    """The replica's kill switches: a killed replica's inbox waits for them to change."""
    killed: Callable[[], bool]
    """Whether the replica is killed now (it reads nothing then)."""
    _answers: dict[str, asyncio.Future[str]] = field(default_factory=dict, init=False)
    _queue: WorkQueue | None = field(default=None, init=False)
    _bell: Doorbell | None = field(default=None, init=False)
    _reader: asyncio.Task[None] | None = field(default=None, init=False)
    _answering: set[asyncio.Task[None]] = field(default_factory=set, init=False)
    _closing: bool = field(default=False, init=False)

    async def start(self, log: EventLog, spec: QueueSpec) -> None:
        """Open the inbox's queue (``spec``) and start reading it."""
        self._bell = await log.doorbell(spec.filter_subject)
        self._queue = await log.work_queue(spec)
        self._reader = asyncio.create_task(self._read())

    async def close(self) -> None:
        # The loop also checks the flag: Python 3.11's wait_for can swallow a cancellation.
        self._closing = True
        for task in self._answering:
            task.cancel()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None
        if self._bell is not None:
            await self._bell.close()
            self._bell = None
        if self._queue is not None:
            await self._queue.close()
            self._queue = None

    async def _read(self) -> None:
        assert self._queue is not None
        assert self._bell is not None
        wait: float | None = None
        while not self._closing:
            if self.killed():
                await self.watch.wait_changed(_SWEEP)
                continue
            deliveries = await self._queue.fetch(16, timeout=_RUNG_WAIT)
            wait = idle.next_wait(wait, bool(deliveries), most=idle.QUIET_MOST)
            if not deliveries:
                # A new message rings at once; the wait bounds how late a redelivery is seen.
                if await self._bell.wait(wait):
                    wait = None
                continue
            for delivery in deliveries:
                try:
                    await self._on_message(delivery)
                except Exception as exc:  # one bad message must not stop the inbox
                    log.warning("inbox message seq %d failed: %s", delivery.message.seq, exc)

    async def _on_message(self, delivery: Delivery) -> None:
        checked = check(delivery.message, self.namespace)
        envelope = checked.envelope
        if checked.rejection is not None or envelope is None:
            await delivery.term()
            return
        message = envelope.payload
        if isinstance(message, ClarificationResponse):
            waiting = self._answers.get(message.request_id)
            if waiting is not None and not waiting.done():
                waiting.set_result(message.answer)
            await delivery.ack()
        elif isinstance(message, DeadlockDetected):
            waiting = self._answers.get(message.victim or "")
            if waiting is not None and not waiting.done():
                # Chosen to give up its wait so the others on the cycle proceed: the handler
                # sees a retryable error, and the task is retried by the agent's policy.
                cycle = " -> ".join(message.cycle)
                waiting.set_exception(
                    TaskError("deadlock", f"gave up a wait to break the deadlock {cycle}")
                )
            await delivery.ack()
        elif isinstance(message, ClarificationRequest):
            # Answered in its own task: a handler that itself asks must not block the inbox.
            answering = asyncio.create_task(self._answer(delivery, envelope, message))
            self._answering.add(answering)
            answering.add_done_callback(self._answering.discard)
        else:
            await delivery.ack()

    async def _answer(
        self, delivery: Delivery, envelope: Envelope, request: ClarificationRequest
    ) -> None:
        handler = self.agent.handler_for(request)
        if handler is None:
            answer = f"{self.agent.role} does not answer questions"
        else:
            ctx = Context(self.agent_id, None)
            try:
                answer = str(await handler(self.agent, request, ctx))
            except Exception as exc:
                answer = f"could not answer: {type(exc).__name__}: {exc}"
        response = ClarificationResponse(
            request_id=request.request_id,
            to=envelope.sender,
            answer=answer[:65_536],
            task_id=request.task_id,
        )
        await self.publisher.publish(
            response,
            recipient=envelope.sender,
            workflow_id=envelope.workflow_id,
            causation_id=envelope.id,
        )
        await delivery.ack()

    async def ask(self, to: str, question: str, timeout: float, job: Job) -> str:
        """Publish a clarification request for ``job`` and wait for its answer."""
        request_id = f"q{secrets.token_hex(12)}"
        answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._answers[request_id] = answer
        try:
            await self.publisher.publish(
                ClarificationRequest(
                    request_id=request_id,
                    to=to,
                    question=question[:65_536],
                    task_id=job.task.task_id,
                ),
                recipient=to,
                **job.wf,
            )
            return await asyncio.wait_for(answer, timeout)
        except TimeoutError:
            raise TaskError(
                "clarification_timeout", f"{to} did not answer within {timeout:g} s"
            ) from None
        finally:
            self._answers.pop(request_id, None)
