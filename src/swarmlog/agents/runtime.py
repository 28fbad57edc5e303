"""The agent runtime (the shell): register, take work by priority, run handlers, settle.

Work for a role arrives as ``task_assignment`` events on one durable consumer per priority level,
shared by every replica of the role. The runtime always looks at the most urgent level first, and
sleeps on a doorbell (a plain subscription to the role's work subjects) when idle, so new work is
seen at once without polling.

A handler's result is published before the delivery is acked (at-least-once in). Handling is
idempotent by event id: a redelivered assignment whose result is already on the log is acked, not
run again. While a handler runs, the delivery is kept alive with in-progress acks, and the agent
heartbeats its load. A failure is retried by the agent's :class:`RetryPolicy`: ``nak`` with the
policy's delay and a ``task_retry_scheduled`` event; after the last attempt (or at once for a
non-retryable error) the task is reassigned to the agent's ``fallback_role`` when it has one,
otherwise escalated, and the delivery is terminated. Work past its deadline fails as timed out.

A kill switch (see :mod:`swarmlog.agents.killswitch`) stops the replica from taking work and
cancels the handler in hand without emitting anything; the delivery goes back to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from swarmlog.agents.api import Agent, Context, TaskError
from swarmlog.agents.claims import claim
from swarmlog.agents.flagwatch import FlagWatch
from swarmlog.agents.followups import follow_up, refusal
from swarmlog.agents.killswitch import KillFlag
from swarmlog.agents.models import ChatMessage, Model, model_from_env
from swarmlog.agents.outputs import check_output
from swarmlog.agents.resultcache import (
    CacheEntry,
    Hit,
    Refused,
    cache_key,
    decode_entry,
    verify_entry,
)
from swarmlog.agents.routing import AGENTS_SQL, agent_view
from swarmlog.bus.ports import Delivery, Doorbell, EventLog, FlagStore, WorkQueue
from swarmlog.bus.queues import agent_queues, open_queue
from swarmlog.bus.subjects import (
    aggregate_filter,
    offer_filter,
    offer_subject,
    role_work_filter,
    work_priority,
)
from swarmlog.projections.verify import check
from swarmlog.publisher import Published, Publisher
from swarmlog.schemas.codec import decode_credential
from swarmlog.schemas.envelope import Envelope
from swarmlog.schemas.payloads import (
    AgentHeartbeat,
    AgentRegistered,
    BudgetExceeded,
    ClarificationRequest,
    ClarificationResponse,
    CredentialIssued,
    DeadlockDetected,
    Error,
    Payload,
    Result,
    TaskAssignment,
    TaskCheckpointed,
    TaskEscalated,
    TaskFailed,
    TaskHeartbeat,
    TaskOffered,
    TaskRetryScheduled,
    TaskStarted,
    TokenUsage,
)
from swarmlog.schemas.types import PRIORITIES

__all__ = ["AgentRuntime", "Outcome"]

log = logging.getLogger(__name__)

_OFFERS = "task_offered"
"""The pseudo-level of swarm offers, looked at after every priority level."""
_SWEEP = 0.25
"""Idle replicas look at every level this often: redeliveries and delayed retries ring no bell."""
_RUNG_WAIT = 0.02
"""How long a fetch waits on a level that just rang (the ring can overtake the store)."""
_REMEMBERED = 4096
"""Assignment ids this replica has settled, kept to drop duplicates without a lookup."""


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
class _Job:
    """A screened delivery about to run."""

    delivery: Delivery
    event_id: str
    task: TaskAssignment
    attempt: int
    wf: dict[str, Any]
    index: int = 0
    swarm: bool = False
    """Claimed from a swarm offer (not delivered from a work queue)."""


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
        heartbeat: float = 5.0,
        draw: Callable[[], float] | None = None,
        clock: Callable[[], int] = time.time_ns,
        query: Callable[[str], Awaitable[list[dict[str, Any]]]] | None = None,
        model: Model | None = None,
        credential: CredentialIssued | None = None,
    ) -> None:
        if not agent.role:
            raise ValueError(f"{type(agent).__name__} has no role")
        if not 1 <= agent.concurrency <= 1024:
            raise ValueError(f"{type(agent).__name__}.concurrency must be 1..1024")
        self.agent = agent
        # The model of the agent's tier: tiers map to models by configuration.
        self.model = model or model_from_env(agent.tier)
        self.log = log
        self.publisher = publisher
        self.namespace = publisher.namespace
        self.replica = replica
        self.ack_wait = ack_wait
        self.heartbeat = heartbeat
        self._draw = draw or random.Random().random
        self._clock = clock
        self._queues: list[tuple[str, WorkQueue]] = []
        self._bell: Doorbell | None = None
        # Levels that may hold work, looked at first; swarm agents also watch offers.
        self._levels = [*PRIORITIES, _OFFERS] if agent.swarm else list(PRIORITIES)
        self._maybe: set[str] = set(self._levels)
        self._offers: WorkQueue | None = None
        self._watch = FlagWatch(on_change=self._flags_changed)
        self._background: list[asyncio.Task[None]] = []
        self._current: asyncio.Task[Any] | None = None
        self._settled: OrderedDict[str, None] = OrderedDict()
        self.query = query
        """Read-only SQL over the projections, for handlers' ``ctx.query``."""
        self._answers: dict[str, asyncio.Future[str]] = {}
        self._inbox: WorkQueue | None = None
        self._inbox_bell: Doorbell | None = None
        self._answering: set[asyncio.Task[None]] = set()
        self._cache_store: FlagStore | None = None
        # The replica's own operator-signed credential: its cache entries show it, and the
        # operator that issued it is the one whose credentials it trusts in others' entries.
        # Without it the replica neither serves nor writes cached answers.
        self._credential = credential
        self._operator_key = decode_credential(credential.credential).issuer if credential else ""
        self._closing = False
        self.spent_tokens = 0
        """Tokens this replica's results have spent since it started."""
        self._alerted: set[str] = set()
        self._handing_back = False
        self.in_flight = 0

    @property
    def agent_id(self) -> str:
        return self.publisher.identity.agent_id

    @property
    def killed(self) -> KillFlag | None:
        """The kill switch that stops this replica, if one is pulled."""
        return self._watch.stops(self.agent_id, self.agent.role)

    async def start(self) -> None:
        """Read the kill switches, open the role's work queues, then announce this replica."""
        await self._watch.start(await self.log.flags())
        role = self.agent.role
        if self.agent.cache_ttl > 0 and self._credential is None:
            log.warning("%s: no credential given, so the result cache is off", role)
        filters = [role_work_filter(self.namespace, role)]
        if self.agent.swarm:
            filters.append(offer_filter(self.namespace))
        self._bell = await self.log.doorbell(*filters)
        specs = agent_queues(
            self.namespace,
            role,
            self.agent_id,
            swarm=self.agent.swarm,
            max_attempts=self.agent.retry.max_attempts,
            ack_wait=self.ack_wait,
        )
        *work, inbox = specs
        for spec in work:
            queue = await open_queue(self.log, spec)
            if spec.new_only:
                self._offers = queue
            else:
                self._queues.append((work_priority(spec.filter_subject), queue))
        self._inbox_bell = await self.log.doorbell(inbox.filter_subject)
        self._inbox = await open_queue(self.log, inbox)
        self._background.append(asyncio.create_task(self._heartbeats()))
        self._background.append(asyncio.create_task(self._read_inbox()))
        # Announced last: once registered, the replica's queues exist and no work is missed.
        if self.killed is None:
            await self._register()

    async def _register(self) -> None:
        await self.publisher.publish(
            AgentRegistered(
                agent_id=self.agent_id,
                role=self.agent.role,
                capabilities=list(self.agent.capabilities),
                tier=self.agent.tier,
                replica=self.replica,
                dependencies=list(self.agent.dependencies),
            )
        )

    async def close(self) -> None:
        # Loops also check the flag: Python 3.11's wait_for can swallow a cancellation.
        self._closing = True
        for task in self._answering:
            task.cancel()
        await self._watch.stop()
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._background = []
        for bell in (self._bell, self._inbox_bell):
            if bell is not None:
                await bell.close()
        self._bell = self._inbox_bell = None
        if self._inbox is not None:
            await self._inbox.close()
            self._inbox = None
        for _, queue in self._queues:
            await queue.close()
        self._queues = []

    def _flags_changed(self) -> None:
        if self.killed is not None and self._current is not None:
            self._current.cancel()  # stop emitting now, not when the handler returns

    # -- messages addressed to this agent: clarification requests and answers ----------------

    async def _read_inbox(self) -> None:
        assert self._inbox is not None
        assert self._inbox_bell is not None
        while not self._closing:
            if self.killed is not None:
                await self._watch.wait_changed(_SWEEP)
                continue
            deliveries = await self._inbox.fetch(16, timeout=_RUNG_WAIT)
            if not deliveries:
                await self._inbox_bell.wait(_SWEEP)
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

    async def ask(self, to: str, question: str, timeout: float, job: _Job) -> str:
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

    async def delegate(
        self,
        capability: str,
        input: Any,
        priority: str | None,
        timeout: float,
        job: _Job,
        index: int,
    ) -> Any:
        """Offer a subtask of ``job`` and wait for its output (see :meth:`Context.delegate`)."""
        child = _child_id(job.task.task_id, index)
        bell = await self.log.doorbell(aggregate_filter(self.namespace, "task", child))
        try:
            outcome = await self._subtask_outcome(child)
            if outcome is None:
                if await self.log.last_message(offer_subject(self.namespace, child)) is None:
                    await self.publisher.publish(
                        TaskOffered(
                            task_id=child,
                            capability=capability,
                            priority=priority or job.task.priority,  # type: ignore[arg-type]
                            input=input,
                            parent_task_id=job.task.task_id,
                            # What is derived from internal-only data stays internal.
                            internal_only=job.task.internal_only,
                        ),
                        **job.wf,
                    )
                deadline = time.monotonic() + timeout
                while outcome is None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TaskError(
                            "subtask_timeout", f"subtask {child} did not finish in {timeout:g} s"
                        )
                    await bell.wait(min(remaining, _SWEEP))
                    outcome = await self._subtask_outcome(child)
        finally:
            await bell.close()
        done, value = outcome
        if not done:
            raise TaskError("subtask_failed", f"subtask {child} failed: {value}")
        return value

    async def _subtask_outcome(self, task_id: str) -> tuple[bool, Any] | None:
        """``(True, output)`` once the subtask has a result, ``(False, why)`` once it failed for
        good, else ``None``."""
        for kind in ("result", "task_escalated", "task_failed"):
            last = await self.log.last_message(f"swarmlog.{self.namespace}.*.task.{task_id}.{kind}")
            if last is None:
                continue
            checked = check(last, self.namespace)
            if checked.rejection is not None or checked.envelope is None:
                continue
            payload = checked.envelope.payload
            if isinstance(payload, Result):
                return True, payload.output
            if isinstance(payload, TaskEscalated):
                return False, payload.reason or "escalated"
            if isinstance(payload, TaskFailed) and payload.final:
                return False, payload.reason or "failed"
        return None

    async def _heartbeats(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.heartbeat)  # a period, not a synchronisation
            if self.killed is None:
                try:
                    await self.publisher.publish(
                        AgentHeartbeat(agent_id=self.agent_id, in_flight=self.in_flight)
                    )
                except Exception as exc:  # a missed heartbeat is not worth dying for
                    log.warning("heartbeat failed: %s", exc)

    @property
    def over_budget(self) -> bool:
        """Whether this replica has spent its agent's ``budget_tokens`` (it takes no more work)."""
        budget = self.agent.budget_tokens
        return budget is not None and self.spent_tokens >= budget

    async def _spend(self, tokens: int) -> None:
        """Count tokens spent; warn at 80 % of the budget, stop at 100 % (events on the log)."""
        self.spent_tokens += tokens
        budget = self.agent.budget_tokens
        if budget is None:
            return
        limit = "hard" if self.over_budget else "soft" if self.spent_tokens >= 0.8 * budget else ""
        if limit and limit not in self._alerted:
            self._alerted.add(limit)
            await self.publisher.publish(
                BudgetExceeded(
                    scope="agent",
                    scope_id=self.agent_id,
                    limit=limit,  # type: ignore[arg-type]
                    used_tokens=self.spent_tokens,
                    budget_tokens=budget,
                )
            )

    async def step(self, wait: float = _SWEEP) -> list[Outcome]:
        """Take and handle the most urgent work available: up to the agent's ``concurrency``
        tasks from one priority level at once. An empty list when none came within ``wait``
        (or when the replica is killed or over its token budget)."""
        if self.killed is not None:
            await self._watch.wait_changed(wait)
            return []
        if self._bell is None:
            raise RuntimeError("call start() first")
        rung = {work_priority(s) for s in await self._bell.wait(0)}
        if not self._maybe and not rung:
            rung = {work_priority(s) for s in await self._bell.wait(wait)}
            if not rung:
                self._maybe = set(self._levels)
        self._maybe |= rung
        for priority, queue in self._queues:
            if priority not in self._maybe:
                continue
            deliveries = await queue.fetch(self.agent.concurrency, timeout=_RUNG_WAIT)
            if deliveries:
                return await self.handle_batch(deliveries)
            self._maybe.discard(priority)
        if self._offers is not None and _OFFERS in self._maybe:
            offers = await self._offers.fetch(self.agent.concurrency, timeout=_RUNG_WAIT)
            if offers:
                return await self.claim_and_run(offers)
            self._maybe.discard(_OFFERS)
        return []

    async def claim_and_run(self, deliveries: Sequence[Delivery]) -> list[Outcome]:
        """Swarm mode: try to claim each offer this agent can do; run the ones it won."""
        outcomes: list[Outcome] = []
        jobs: list[_Job] = []
        for delivery in deliveries:
            checked = check(delivery.message, self.namespace)
            envelope = checked.envelope
            if checked.rejection is not None or envelope is None:
                await delivery.term()  # never act on an event whose signature does not check out
                outcomes.append(Outcome("", "rejected", 1))
                continue
            offer = envelope.payload
            if (
                not isinstance(offer, TaskOffered)
                or offer.mode != "swarm"
                or offer.capability not in self.agent.capabilities
                or self.killed is not None
                or self.over_budget  # spends nothing more: left to other agents
            ):
                await delivery.ack()
                continue
            task = follow_up(offer, role=self.agent.role)
            if await self._refusal(task) is not None:
                await delivery.ack()  # internal work: left to a role with no external replica
                outcomes.append(Outcome(offer.task_id, "not_trusted", 1))
                continue
            claimed = await claim(self.log, self.publisher, offer.task_id)
            if not claimed.won:
                await delivery.ack()  # another agent has it
                outcomes.append(Outcome(offer.task_id, "lost_claim", 1))
                continue
            wf: dict[str, Any] = {"workflow_id": envelope.workflow_id, "causation_id": envelope.id}
            jobs.append(_Job(delivery, envelope.id, task, 1, wf, swarm=True))
        if jobs:
            outcomes += await self._run_jobs(jobs)
        return outcomes

    async def run(self, stop: asyncio.Event, *, grace: float = 5.0) -> None:
        """Handle tasks until ``stop`` is set (graceful stop).

        Tasks in hand get ``grace`` seconds to finish; what is still running then is cancelled
        and handed back to the queue at once (``nak``), for another replica to take.
        """
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                stepping = asyncio.ensure_future(self.step())
                await asyncio.wait({stepping, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not stepping.done():
                    await asyncio.wait({stepping}, timeout=grace)
                if not stepping.done():
                    self._handing_back = True
                    stepping.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await stepping
        finally:
            stopping.cancel()

    async def handle(self, delivery: Delivery) -> Outcome:
        """Run one delivered assignment to its outcome and settle the delivery."""
        (outcome,) = await self.handle_batch([delivery])
        return outcome

    async def handle_batch(self, deliveries: Sequence[Delivery]) -> list[Outcome]:
        """Run delivered assignments concurrently, each to its outcome, and settle them.

        Lifecycle events of the batch are published together (one round of appends instead of
        one per task); each delivery is acked only after its result is stored.
        """
        outcomes: dict[int, Outcome] = {}
        jobs: list[_Job] = []
        for i, delivery in enumerate(deliveries):
            screened = await self._screen(delivery)
            if isinstance(screened, Outcome):
                outcomes[i] = screened
            else:
                screened.index = i
                jobs.append(screened)
        if jobs:
            for job, outcome in zip(jobs, await self._run_jobs(jobs), strict=True):
                outcomes[job.index] = outcome
        return [outcomes[i] for i in range(len(deliveries))]

    async def _screen(self, delivery: Delivery) -> Outcome | _Job:
        """Settle what must not run (forged, killed, duplicate, late); the rest is a job."""
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
        if self.killed is not None:
            await delivery.nak()  # taken in the instant of the kill: hand it back untouched
            return Outcome(task.task_id, "handed_back", attempt)
        if await self._already_settled(envelope, delivery):
            await delivery.ack()
            return Outcome(task.task_id, "duplicate", attempt)
        wf: dict[str, Any] = {"workflow_id": envelope.workflow_id, "causation_id": envelope.id}
        if self._past(task.deadline_at):
            return await self._timed_out(delivery, task, attempt, wf)
        if self.over_budget:
            return await self._over_budget(delivery, task, attempt, wf)
        return _Job(delivery, envelope.id, task, attempt, wf)

    async def _over_budget(
        self, delivery: Delivery, task: TaskAssignment, attempt: int, wf: dict[str, Any]
    ) -> Outcome:
        """Past its token budget the replica spends nothing more: the task goes to the
        agent's ``fallback_role`` (a cheaper tier, say) when it has one, else to a human."""
        fallback = self.agent.fallback_role
        if fallback and fallback != task.role:
            return await self._hand_over(delivery, task, attempt, wf, fallback)
        reason = f"{self.agent_id} spent its token budget ({self.spent_tokens} tokens)"
        await self.publisher.publish(TaskEscalated(task_id=task.task_id, reason=reason), **wf)
        await delivery.term()
        return Outcome(task.task_id, "escalated", attempt)

    async def _run_jobs(self, jobs: list[_Job]) -> list[Outcome]:
        self.in_flight += len(jobs)
        self._current = asyncio.current_task()
        keepalive = asyncio.create_task(self._keep_alive(jobs))
        try:
            await self.publisher.publish_batch(
                [(TaskStarted(task_id=j.task.task_id, attempt=j.attempt), j.wf) for j in jobs]
            )
            ran = await asyncio.gather(
                *(self._run_handler(j) for j in jobs), return_exceptions=True
            )
        except asyncio.CancelledError:
            self._current = None
            if self.killed is None and not self._handing_back:
                raise  # cancelled from outside: the deliveries come back after the ack wait
            if not self._handing_back:
                self._uncancel()  # the kill switch cancelled the handlers, not this replica
            for job in jobs:
                await job.delivery.nak()
            return [Outcome(j.task.task_id, "handed_back", j.attempt) for j in jobs]
        finally:
            self.in_flight -= len(jobs)
            self._current = None
            keepalive.cancel()
        done = [(j, r) for j, r in zip(jobs, ran, strict=True) if isinstance(r, tuple)]
        if done:
            published = await self.publisher.publish_batch(
                [
                    (
                        Result(
                            task_id=j.task.task_id,
                            output=out,
                            usage=ctx.total_usage(),
                            cached=ctx.cached,
                            cache_key=key or None,
                        ),
                        j.wf,
                    )
                    for j, (out, ctx, key) in done
                ]
            )
            await self._point_cache_at([key for _, (_, _, key) in done], published)
            await self._spend(sum(_tokens(ctx) for _, (_, ctx, _) in done))
        outcomes = []
        for job, result in zip(jobs, ran, strict=True):
            if isinstance(result, tuple):
                await job.delivery.ack()
                self._remember(job.event_id)
                outcomes.append(Outcome(job.task.task_id, "succeeded", job.attempt))
                continue
            exc = result if isinstance(result, Exception) else RuntimeError(repr(result))
            if job.swarm:
                # A claimed task cannot go back to the queue: its claim is on the log.
                outcomes.append(await self._escalate_claimed(job, exc))
            elif isinstance(exc, TimeoutError) and self._past(job.task.deadline_at):
                outcomes.append(await self._timed_out(job.delivery, job.task, job.attempt, job.wf))
            else:
                outcomes.append(
                    await self._failed(job.delivery, job.task, job.attempt, exc, job.wf)
                )
        return outcomes

    async def _escalate_claimed(self, job: _Job, exc: Exception) -> Outcome:
        error = exc if isinstance(exc, TaskError) else TaskError(type(exc).__name__, str(exc))
        task_id = job.task.task_id
        await self.publisher.publish(
            Error(
                task_id=task_id,
                code=error.code[:128],
                message=error.message[:4096],
                dependency=self._dependency(error),
            ),
            **job.wf,
        )
        reason = f"claimed swarm task failed: {error.code}"
        await self.publisher.publish(TaskEscalated(task_id=task_id, reason=reason), **job.wf)
        await job.delivery.ack()
        return Outcome(task_id, "escalated", job.attempt)

    def _past(self, deadline_at: int | None) -> bool:
        return deadline_at is not None and self._clock() >= deadline_at

    def _uncancel(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()

    async def _run_handler(self, job: _Job) -> tuple[Any, Context, str]:
        """The output, its context and the cache key its result is to be stored under (empty:
        none, or it came from the cache)."""
        task = job.task
        handler = self.agent.handler_for(task)
        if handler is None:
            raise TaskError("no_handler", f"{self.agent.role} cannot handle it", retryable=False)
        key = ""
        if self.agent.cache_ttl > 0 and self._credential is not None:
            key = cache_key(self.agent.role, self.model.name, task.input)
            hit = await self._cached(key)
            if hit is not None:
                return hit.output, Context(self.agent_id, task, job.attempt, cached=True), ""
        resumed = await self._last_checkpoint(task.task_id) if job.attempt > 1 else None
        ctx = Context(self.agent_id, task, job.attempt, resumed, port=_JobPort(self, job))
        if task.deadline_at is None:
            output = await handler(self.agent, task, ctx)
        else:
            remaining = (task.deadline_at - self._clock()) / 1e9
            async with asyncio.timeout(max(remaining, 0.0)):
                output = await handler(self.agent, task, ctx)
        check_output(output, task.expected_output_schema)
        return output, ctx, key

    async def _cache(self) -> FlagStore:
        # Looked up once: on JetStream, finding the bucket is a round trip of its own.
        if self._cache_store is None:
            self._cache_store = await self.log.cache()
        return self._cache_store

    async def _point_cache_at(self, keys: list[str], published: list[Published]) -> None:
        """Point the cache at the results just stored (after the publish: an entry names the
        signed event's stream sequence, never the output itself)."""
        for key, event in zip(keys, published, strict=True):
            if not key or self._credential is None:
                continue
            entry = CacheEntry(event.seq, self._credential)
            with contextlib.suppress(Exception):  # a cache that is down costs a recomputation
                await (await self._cache()).put(key, msgspec.json.encode(entry))

    async def _cached(self, key: str) -> Hit | None:
        """The answer the cache holds for ``key`` if it checks out, else ``None`` (a miss, or
        an entry that does not verify: logged, and the task is run for real)."""
        try:
            raw = await (await self._cache()).get(key)
            if raw is None:
                return None
            entry = decode_entry(raw)
            at = await self.log.message_at(entry.seq) if isinstance(entry, CacheEntry) else None
        except Exception as exc:  # a cache (or log) that is down is a miss
            log.warning("result cache unavailable: %s", exc)
            return None
        role = self.agent.role
        verdict = (
            entry
            if isinstance(entry, Refused)
            else verify_entry(
                entry,
                at,
                key=key,
                role=role,
                namespace=self.namespace,
                operator_key=self._operator_key,
                now=self._clock(),
                ttl=self.agent.cache_ttl,
            )
        )
        if isinstance(verdict, Hit) and self._watch.stops(verdict.sender, role) is not None:
            verdict = Refused(f"{verdict.sender}, who computed it, is stopped by a kill switch")
        if isinstance(verdict, Hit):
            return verdict
        log.warning("ignored cache entry %s: %s", key, verdict.reason)
        return None

    async def _last_checkpoint(self, task_id: str) -> Any:
        last = await self.log.last_message(
            f"swarmlog.{self.namespace}.*.task.{task_id}.task_checkpointed"
        )
        if last is None:
            return None
        checked = check(last, self.namespace)  # never trust an unverified event
        if checked.rejection is not None or checked.envelope is None:
            return None
        payload = checked.envelope.payload
        return payload.data if isinstance(payload, TaskCheckpointed) else None

    async def _keep_alive(self, jobs: list[_Job]) -> None:
        # Long work: restart the ack-wait timers well before they run out, and say so on the log.
        period = max(self.ack_wait / 3, 0.05)
        while True:
            await asyncio.sleep(period)
            for job in jobs:
                await job.delivery.in_progress()
            await self.publisher.publish_batch(
                [(TaskHeartbeat(task_id=j.task.task_id), j.wf) for j in jobs]
            )

    async def _already_settled(self, envelope: Envelope, delivery: Delivery) -> bool:
        """Whether this assignment already has its result (idempotency by event id)."""
        if envelope.id in self._settled:
            return True
        if delivery.num_delivered == 1:
            return False  # first delivery: nothing can have answered it yet
        task = envelope.payload
        assert isinstance(task, TaskAssignment)
        subject = f"swarmlog.{self.namespace}.*.task.{task.task_id}.result"
        last = await self.log.last_message(subject)
        if last is None:
            return False
        answered = check(last, self.namespace)  # a forged result must not make us skip work
        if answered.rejection is not None or answered.envelope is None:
            return False
        return answered.envelope.causation_id == envelope.id

    def _remember(self, event_id: str) -> None:
        self._settled[event_id] = None
        while len(self._settled) > _REMEMBERED:
            self._settled.popitem(last=False)

    async def _timed_out(
        self, delivery: Delivery, task: TaskAssignment, attempt: int, wf: dict[str, Any]
    ) -> Outcome:
        await self.publisher.publish(
            Error(
                task_id=task.task_id, code="timed_out", message="past its deadline", retryable=False
            ),
            **wf,
        )
        await self.publisher.publish(
            TaskFailed(task_id=task.task_id, reason="timed out", final=True), **wf
        )
        await delivery.term()
        return Outcome(task.task_id, "timed_out", attempt)

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
                dependency=self._dependency(error),
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
        fallback = self.agent.fallback_role
        if fallback and fallback != task.role and error.retryable:
            # Out of attempts here, but another role can do it: hand the task over.
            return await self._hand_over(delivery, task, attempt, wf, fallback)
        await self.publisher.publish(
            TaskEscalated(task_id=task.task_id, reason=decision.reason), **wf
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
        task: TaskAssignment,
        attempt: int,
        wf: dict[str, Any],
        role: str,
    ) -> Outcome:
        handed = follow_up(task, role=role, attempts=attempt)
        refused = await self._refusal(handed)
        if refused is not None:
            # The router's rule holds here too: a human decides where internal work goes.
            log.warning("not handed over: %s", refused)
            await self.publisher.publish(TaskEscalated(task_id=task.task_id, reason=refused), **wf)
            await delivery.term()
            return Outcome(task.task_id, "escalated", attempt)
        await self.publisher.publish(handed, **wf)
        await delivery.term()
        return Outcome(task.task_id, "reassigned", attempt)

    async def _refusal(self, task: TaskAssignment) -> str | None:
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


def _tokens(ctx: Context) -> int:
    usage = ctx.total_usage()
    return 0 if usage is None else usage.prompt_tokens + usage.completion_tokens


def _child_id(parent: str, index: int) -> str:
    """A delegated subtask's id: the same for the same parent and call order (so a retry finds
    it), and a valid name however long the parent's id is."""
    child = f"{parent}-d{index}"
    if len(child) <= 64:
        return child
    digest = hashlib.sha256(parent.encode()).hexdigest()[:10]
    return f"{parent[:40]}-{digest}-d{index}"


class _JobPort:
    """A handler's :class:`Context` I/O, bound to its job."""

    def __init__(self, runtime: AgentRuntime, job: _Job) -> None:
        self._rt = runtime
        self._job = job

    async def emit(self, payload: Payload) -> None:
        await self._rt.publisher.publish(payload, **self._job.wf)

    async def progress(self, fraction: float | None, note: str) -> None:
        await self._job.delivery.in_progress()
        heartbeat = TaskHeartbeat(task_id=self._job.task.task_id, progress=fraction, note=note)
        await self._rt.publisher.publish(heartbeat, **self._job.wf)

    async def checkpoint(self, data: Any) -> None:
        check_output(data, None)  # a checkpoint is JSON that fits in an event, like a result
        saved = TaskCheckpointed(task_id=self._job.task.task_id, data=data)
        await self._rt.publisher.publish(saved, **self._job.wf)

    async def ask(self, to: str, question: str, timeout: float) -> str:
        return await self._rt.ask(to, question, timeout, self._job)

    async def delegate(
        self, capability: str, input: Any, priority: str | None, timeout: float, index: int
    ) -> Any:
        return await self._rt.delegate(capability, input, priority, timeout, self._job, index)

    async def complete(
        self, system: str, prompt: str, max_tokens: int | None
    ) -> tuple[str, TokenUsage]:
        messages = [ChatMessage("system", system)] if system else []
        answer = await self._rt.model.complete(
            [*messages, ChatMessage("user", prompt)], max_tokens=max_tokens
        )
        return answer.text, TokenUsage(
            model=answer.model,
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
        )

    async def query(self, sql: str) -> list[dict[str, Any]]:
        if self._rt.query is None:
            raise TaskError("no_projection", "no projection to read from", retryable=False)
        return await self._rt.query(sql)
