"""Settlement (the shell): carry out what :mod:`swarmlog.agents.policy.settle` decides for a
delivery.

Screening (:meth:`Settler.screen`) settles what must not run at all. Each settlement is a few
events and one settle of the delivery: a retry is an ``error``, a
``task_retry_scheduled`` and a ``nak`` with the policy's delay; a hand-over an ``error`` and the
follow-up assignment to the fallback role; an escalation an ``error`` and a ``task_escalated``;
a timeout an ``error`` and a final ``task_failed``. A delivery is terminated (or, for a claimed
swarm task, acknowledged) only after its events are stored. Settled assignments are remembered
by event id, so a redelivery of settled work is acknowledged without running it again.
"""

from __future__ import annotations

import logging
import traceback
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from swarmlog.agents.api import Agent, TaskError
from swarmlog.agents.jobs import Job, Outcome, last_verified
from swarmlog.agents.policy import screening, settle
from swarmlog.agents.policy.followups import follow_up, refusal
from swarmlog.agents.policy.retry import RetryPolicy
from swarmlog.agents.policy.routing import AGENTS_SQL, agent_view
from swarmlog.agents.publisher import Publisher, Speaker
from swarmlog.bus.ports import Delivery, EventLog
from swarmlog.bus.subjects import task_event_filter
from swarmlog.projections.client import Query
from swarmlog.projections.verify import check
from swarmlog.schemas import payloads as p
from swarmlog.schemas.envelope import Envelope

__all__ = ["Settler", "crash_traceback", "task_error"]

log = logging.getLogger(__name__)

_REMEMBERED = 4096
"""Assignment ids a replica has settled, kept to drop duplicates without a lookup."""


def task_error(exc: BaseException, policy: RetryPolicy | None = None) -> TaskError:
    """Any failure as a :class:`TaskError` whose ``retryable`` says whether another attempt may
    cure it, as ``policy`` judges (see :meth:`RetryPolicy.retries`).

    A :class:`TaskError` keeps its code and its own verdict, unless its code is one of the
    policy's non-retryable error types. Any other exception is coded by its type's name
    (``ValueError``) and is retryable unless that type or one of its bases is non-retryable,
    or it says so itself (a :class:`~swarmlog.errors.ModelError`'s ``retryable``: a model's
    4xx other than 408 and 429 is not).
    """
    policy = policy or RetryPolicy()
    if isinstance(exc, TaskError):
        if exc.retryable and not policy.retries([exc.code]):
            return TaskError(exc.code, exc.message, retryable=False, dependency=exc.dependency)
        return exc
    said = getattr(exc, "retryable", True)
    names = [cls.__name__ for cls in type(exc).__mro__]
    retryable = policy.retries(names, retryable=said if isinstance(said, bool) else True)
    return TaskError(type(exc).__name__, str(exc), retryable=retryable)


_CUT = "(earlier lines cut: the agent's log has the whole traceback)\n"


def crash_traceback(exc: BaseException, limit: int = p.MAX_TRACEBACK) -> str:
    """The traceback of a handler's crash as the agent's log prints it, cut to its last
    ``limit`` characters at a line's start: the innermost frames and the exception are what
    say where it crashed. Nothing is added to what the log already holds (no local values)."""
    text = "".join(traceback.format_exception(exc)).rstrip("\n")
    if len(text) <= limit:
        return text
    tail = text[len(text) - (limit - len(_CUT)) :]
    return _CUT + tail[tail.find("\n") + 1 :]


@dataclass(eq=False, repr=False)  # compared and shown as an object, as before
class Settler(Speaker):
    """Settles one replica's deliveries."""

    agent: Agent
    log: EventLog
    publisher: Publisher
    _: KW_ONLY
    query: Query | None
    """Read-only SQL over the projections: the agents internal-only work is judged on
    (``None``: none can be read, and such work is refused)."""
    draw: Callable[[], float]
    """Uniform in [0, 1): the retry policy's jitter."""
    clock: Callable[[], int]
    _settled: OrderedDict[str, None] = field(default_factory=OrderedDict, init=False)

    # -- idempotency by event id ------------------------------------------------------------------

    async def already_settled(self, envelope: Envelope, delivery: Delivery) -> bool:
        """Whether this assignment already has its result."""
        if envelope.id in self._settled:
            return True
        if delivery.num_delivered == 1:
            return False  # first delivery: nothing can have answered it yet
        task = envelope.payload
        assert isinstance(task, p.TaskAssignment)
        # A forged result must not make us skip work: only a verified one counts.
        subject = task_event_filter(self.namespace, task.task_id, "result")
        answered = await last_verified(self.log, subject, self.namespace)
        return answered is not None and answered.causation_id == envelope.id

    def remember(self, event_id: str) -> None:
        self._settled[event_id] = None
        while len(self._settled) > _REMEMBERED:
            self._settled.popitem(last=False)

    async def screen(
        self, delivery: Delivery, *, killed: bool, over_budget: bool, agent_id: str, spent: int
    ) -> Outcome | Job:
        """Settle what must not run (forged, killed, duplicate, late, over budget), as
        :func:`screening.screen` decides; the rest is a job. ``spent`` is the replica's
        tokens so far (an escalation for its budget says it)."""
        checked = check(delivery.message, self.namespace)
        envelope = checked.envelope
        task = envelope.payload if envelope is not None else None
        verified = checked.rejection is None and isinstance(task, p.TaskAssignment)
        # Looked up only when it can matter: the verdicts before it come first.
        duplicate = (
            verified
            and not killed
            and envelope is not None
            and await self.already_settled(envelope, delivery)
        )
        verdict = screening.screen(
            verified=verified,
            killed=killed,
            duplicate=duplicate,
            deadline_at=task.deadline_at if isinstance(task, p.TaskAssignment) else None,
            now=self.clock(),
            over_budget=over_budget,
        )
        if verdict == "rejected" or envelope is None or not isinstance(task, p.TaskAssignment):
            await delivery.term()  # never run an event whose signature does not check out
            reason = checked.rejection.reason if checked.rejection else "malformed"
            log.warning("rejected work seq %d: %s", delivery.message.seq, reason)
            return Outcome("", "rejected", delivery.num_delivered)
        attempt = screening.attempt_of(task.attempt, delivery.num_delivered)
        wf: dict[str, Any] = {"workflow_id": envelope.workflow_id, "causation_id": envelope.id}
        match verdict:
            case "handed_back":
                await delivery.nak()  # taken in the instant of the kill: hand it back untouched
                return Outcome(task.task_id, "handed_back", attempt)
            case "duplicate":
                await delivery.ack()
                return Outcome(task.task_id, "duplicate", attempt)
            case "timed_out":
                return await self.timed_out(delivery, task, attempt, wf)
            case "over_budget":
                return await self.over_budget(
                    delivery, task, attempt, wf, agent_id=agent_id, spent=spent
                )
        return Job(delivery, envelope.id, task, attempt, wf)

    # -- settlements ------------------------------------------------------------------------------

    async def failed(self, job: Job, exc: BaseException) -> Outcome:
        """Settle a job whose handler raised ``exc``."""
        error = task_error(exc, self.agent.retry)
        task = job.task
        if isinstance(exc, TaskError):  # the handler's own verdict: one line says it
            log.error(
                "%s attempt %d failed: %s: %s", task.task_id, job.attempt, exc.code, exc.message
            )
        else:  # a crash of the handler: its whole traceback, for whoever reads the agent's log
            log.error(
                "%s attempt %d: the handler raised",
                task.task_id,
                job.attempt,
                exc_info=(type(exc), exc, exc.__traceback__),
            )
        late = isinstance(exc, TimeoutError) and screening.past(task.deadline_at, self.clock())
        decision = settle.after_failure(
            self.agent.retry,
            attempt=job.attempt,
            retryable=error.retryable,
            draw=self.draw(),
            role=task.role,
            fallback_role=self.agent.fallback_role,
            code=error.code,
            swarm=job.swarm,
            timed_out=late,
        )
        if isinstance(decision, settle.TimedOut):
            return await self.timed_out(job.delivery, task, job.attempt, job.wf)
        await self.publisher.publish(
            p.Error(
                task_id=task.task_id,
                code=error.code[:128],
                message=error.message[:4096],
                retryable=settle.says_retryable(decision, swarm=job.swarm),
                # The work's own fault, not its role's: no circuit counts it (see breakers).
                permanent=not error.retryable,
                dependency=self._dependency(error),
                # A crash carries where it happened; a TaskError is the handler's own verdict.
                traceback="" if isinstance(exc, TaskError) else crash_traceback(exc),
            ),
            **job.wf,
        )
        match decision:
            case settle.Retry(attempt=attempt, delay=delay):
                await self.publisher.publish(
                    p.TaskRetryScheduled(
                        task_id=task.task_id, attempt=attempt, delay_ms=int(delay * 1000)
                    ),
                    **job.wf,
                )
                await job.delivery.nak(delay)
                return Outcome(task.task_id, "retrying", job.attempt, delay)
            case settle.HandOver(role=role):
                return await self._hand_over(job.delivery, task, job.attempt, job.wf, role)
            case settle.Escalate(reason=reason):
                await self.publisher.publish(
                    p.TaskEscalated(task_id=task.task_id, reason=reason), **job.wf
                )
                if job.swarm:
                    await job.delivery.ack()  # its claim is on the log: no queue to go back to
                else:
                    await job.delivery.term()
                return Outcome(task.task_id, "escalated", job.attempt)
        raise AssertionError(f"unknown settlement {decision!r}")

    async def timed_out(
        self, delivery: Delivery, task: p.TaskAssignment, attempt: int, wf: dict[str, Any]
    ) -> Outcome:
        await self.publisher.publish(
            p.Error(
                task_id=task.task_id, code="timed_out", message="past its deadline", retryable=False
            ),
            **wf,
        )
        await self.publisher.publish(
            p.TaskFailed(task_id=task.task_id, reason="timed out", final=True), **wf
        )
        await delivery.term()
        return Outcome(task.task_id, "timed_out", attempt)

    async def over_budget(
        self,
        delivery: Delivery,
        task: p.TaskAssignment,
        attempt: int,
        wf: dict[str, Any],
        *,
        agent_id: str,
        spent: int,
    ) -> Outcome:
        """Settle work a replica past its token budget must not spend on."""
        decision = settle.over_budget(
            role=task.role, fallback_role=self.agent.fallback_role, agent_id=agent_id, spent=spent
        )
        if isinstance(decision, settle.HandOver):
            return await self._hand_over(delivery, task, attempt, wf, decision.role)
        await self.publisher.publish(
            p.TaskEscalated(task_id=task.task_id, reason=decision.reason), **wf
        )
        await delivery.term()
        return Outcome(task.task_id, "escalated", attempt)

    def _dependency(self, error: TaskError) -> str | None:
        """The failed dependency an error names, if the agent declared it (else none: a
        handler cannot open the circuit of something it does not depend on)."""
        return error.dependency if error.dependency in self.agent.dependencies else None

    async def _hand_over(
        self,
        delivery: Delivery,
        task: p.TaskAssignment,
        attempt: int,
        wf: dict[str, Any],
        role: str,
    ) -> Outcome:
        handed = follow_up(task, role=role, attempts=attempt)
        refused = await self.refusal(handed)
        if refused is not None:
            # The router's rule holds here too: a human decides where internal work goes.
            log.warning("not handed over: %s", refused)
            escalated = p.TaskEscalated(task_id=task.task_id, reason=refused)
            await self.publisher.publish(escalated, **wf)
            await delivery.term()
            return Outcome(task.task_id, "escalated", attempt)
        await self.publisher.publish(handed, **wf)
        await delivery.term()
        return Outcome(task.task_id, "reassigned", attempt)

    async def refusal(self, task: p.TaskAssignment) -> str | None:
        """Why ``task`` must not go to its role (see :func:`followups.refusal`), judged on the
        agents in the projection; internal-only work is refused when they cannot be read."""
        if not task.internal_only:
            return None
        if self.query is None:
            return f"task {task.task_id} is internal-only and no projection says who {task.role} is"
        try:
            agents = [agent_view(row) for row in await self.query(AGENTS_SQL)]
        except Exception as exc:  # fail closed: unknown trust is no trust
            return f"task {task.task_id} is internal-only and the agents cannot be read: {exc}"
        return refusal(task, agents)
