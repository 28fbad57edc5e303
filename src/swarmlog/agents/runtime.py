"""The agent runtime (the shell): register, take work by priority, run handlers, settle.

Work for a role arrives as ``task_assignment`` events on one durable consumer per priority level,
shared by every replica of the role; the most urgent level is looked at first.

A handler's result is published before the delivery is acked (at-least-once in). Handling is
idempotent by event id: a redelivered assignment whose result is already on the log is acked, not
run again. While a handler runs, the delivery is kept alive with in-progress acks. The replica's
liveness and load (the tasks in hand) are its presence in the presence bucket, put every
``heartbeat`` seconds: an idle replica writes nothing to the log. A replica that stops says so
(``agent_stopped``) and takes its presence away. A failure is retried by the agent's
:class:`RetryPolicy`: ``nak`` with the policy's delay and a ``task_retry_scheduled`` event; after
the last attempt (or at once for a non-retryable error) the task is reassigned to the agent's
``fallback_role`` when it has one, otherwise escalated, and the delivery is terminated. Work past
its deadline fails as timed out.

A kill switch (see :mod:`swarmlog.agents.policy.killflags`) stops the replica from taking work and
cancels the handler in hand without emitting anything; the delivery goes back to the queue.

The runtime composes collaborators, one per job: work comes from the
:class:`~swarmlog.agents.intake.Intake`; the :class:`~swarmlog.agents.settlement.Settler`
screens it and settles failures as the pure :mod:`~swarmlog.agents.policy.screening` and
:mod:`~swarmlog.agents.policy.settle` decide; swarm offers are claimed by
:mod:`~swarmlog.agents.swarming`; questions go through the :class:`~swarmlog.agents.inbox.Inbox`,
subtasks through :class:`~swarmlog.agents.delegation.Delegation`, cached answers through
:class:`~swarmlog.agents.caching.ResultCache`, a handler's I/O through its
:class:`~swarmlog.agents.handlerport.HandlerPort`; budget alerts are decided by
:mod:`~swarmlog.agents.policy.budgets`, presence put by :mod:`~swarmlog.agents.liveness`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from swarmlog.agents import liveness, swarming
from swarmlog.agents.api import Agent, Context, TaskError
from swarmlog.agents.caching import ResultCache
from swarmlog.agents.calls import Budget, CallJournal, Promised
from swarmlog.agents.conversation import Conversations
from swarmlog.agents.delegation import Delegation
from swarmlog.agents.flagwatch import FlagWatch
from swarmlog.agents.handlerport import HandlerPort
from swarmlog.agents.inbox import Inbox
from swarmlog.agents.intake import Intake
from swarmlog.agents.jobs import Job, JobScope, Outcome, last_checkpoint
from swarmlog.agents.llm import Model, OfflineModel, model_from_env
from swarmlog.agents.llm.offline import parse_script
from swarmlog.agents.policy import idle
from swarmlog.agents.policy.budgets import budget_alert
from swarmlog.agents.policy.killflags import KillFlag
from swarmlog.agents.policy.outputs import check_output
from swarmlog.agents.policy.resultcache import cache_key
from swarmlog.agents.presence import Beacon, say_stopped
from swarmlog.agents.publisher import Publisher, Speaker
from swarmlog.agents.settlement import Settler
from swarmlog.agents.tools import Toolbox, declared_grants
from swarmlog.bus.ports import Delivery, EventLog
from swarmlog.projections.client import Query, WaitFor
from swarmlog.schemas.codec import decode_credential
from swarmlog.schemas.payloads import (
    AgentRegistered,
    BudgetExceeded,
    CredentialIssued,
    Result,
    TaskStarted,
)
from swarmlog.schemas.presence import PRESENCE_EVERY

__all__ = ["STARTED_AFTER", "AgentRuntime", "Outcome"]

log = logging.getLogger(__name__)

STARTED_AFTER = 0.1
"""Seconds a task runs before its ``task_started`` is published on its own; a task that ends
sooner (or publishes anything sooner) has it stored in the same publish, first (its time is
when it started)."""
_SWEEP = idle.FIRST
"""What one :meth:`AgentRuntime.step` waits for a ring by default (:meth:`AgentRuntime.run`
waits longer while it keeps finding nothing: see :mod:`~swarmlog.agents.policy.idle`)."""


class AgentRuntime(Speaker):
    """Runs one replica of an :class:`Agent` against an event log."""

    def __init__(
        self,
        agent: Agent,
        log: EventLog,
        publisher: Publisher,
        *,
        replica: str = "",
        ack_wait: float = 30.0,
        heartbeat: float = PRESENCE_EVERY,
        draw: Callable[[], float] | None = None,
        clock: Callable[[], int] = time.time_ns,
        query: Query | None = None,
        wait_for: WaitFor | None = None,
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
        if agent.offline_script and isinstance(self.model, OfflineModel) and not self.model.script:
            script = parse_script(msgspec.json.encode(list(agent.offline_script)))
            self.model = OfflineModel(self.model.name, script)
        self.log = log
        self.publisher = publisher
        self.replica = replica
        self.heartbeat = heartbeat
        """Seconds between presence puts."""
        self._clock = clock
        self.beacon = Beacon(log, publisher, agent.role, every=heartbeat, clock=clock)
        self._in_hand: Counter[str] = Counter()
        """The tasks being run (their presence says so: work in hand is not stalled)."""
        self._registered = False
        self.intake = Intake(agent, log, self.namespace, ack_wait=ack_wait)
        self._watch = FlagWatch(on_change=self._flags_changed)
        self._background: list[asyncio.Task[None]] = []
        self._releasing: set[asyncio.Future[Any]] = set()
        """Publishes of held-back ``task_started`` events in flight (kept from the collector)."""
        self._current: asyncio.Task[Any] | None = None
        self.query = query
        """Read-only SQL over the projections, for handlers' ``ctx.query``."""
        self.wait_for = wait_for
        """Until the projection has folded a seq: model calls wait for their budget's verdict."""
        self.inbox = Inbox(agent, publisher, self._watch, lambda: self.killed is not None)
        self.delegation = Delegation(log, publisher)
        self.settler = Settler(
            agent, log, publisher, query=query, draw=draw or random.Random().random, clock=clock
        )
        self.cache = ResultCache(
            agent,
            log,
            namespace=self.namespace,
            credential=credential,
            watch=self._watch,
            clock=clock,
        )
        self._credential = credential
        granted = decode_credential(credential.credential) if credential is not None else None
        self._grants = (granted.tools, granted.mcp_servers) if granted is not None else ([], [])
        """The tools and MCP servers this agent's credential lets it call (none without one)."""
        self.toolbox: Toolbox | None = None
        """The agent's tools, open while the replica runs (``None``: it has none)."""
        self._exits = contextlib.AsyncExitStack()
        self._closing = False
        self.spent_tokens = 0
        """Tokens this replica's results have spent since it started."""
        self._promised = Promised()
        """Tokens allowed to model calls still running (counted against the budget)."""
        self._alerted: set[str] = set()
        self._handing_back = False
        self.in_flight = 0
        self._load_changed = asyncio.Event()
        """Set when the tasks in hand change: the presence beat puts the new load at once."""

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
        if any(declared_grants(type(self.agent))):
            # MCP servers start once per replica; their definitions are pinned from here on.
            self.toolbox = await self._exits.enter_async_context(Toolbox.open(self.agent))
        inbox = await self.intake.open(self.agent_id)
        await self.inbox.start(self.log, inbox)
        beats = liveness.presence_beats(
            self.beacon,
            self.heartbeat,
            tasks=lambda: list(self._in_hand),
            capacity=self.agent.concurrency,
            quiet=lambda: self.killed is not None,
            closing=lambda: self._closing,
            changed=self._load_changed,
        )
        self._background.append(asyncio.create_task(beats))
        # Announced last: once registered, the replica's queues exist and no work is missed;
        # present before, so no reader sees it registered and absent.
        if self.killed is None:
            await self.beacon.put(capacity=self.agent.concurrency)
            await self._register()
            self._registered = True

    async def _register(self) -> None:
        await self.publisher.publish(
            AgentRegistered(
                agent_id=self.agent_id,
                role=self.agent.role,
                capabilities=list(self.agent.capabilities),
                tier=self.agent.tier,
                replica=self.replica,
                dependencies=list(self.agent.dependencies),
                tools=[] if self.toolbox is None else self.toolbox.pins(),
                mcp_servers=[server.name for server in self.agent.mcp_servers],
            )
        )

    async def close(self, reason: str = "stopped") -> None:
        """Stop: background work ends, the replica says it stopped (unless killed: the kill
        switch said it all) and takes its presence away, its queues and tools are closed."""
        # Loops also check the flag: Python 3.11's wait_for can swallow a cancellation.
        self._closing = True
        await self._watch.stop()
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._background = []
        if self._registered and self.killed is None:
            self._registered = False
            await say_stopped(self.publisher, reason)
            await self.beacon.clear()
        await self.inbox.close()
        await self.intake.close()
        await self._exits.aclose()

    def _flags_changed(self) -> None:
        if self.killed is not None and self._current is not None:
            self._current.cancel()  # stop emitting now, not when the handler returns

    @property
    def over_budget(self) -> bool:
        """Whether this replica has spent its agent's ``budget_tokens`` (it takes no more work)."""
        budget = self.agent.budget_tokens
        return budget is not None and self.spent_tokens >= budget

    async def _spend(self, tokens: int) -> None:
        """Count tokens spent; warn at the soft limit of the budget, stop at all of it."""
        self.spent_tokens += tokens
        budget = self.agent.budget_tokens
        limit = budget_alert(self.spent_tokens, budget, self._alerted)
        if limit is not None and budget is not None:
            self._alerted.add(limit)
            await self.publisher.publish(
                BudgetExceeded(
                    scope="agent",
                    scope_id=self.agent_id,
                    limit=limit,
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
        offers, deliveries = await self.intake.take(self.agent.concurrency, wait)
        if not deliveries:
            return []
        return await (self.claim_and_run if offers else self.handle_batch)(deliveries)

    async def claim_and_run(self, deliveries: Sequence[Delivery]) -> list[Outcome]:
        """Swarm mode: try to claim each offer this agent can do; run the ones it won."""
        outcomes, jobs = await swarming.claim_offers(
            deliveries,
            agent=self.agent,
            log=self.log,
            publisher=self.publisher,
            refusal=self.settler.refusal,
            # Killed or over its budget, a replica spends nothing more: left to other agents.
            taking=lambda: self.killed is None and not self.over_budget,
        )
        if jobs:
            outcomes += await self._run_jobs(jobs)
        return outcomes

    async def run(self, stop: asyncio.Event, *, grace: float = 5.0) -> None:
        """Handle tasks until ``stop`` is set (graceful stop).

        Tasks in hand get ``grace`` seconds to finish; what is still running then is cancelled
        and handed back to the queue at once (``nak``), for another replica to take.
        """
        stopping = asyncio.ensure_future(stop.wait())
        wait: float | None = None
        found = False
        try:
            while not stop.is_set():
                # New work rings the doorbell at once; the wait bounds only how late a
                # redelivery or a delayed retry is seen, so an idle replica looks less often.
                wait = idle.next_wait(wait, found)
                stepping = asyncio.ensure_future(self.step(wait))
                await asyncio.wait({stepping, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not stepping.done():
                    await asyncio.wait({stepping}, timeout=grace)
                if not stepping.done():
                    self._handing_back = True
                    stepping.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    # A ring counts as found: the ring can overtake the store, and what it
                    # announced is then looked for again soon, not after a long wait.
                    found = bool(await stepping) or self.intake.rang
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
        jobs: list[Job] = []
        for i, delivery in enumerate(deliveries):
            screened = await self.settler.screen(
                delivery,
                killed=self.killed is not None,
                over_budget=self.over_budget,
                agent_id=self.agent_id,
                spent=self.spent_tokens,
            )
            if isinstance(screened, Outcome):
                outcomes[i] = screened
            else:
                screened.index = i
                jobs.append(screened)
        if jobs:
            for job, outcome in zip(jobs, await self._run_jobs(jobs), strict=True):
                outcomes[job.index] = outcome
        return [outcomes[i] for i in range(len(deliveries))]

    async def _run_jobs(self, jobs: list[Job]) -> list[Outcome]:
        # Held back a moment: stored with the first thing published after it (a quick task's
        # result), or once the tasks have run for STARTED_AFTER, dated when they started.
        starts = [TaskStarted(task_id=j.task.task_id, attempt=j.attempt) for j in jobs]
        starting = self.publisher.hold([(s, j.wf) for s, j in zip(starts, jobs, strict=True)])
        try:
            return await self._run_started(jobs, starting, starts)
        finally:
            # However they ended: a start still held is never published later, with something
            # else (a finished task would read as running again).
            self.publisher.drop(starting)

    async def _run_started(
        self, jobs: list[Job], starting: int, starts: list[TaskStarted]
    ) -> list[Outcome]:
        self.in_flight += len(jobs)
        self._in_hand.update(j.task.task_id for j in jobs)
        self._load_changed.set()
        self._current = asyncio.current_task()
        # The ack wait the queues were opened with: the keep-alive must beat well within it.
        ack_wait = self.intake.ack_wait
        keepalive = asyncio.create_task(liveness.keep_alive(jobs, ack_wait))
        loop = asyncio.get_running_loop()
        timer = loop.call_later(STARTED_AFTER, self._release_soon, starting)
        try:
            ran = await asyncio.gather(
                *(self._run_handler(j) for j in jobs), return_exceptions=True
            )
        except asyncio.CancelledError:
            self._current = None
            if self.killed is None and not self._handing_back:
                raise  # cancelled from outside: the deliveries come back after the ack wait
            if not self._handing_back:
                self._uncancel()  # the kill switch cancelled the handlers, not this replica
            self.publisher.drop(starting)  # handed back before they had run for long
            for job in jobs:
                await job.delivery.nak()
            return [Outcome(j.task.task_id, "handed_back", j.attempt) for j in jobs]
        finally:
            timer.cancel()
            self.in_flight -= len(jobs)
            self._in_hand.subtract(j.task.task_id for j in jobs)
            self._in_hand = +self._in_hand  # drop the tasks no longer in hand
            self._load_changed.set()
            self._current = None
            keepalive.cancel()
        done = [(j, r) for j, r in zip(jobs, ran, strict=True) if isinstance(r, tuple)]
        if done:
            # A task whose start is still held (it ended at once, said nothing meanwhile): its
            # result says when it started, one event fewer on the log than a task_started.
            # Each job's own start, by identity (two deliveries of one task are two jobs).
            job_of = {
                id(s): j for s, j, r in zip(starts, jobs, ran, strict=True) if isinstance(r, tuple)
            }
            taken = self.publisher.take(starting, lambda p: id(p) in job_of)
            began = {id(job_of[id(payload)]): at for payload, at in taken}
            published = await self.publisher.publish_batch(
                [
                    (
                        Result(
                            task_id=j.task.task_id,
                            output=out,
                            usage=ctx.total_usage(),
                            cached=ctx.cached,
                            cache_key=key or None,
                            attempt=j.attempt if id(j) in began else None,
                            started_at=began.get(id(j)),
                        ),
                        j.wf,
                    )
                    for j, (out, ctx, key) in done
                ]
            )
            await self.cache.point_at([key for _, (_, _, key) in done], published)
            await self._spend(sum(_tokens(ctx) for _, (_, ctx, _) in done))
        outcomes = []
        for job, result in zip(jobs, ran, strict=True):
            if isinstance(result, tuple):
                # Its result is stored: settled even if the ack is lost with a crashed server
                # (which may hand the assignment out again as a first delivery).
                self.settler.remember(job.event_id)
                await job.delivery.ack()
                outcomes.append(Outcome(job.task.task_id, "succeeded", job.attempt))
                continue
            exc = result if isinstance(result, Exception) else RuntimeError(repr(result))
            outcomes.append(await self.settler.failed(job, exc))
        await self.publisher.release(starting)  # went out with the outcomes (else now)
        return outcomes

    def _release_soon(self, token: int) -> None:
        """Publish a hold's ``task_started`` events: their tasks have run for a while."""
        releasing = asyncio.ensure_future(self.publisher.release(token))
        self._releasing.add(releasing)
        releasing.add_done_callback(self._released)

    def _released(self, releasing: asyncio.Future[Any]) -> None:
        self._releasing.discard(releasing)
        if not releasing.cancelled() and releasing.exception() is not None:
            # The outcome's publish, which follows, meets the same trouble and reports it.
            log.warning("task_started not published: %s", releasing.exception())

    def _uncancel(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()

    async def _run_handler(self, job: Job) -> tuple[Any, Context, str]:
        """The output, its context and the cache key its result is to be stored under (empty:
        none, or it came from the cache)."""
        task = job.task
        handler = self.agent.handler_for(task)
        if handler is None:
            raise TaskError("no_handler", f"{self.agent.role} cannot handle it", retryable=False)
        key = ""
        if self.cache.enabled:
            key = cache_key(self.agent.role, self.model.name, task.input)
            hit = await self.cache.lookup(key)
            if hit is not None:
                return hit.output, Context(self.agent_id, task, job.attempt, cached=True), ""
        resumed = (
            await last_checkpoint(self.log, self.namespace, task.task_id)
            if job.attempt > 1
            else None
        )
        scope = JobScope(job, self.publisher, self.query)
        calls = CallJournal(
            scope,
            wait_for=self.wait_for,
            agent_budget=lambda: Budget("agent", self.spent_tokens, self.agent.budget_tokens),
            spend=self._spend,
            promised=self._promised,
        )
        granted_tools, granted_servers = self._grants
        conversations = Conversations(
            calls,
            self.model,
            self.toolbox,
            granted_tools=granted_tools,
            granted_servers=granted_servers,
        )
        port = HandlerPort(scope, conversations, self.inbox, self.delegation)
        ctx = Context(self.agent_id, task, job.attempt, resumed, port=port)
        if task.deadline_at is None:
            output = await handler(self.agent, task, ctx)
        else:
            remaining = (task.deadline_at - self._clock()) / 1e9
            async with asyncio.timeout(max(remaining, 0.0)):
                output = await handler(self.agent, task, ctx)
        check_output(output, task.expected_output_schema)
        return output, ctx, key


def _tokens(ctx: Context) -> int:
    """Tokens a result's handler recorded itself (``ctx.usage``): its model calls were counted
    as they were made, and those answered from the journal were spent by an earlier attempt."""
    return sum(u.prompt_tokens + u.completion_tokens for u in ctx.usage_records)
