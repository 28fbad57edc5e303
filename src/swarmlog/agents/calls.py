"""The call journal of one job: every model call and every tool call of a task as a pair of
signed events, and the calls a previous attempt completed answered from the log.

A call is numbered per task and kind (:mod:`swarmlog.agents.policy.journal`); before it is made,
``*_call_requested`` is published, and after it ``*_call_completed`` with what came back. When the
task runs again (a retry, a redelivery after its replica died, another replica), the journal is
read from the projection, where only events that passed the verifier are (a forged completion,
signed by a key that does not hold the task, never answers a call), and every call that
completed ``ok`` for the same request returns its recorded answer without being made again.

Token budgets are checked here, before each model call: a call that could cross the agent's or
the workflow's hard limit is not made (its answer is capped to what is left, and with nothing
left the task fails with ``budget_exceeded`` and escalates).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from swarmlog.agents.api import TaskError
from swarmlog.agents.jobs import JobScope
from swarmlog.agents.llm.messages import ChatRequest, Message, Model, Reply, TextSink
from swarmlog.agents.policy import journal
from swarmlog.agents.policy.budgets import completion_allowance, estimate_tokens
from swarmlog.agents.publisher import Published
from swarmlog.agents.tools import Toolbox, ToolOutcome
from swarmlog.bus.subjects import live_subject
from swarmlog.errors import ModelError, SwarmlogError
from swarmlog.projections.client import WaitFor
from swarmlog.schemas import payloads as p
from swarmlog.schemas.credentials import tool_permitted

__all__ = ["Budget", "CallJournal", "Preview", "Promised"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Budget:
    """A token budget a model call is priced against: ``used`` of ``limit`` so far."""

    scope: str
    """``agent`` or ``workflow``."""
    used: int
    limit: int | None
    held: int = 0
    """Tokens of it that calls in flight hold (reserved, not answered yet)."""


class Promised:
    """Tokens promised to a replica's model calls in flight (allowed, not answered yet).

    They count as spent while the calls run, so calls that run at once (an agent with
    ``concurrency`` > 1) cannot together cross the agent's budget that each alone respects.
    """

    def __init__(self) -> None:
        self.tokens = 0


ROOM_WAIT = 120.0
"""Seconds a model call waits for calls in flight to give back the workflow budget they hold."""
ROOM_POLL = 0.25
"""Seconds between two readings of the budget while it waits."""


class Preview(msgspec.Struct, frozen=True, array_like=True):
    """A piece of a model call's answer as it comes, announced to the task's watchers."""

    call_index: int
    text: str


_PREVIEW = msgspec.json.Encoder()

_FRAMING = 8
"""Tokens a chat template may add around one message (role markers, separators)."""


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class CallJournal:
    """The journaled model and tool calls of one job (one attempt of one task)."""

    def __init__(
        self,
        scope: JobScope,
        *,
        agent_budget: Callable[[], Budget],
        spend: Callable[[int], Awaitable[None]],
        promised: Promised | None = None,
        wait_for: WaitFor | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._job, self._query = scope.job, scope.query
        self._scope = scope
        self._wait_for = wait_for
        self._agent_budget = agent_budget
        self._spend = spend
        self._promised = promised or Promised()
        self._clock = clock
        self._counts = {"model": 0, "tool": 0}
        self._entries: dict[tuple[journal.CallKind, int], journal.Entry] | None = None
        self._workflow: Budget | None = None
        self._job_tokens = 0
        """Tokens this attempt's calls spent since the workflow's budget was read."""
        self._last: list[dict[str, Any]] = []
        self._last_tokens = 0
        """What the previous call's conversation and answer cost, as the model counted it."""
        self._last_offered: list[Any] = []
        """The previous model call's conversation and answer, to journal only what is new."""
        self.usage: list[p.TokenUsage] = []
        """Usage of every call, those answered from the journal included."""
        self.journaled_tokens = 0
        """Tokens of the calls this attempt made (spent already; not to count again)."""

    @property
    def _task_id(self) -> str:
        return self._job.task.task_id

    # -- reading what earlier attempts journaled ---------------------------------------------------

    async def _journal(self) -> dict[tuple[journal.CallKind, int], journal.Entry]:
        if self._entries is None:
            self._entries = journal.index_entries(await self._read())
        return self._entries

    async def _read(self) -> list[journal.Entry]:
        job = self._job
        if job.attempt == 1 and job.delivery.num_delivered == 1 and not job.swarm:
            return []  # the first run of a task: nothing can be journaled yet
        if self._query is None:
            log.warning("%s: no projection to read the call journal from", self._task_id)
            return []
        task = _quote(self._task_id)
        try:
            if self._wait_for is not None:
                # What an earlier attempt journaled is on the stream before this redelivery
                # came; the projection may not have folded it yet. Read once it has, or the
                # calls it answers would be made a second time.
                await self._wait_for(await self._scope.publisher.log.last_seq())
        except SwarmlogError as exc:
            log.warning("%s: the projection did not catch up (%s); reading it as is", task, exc)
        sql = (
            "SELECT 'model' AS kind, c.call_index, c.digest, c.status, e.payload"
            " FROM model_calls c LEFT JOIN events e ON e.seq = c.completed_seq"
            f" WHERE c.task_id = {task}"
            " UNION ALL SELECT 'tool', c.call_index, c.digest, c.status, e.payload"
            " FROM tool_calls c LEFT JOIN events e ON e.seq = c.completed_seq"
            f" WHERE c.task_id = {task}"
        )
        try:
            rows = await self._query(sql)
        except SwarmlogError as exc:
            # Calls are then made again: the at-least-once side of the journal, logged.
            log.warning("%s: call journal unreadable (%s); calls run again", self._task_id, exc)
            return []
        entries = []
        for row in rows:
            completed = None
            if row["payload"] is not None:
                completed = msgspec.json.decode(row["payload"], type=p.Payload)
            entries.append(
                journal.Entry(
                    row["kind"], int(row["call_index"]), row["digest"], row["status"], completed
                )
            )
        return entries

    # -- model calls -----------------------------------------------------------------------------

    async def model(
        self, model: Model, request: ChatRequest, *, on_text: TextSink | None = None
    ) -> Reply:
        """Ask ``model``, or answer from the journal when an earlier attempt asked the same."""
        self._counts["model"] += 1
        index = self._counts["model"]
        asked = _Asked.of(request)
        recorded = journal.answer_from(await self._journal(), "model", index, asked.digest)
        if isinstance(recorded, p.ModelCallCompleted):
            reply = _reply(recorded)
            self._remember(asked, reply)
            await self._count(reply, spent=False)
            return reply
        prompt_tokens = self._price(asked)
        deadline = self._clock() + ROOM_WAIT
        while True:
            cap = await self._allowance(prompt_tokens)
            if cap == 0:  # what calls in flight hold leaves no room yet
                await self._await_room(prompt_tokens, deadline)
                continue
            held = 0
            if cap is not None:
                max_tokens = cap if request.max_tokens is None else min(request.max_tokens, cap)
                request = msgspec.structs.replace(request, max_tokens=max_tokens)
                held = prompt_tokens + max_tokens  # no await since the allowance: no other call
                self._promised.tokens += held  # could have been allowed the same tokens
            try:
                reserved = held if self._reserves() else 0
                seq = await self._requested(model, request, index, asked, reserved)
                if not reserved or await self._admitted(index, seq):
                    return await self._answer(model, request, index, asked, on_text)
                await self._model_completed(
                    index,
                    model.name,
                    self._clock(),
                    status="error",
                    error="not admitted: calls in flight hold the workflow's budget",
                )
            finally:
                self._promised.tokens -= held
            await self._await_room(prompt_tokens, deadline)

    def _reserves(self) -> bool:
        """Whether this job's model calls reserve their workflow's budget before they are made:
        when it has one, and the projection that admits reservations can be asked."""
        workflow = self._workflow
        return (
            workflow is not None
            and workflow.limit is not None
            and self._query is not None
            and self._wait_for is not None
        )

    async def _admitted(self, index: int, seq: int) -> bool:
        """The projection's verdict on the reservation requested at ``seq`` (no verdict in
        time: not admitted)."""
        wait_for, query = self._wait_for, self._query
        if wait_for is None or query is None:
            return False
        try:
            await wait_for(seq)
            rows = await query(
                f"SELECT admitted FROM model_calls WHERE task_id = {_quote(self._task_id)}"
                f" AND call_index = {index} AND requested_seq = {seq}"
            )
        except SwarmlogError as exc:
            log.warning(
                "%s: no verdict on model call %d's reservation: %s", self._task_id, index, exc
            )
            return False
        return bool(rows and rows[0]["admitted"])

    async def _await_room(self, prompt_tokens: int, deadline: float) -> None:
        """Wait until the calls in flight that hold the workflow's budget leave room for this
        one, reading the budget afresh; fail the task when the tokens used leave none, or when
        none is left by ``deadline``."""
        while True:
            budget = await self._read_workflow()
            if completion_allowance(budget.used, budget.limit, prompt_tokens) == 0:
                raise self._exceeded(prompt_tokens, budget)
            if completion_allowance(budget.used + budget.held, budget.limit, prompt_tokens) != 0:
                self._workflow = budget
                self._job_tokens = 0  # the fresh read counts this job's calls already
                return
            if self._clock() >= deadline:
                raise TaskError(
                    "budget_exceeded",
                    f"the workflow's token budget stayed held by calls in flight for"
                    f" {ROOM_WAIT:.0f} s: {budget.used} of {budget.limit} used,"
                    f" {budget.held} held",
                    retryable=True,
                )
            await asyncio.sleep(ROOM_POLL)

    async def _requested(
        self, model: Model, request: ChatRequest, index: int, asked: _Asked, reserved: int
    ) -> int:
        published = await self._publish(
            p.ModelCallRequested(
                **self._call("model", index),
                model=model.name,
                digest=asked.digest,
                messages=self._new_messages(asked.conversation),
                tools=[t.name for t in request.tools],
                reserved_tokens=reserved,
            )
        )
        return published.seq

    async def _answer(
        self,
        model: Model,
        request: ChatRequest,
        index: int,
        asked: _Asked,
        on_text: TextSink | None,
    ) -> Reply:
        started = self._clock()
        try:
            reply = await model.chat(request, on_text=self._preview(index, on_text))
        except ModelError as exc:
            await self._model_completed(
                index, model.name, started, status="error", error=str(exc)[:4000]
            )
            raise
        await self._model_completed(
            index,
            reply.model,
            started,
            status="ok",
            reply=msgspec.to_builtins(reply.message),
            usage=_usage(reply),
        )
        self._remember(asked, reply)
        await self._count(reply, spent=True)
        return reply

    async def _model_completed(
        self, index: int, model: str, started: float, **outcome: Any
    ) -> None:
        await self._publish(
            p.ModelCallCompleted(
                **self._call("model", index), model=model, duration_ms=self._ms(started), **outcome
            )
        )

    def _preview(self, index: int, on_text: TextSink | None) -> TextSink:
        """Where the model's partial text goes as it comes: to the handler's ``stream=`` and,
        announced outside the log, to whoever watches the task (``swarmlog watch``). The
        answer itself is journaled; a preview lost on the way is only a preview."""
        publisher = self._scope.publisher
        subject = live_subject(publisher.namespace, publisher.identity.agent_id, self._task_id)

        async def sink(text: str) -> None:
            if on_text is not None:
                await on_text(text)
            try:
                await publisher.log.announce(subject, _PREVIEW.encode(Preview(index, text)))
            except SwarmlogError as exc:
                log.debug("%s: a preview was not announced: %s", self._task_id, exc)

        return sink

    def _call(self, kind: journal.CallKind, index: int) -> dict[str, Any]:
        """The fields that name call ``index`` of ``kind`` in both of its events."""
        task_id = self._task_id
        return {
            "task_id": task_id,
            "call_index": index,
            "call_id": journal.call_id(task_id, kind, index),
        }

    async def _publish(self, payload: p.Payload) -> Published:
        return await self._scope.publish(payload)

    async def _allowance(self, prompt_tokens: int) -> int | None:
        """The most tokens the answer may take (``None``: no budget; 0: not before calls in
        flight give back some of the workflow's budget they hold); fails the task when a
        budget has nothing left for this call."""
        caps = []
        workflow = await self._workflow_budget()
        agent = self._agent_budget()  # after the await: with what calls in flight promised
        agent = Budget(agent.scope, agent.used + self._promised.tokens, agent.limit)
        for budget in (agent, workflow):
            cap = completion_allowance(budget.used, budget.limit, prompt_tokens)
            if cap == 0:
                raise self._exceeded(prompt_tokens, budget)
            if cap is not None:
                caps.append(
                    completion_allowance(budget.used + budget.held, budget.limit, prompt_tokens)
                    or 0
                )
        return min(caps) if caps else None

    @staticmethod
    def _exceeded(prompt_tokens: int, budget: Budget) -> TaskError:
        return TaskError(
            "budget_exceeded",
            f"a model call of about {prompt_tokens} prompt tokens would cross the"
            f" {budget.scope}'s token budget: {budget.used} of {budget.limit} used",
            retryable=False,
        )

    async def _workflow_budget(self) -> Budget:
        """The workflow's budget as first read (with what calls in flight held then), and what
        this job's calls spent since."""
        if self._workflow is None:
            self._workflow = await self._read_workflow()
        base = self._workflow
        return Budget(base.scope, base.used + self._job_tokens, base.limit, base.held)

    async def _read_workflow(self) -> Budget:
        """The job's workflow budget as the projection has it now, with the tokens that calls in
        flight hold of it (no workflow, no budget or no answer: no limit)."""
        workflow_id = self._job.wf.get("workflow_id")
        none = Budget("workflow", 0, None)
        if not workflow_id or self._query is None:
            return none
        try:
            rows = await self._query(
                "SELECT w.budget_tokens, b.used_tokens, b.reserved_tokens FROM workflows w"
                " LEFT JOIN budgets b ON b.scope = 'workflow' AND b.scope_id = w.workflow_id"
                f" WHERE w.workflow_id = {_quote(str(workflow_id))}"
            )
        except SwarmlogError as exc:
            log.warning("%s: workflow budget unreadable: %s", workflow_id, exc)
            return none
        if not rows or rows[0]["budget_tokens"] is None:
            return none
        row = rows[0]
        return Budget(
            "workflow",
            int(row["used_tokens"] or 0),
            int(row["budget_tokens"]),
            int(row["reserved_tokens"] or 0),
        )

    async def _count(self, reply: Reply, *, spent: bool) -> None:
        tokens = reply.prompt_tokens + reply.completion_tokens
        self.usage.append(_usage(reply))
        self._job_tokens += tokens
        if spent:
            self.journaled_tokens += tokens
            await self._spend(tokens)

    def _new_messages(self, conversation: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # A conversation that goes on from the last call journals only what it added.
        shared = self._last and conversation[: len(self._last)] == self._last
        return conversation[len(self._last) :] if shared else conversation

    def _remember(self, asked: _Asked, reply: Reply) -> None:
        self._last = [*asked.conversation, msgspec.to_builtins(reply.message)]
        self._last_tokens = reply.prompt_tokens + reply.completion_tokens
        self._last_offered = asked.offered

    def _price(self, asked: _Asked) -> int:
        """An upper bound of the prompt's tokens: its bytes (a token covers at least one); a
        conversation that goes on from the last call costs what the model counted for that one
        and its answer, plus the bytes of what is new (and a little for each new message's
        framing)."""
        conversation, offered = asked.conversation, asked.offered
        new = self._new_messages(conversation)
        if new is not conversation and offered == self._last_offered and self._last_tokens:
            framing = _FRAMING * (len(new) + 1)
            return self._last_tokens + framing + estimate_tokens(msgspec.json.encode(new).decode())
        return estimate_tokens(msgspec.json.encode([conversation, offered]).decode())

    def _ms(self, started: float) -> int:
        return max(0, round((self._clock() - started) * 1000))

    # -- tool calls ------------------------------------------------------------------------------

    async def tool(
        self,
        toolbox: Toolbox,
        name: str,
        arguments: str,
        *,
        granted_tools: Sequence[str],
        granted_servers: Sequence[str],
    ) -> ToolOutcome:
        """Call tool ``name`` with the model's JSON ``arguments`` text, or answer from the
        journal; a tool the credential does not grant is refused without being called."""
        server = toolbox.server_of(name)
        if not tool_permitted(granted_tools, granted_servers, name, server):
            log.warning("%s: refused a call of %s: not granted", self._task_id, name)
            return ToolOutcome(
                status="refused",
                error=f"tool {name} is not granted to this agent's credential",
                server=server,
            )
        self._counts["tool"] += 1
        index = self._counts["tool"]
        try:
            decoded = msgspec.json.decode(arguments) if arguments.strip() else {}
        except msgspec.DecodeError:
            decoded = arguments  # journaled as the text it is; the tool says what is wrong
        digest = journal.arguments_digest(name, decoded)
        recorded = journal.answer_from(await self._journal(), "tool", index, digest)
        if isinstance(recorded, p.ToolCallCompleted):
            return ToolOutcome(
                status="ok",
                result=recorded.result,
                server=recorded.server,
                duration_ms=recorded.duration_ms,
                replayed=True,
            )
        named = {**self._call("tool", index), "tool": name, "server": server}
        definition = toolbox.definition_of(name)
        await self._publish(
            p.ToolCallRequested(**named, arguments=decoded, digest=digest, definition=definition)
        )
        outcome = await toolbox.call(name, arguments, named["call_id"])
        if outcome.status == "refused":
            # The journal records it; the operator reads the agent's log: say what to do there.
            log.warning("%s: refused a call of %s: %s", self._task_id, name, outcome.error)
        await self._publish(
            p.ToolCallCompleted(
                **named,
                status=outcome.status,
                result=outcome.result,
                error=outcome.error[:4000],
                duration_ms=outcome.duration_ms,
            )
        )
        return outcome


@dataclass(frozen=True)
class _Asked:
    """A model request as the journal keys and records it: its conversation and tools as JSON,
    and the digest a later attempt's same call must match."""

    conversation: list[dict[str, Any]]
    offered: list[Any]
    digest: str

    @classmethod
    def of(cls, request: ChatRequest) -> _Asked:
        conversation = [msgspec.to_builtins(m) for m in request.messages]
        offered = [msgspec.to_builtins(t) for t in request.tools]
        max_tokens = request.max_tokens
        options = {"max_tokens": max_tokens} if max_tokens is not None else {}
        digest = journal.request_digest(conversation, offered, request.output_schema, options)
        return cls(conversation, offered, digest)


def _usage(reply: Reply) -> p.TokenUsage:
    return p.TokenUsage(
        model=reply.model,
        prompt_tokens=reply.prompt_tokens,
        completion_tokens=reply.completion_tokens,
    )


def _reply(recorded: p.ModelCallCompleted) -> Reply:
    usage = recorded.usage
    return Reply(
        message=msgspec.convert(recorded.reply, Message),
        model=recorded.model,
        prompt_tokens=usage.prompt_tokens if usage else 0,
        completion_tokens=usage.completion_tokens if usage else 0,
    )
