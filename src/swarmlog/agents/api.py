"""The agent API: an agent is a small, stateless class with a role, capabilities, a model tier
and a handler per event type.

::

    class Summariser(Agent):
        role = "summariser"
        capabilities = ("summarise",)

        @on(TaskAssignment)
        async def summarise(self, task: TaskAssignment, ctx: Context) -> Json:
            ctx.usage("offline", prompt_tokens=12, completion_tokens=3)
            return {"summary": str(task.input)[:40]}

A handler's return value becomes a ``result`` event; a :class:`TaskError` (or any exception)
becomes an ``error`` event, retried by the agent's :class:`RetryPolicy` when ``retryable``. An
exception's code is its type's name; a permanent one (``ValueError``, ``KeyError``... the
policy's ``non_retryable_error_types``) is not retried but escalated at once.
Anything an agent must remember goes into events: instances keep no state between tasks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

import msgspec

from swarmlog.agents.policy.retry import RetryPolicy
from swarmlog.errors import TaskError
from swarmlog.schemas.payloads import Payload, TaskAssignment, TokenUsage, payload_type

if TYPE_CHECKING:
    from swarmlog.agents.llm.messages import Answer, Messages, TextSink
    from swarmlog.agents.tools import ToolOutcome
    from swarmlog.agents.tools.servers import MCPServer

Output = type[Any] | Mapping[str, Any] | None
"""Structured output asked of a model: a type (msgspec Struct, dataclass, ``list[int]``...), a
JSON Schema, or ``None`` for text."""

__all__ = [
    "Agent",
    "Context",
    "ContextPort",
    "Exchange",
    "Handler",
    "RetryPolicy",
    "TaskError",
    "on",
]

Handler = Callable[[Any, Any, "Context"], Awaitable[Any]]
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

_HANDLES = "__swarmlog_handles__"


def on(event_type: type[msgspec.Struct]) -> Callable[[F], F]:
    """Mark a method as the handler of ``event_type`` (e.g. ``TaskAssignment``)."""
    tag = str(event_type.__struct_config__.tag)

    def mark(method: F) -> F:
        setattr(method, _HANDLES, tag)
        return method

    return mark


@dataclass(frozen=True)
class Exchange:
    """What :meth:`Context.chat` and :meth:`Context.run` ask of the runtime, as given."""

    messages: Messages
    system: str = ""
    tools: Sequence[str] | None = ()
    """The agent's tools offered, by name (``None``: all of them)."""
    output: Output = None
    max_tokens: int | None = None
    max_turns: int = 0
    """0: one exchange; 1 or more: the tool loop, with at most that many model turns."""


class ContextPort(Protocol):
    """What a :class:`Context` needs from the runtime (the I/O behind the handler's API)."""

    async def emit(self, payload: Payload) -> None: ...

    async def progress(self, fraction: float | None, note: str) -> None: ...

    async def checkpoint(self, data: Any) -> None: ...

    async def ask(self, to: str, question: str, timeout: float) -> str: ...

    async def delegate(
        self, capability: str, input: Any, priority: str | None, timeout: float, index: int
    ) -> Any: ...

    async def query(self, sql: str) -> list[dict[str, Any]]: ...

    async def chat(self, exchange: Exchange, on_text: TextSink | None) -> Answer:
        """One exchange (``max_turns`` 0) or the tool loop (``max_turns`` >= 1)."""
        ...

    async def call_tool(self, name: str, arguments: str) -> ToolOutcome: ...

    def call_usage(self) -> list[TokenUsage]:
        """Usage of the model calls so far (journaled; spent as they were made)."""
        ...


@dataclass
class Context:
    """What a handler may do besides returning its result.

    Everything it does is an event on the log (signed by this agent, caused by the task), so a
    retried or reassigned task can see what an earlier attempt did: ``resumed`` is the data of
    the task's last :meth:`checkpoint`.
    """

    agent_id: str
    task: TaskAssignment | None
    """The task being handled (``None`` in a clarification handler)."""
    attempt: int = 1
    resumed: Any = None
    """The last checkpoint of this task from an earlier attempt, or ``None``."""
    usage_records: list[TokenUsage] = field(default_factory=list)
    cached: bool = False
    """Whether the output came from the result cache (the handler did not run)."""
    port: ContextPort | None = field(default=None, repr=False)
    _delegations: int = field(default=0, repr=False)

    def usage(self, model: str, *, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        """Record model usage; it is attached to the result and projected into budgets."""
        self.usage_records.append(
            TokenUsage(
                model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
            )
        )

    async def complete(
        self, prompt: str, *, system: str = "", max_tokens: int | None = None
    ) -> str:
        """Ask the model of the agent's tier (configured by ``SWARMLOG_MODEL_<TIER>``; offline
        and deterministic when unset) one question; its text answer. The one-line form of
        :meth:`chat`, journaled the same way."""
        answer = await self.chat(prompt, system=system, max_tokens=max_tokens)
        return answer.text

    async def chat(
        self,
        messages: Messages,
        *,
        system: str = "",
        tools: Sequence[str] = (),
        output: Output = None,
        max_tokens: int | None = None,
        stream: TextSink | None = None,
    ) -> Answer:
        """One exchange with the model of the agent's tier.

        ``messages`` is a prompt or a conversation (:class:`Message` or their maps); ``tools``
        names the agent's tools the model may ask for (the answer's ``tool_calls``; call them
        with :meth:`call_tool`, or let :meth:`run` do the loop); ``output`` asks for structured
        output (the answer's ``output``, decoded and checked; an answer that does not conform is
        sent back to be corrected, then the task fails with ``invalid_output``); ``stream``
        receives the answer's text as it is produced. The call is journaled: a retry of the
        task gets the recorded answer instead of asking again.
        """
        exchange = Exchange(messages, system, tools, output, max_tokens)
        return await self._port().chat(exchange, stream)

    async def run(
        self,
        messages: Messages,
        *,
        system: str = "",
        tools: Sequence[str] | None = None,
        output: Output = None,
        max_turns: int = 8,
        max_tokens: int | None = None,
        stream: TextSink | None = None,
    ) -> Answer:
        """The tool loop: the model answers, the tools it calls are called (journaled, within
        the credential's grants) and their results sent back, until it answers without a tool
        call; ``tools`` (``None``: all the agent's) are offered. Fails with ``turn_limit`` after
        ``max_turns`` model turns."""
        if not 1 <= max_turns <= 100:
            raise ValueError("max_turns must be 1..100")
        exchange = Exchange(messages, system, tools, output, max_tokens, max_turns)
        return await self._port().chat(exchange, stream)

    async def call_tool(self, name: str, arguments: str | Mapping[str, Any]) -> ToolOutcome:
        """Call one of the agent's tools by name with JSON ``arguments`` (journaled)."""
        text = arguments if isinstance(arguments, str) else msgspec.json.encode(arguments).decode()
        return await self._port().call_tool(name, text)

    def total_usage(self) -> TokenUsage | None:
        """What this task's model calls and recorded :meth:`usage` cost together."""
        records = [*self.usage_records, *self.call_usage()]
        if not records:
            return None
        return TokenUsage(
            model=records[-1].model,
            prompt_tokens=sum(u.prompt_tokens for u in records),
            completion_tokens=sum(u.completion_tokens for u in records),
        )

    def call_usage(self) -> list[TokenUsage]:
        """Usage of the model calls made through this context (spent as they were made)."""
        return [] if self.port is None else self.port.call_usage()

    def _port(self) -> ContextPort:
        if self.port is None:
            raise TaskError(
                "no_runtime", "this context is not attached to a runtime", retryable=False
            )
        return self.port

    async def progress(self, fraction: float | None = None, note: str = "") -> None:
        """Report progress (a ``task_heartbeat``); also keeps the task's delivery alive."""
        if fraction is not None and not 0.0 <= fraction <= 1.0:
            raise ValueError("progress is a fraction between 0 and 1")
        await self._port().progress(fraction, note)

    async def checkpoint(self, data: Any) -> None:
        """Save partial work (``task_checkpointed``): a later attempt gets it as ``resumed``."""
        await self._port().checkpoint(data)

    async def ask(self, to: str, question: str, *, timeout: float = 60.0) -> str:
        """Ask agent ``to`` a question and wait for its answer (a clarification request and
        response; the wait is projected into the wait-for graph). Raises :class:`TaskError`
        ``clarification_timeout`` when no answer comes in time."""
        return await self._port().ask(to, question, timeout)

    async def delegate(
        self,
        capability: str,
        input: Any = None,
        *,
        priority: str | None = None,
        timeout: float = 300.0,
    ) -> Any:
        """Offer a subtask to whoever has ``capability`` and wait for its output.

        Subtask ids are derived from this task's id and the order of ``delegate`` calls, so a
        retried handler that delegates the same way finds its earlier subtasks instead of
        offering them again. An escalated subtask is waited for too (a human decides it: one
        failure, one escalation). Raises :class:`TaskError` ``subtask_failed`` when it fails
        for good or is cancelled, ``subtask_escalated`` when it still waits for a human at the
        timeout (neither is retried), ``subtask_timeout`` when it does not finish in time.
        """
        self._delegations += 1
        return await self._port().delegate(capability, input, priority, timeout, self._delegations)

    async def query(self, sql: str) -> list[dict[str, Any]]:
        """Read shared state: a read-only SQL query over the projections."""
        return await self._port().query(sql)

    async def emit(self, payload: Payload) -> None:
        """Publish another event as part of this task (signed by this agent)."""
        await self._port().emit(payload)


class Agent:
    """Base class of agents: set ``role`` (and optionally ``capabilities``, ``tier``, ``retry``,
    ``fallback_role``) and mark handlers with :func:`on`."""

    role: ClassVar[str] = ""
    capabilities: ClassVar[tuple[str, ...]] = ()
    tier: ClassVar[str] = ""
    retry: ClassVar[RetryPolicy] = RetryPolicy()
    """How failed tasks are retried; errors of its ``non_retryable_error_types`` (by default
    :data:`~swarmlog.agents.policy.retry.PERMANENT_ERRORS`: ``ValueError``, ``TypeError``,
    ``KeyError``...) are not, e.g. ``RetryPolicy(non_retryable_error_types=PERMANENT_ERRORS |
    {"QuotaError"})``, or ``frozenset()`` to retry them all."""
    cache_ttl: ClassVar[float] = 0.0
    """Seconds a result may answer identical work (same role, model and input) from the result
    cache instead of running the handler; 0 (the default) never caches."""
    budget_tokens: ClassVar[int | None] = None
    """Tokens one replica may spend (from the usage its handlers record): a ``budget_exceeded``
    soft alert at 80 %, and at 100 % a hard one, after which the replica runs nothing more: its
    work goes to ``fallback_role`` (say, a cheaper tier) when set, else is escalated."""
    swarm: ClassVar[bool] = False
    """Also claims swarm-mode offers (``task_offered`` with ``mode: swarm``) for its
    capabilities: the first claim wins, and the winner runs the task."""
    concurrency: ClassVar[int] = 1
    """Tasks one replica runs at once, taken together from the most urgent level with work."""
    dependencies: ClassVar[tuple[str, ...]] = ()
    """External services the handlers call (an API, a database): each has a circuit breaker,
    fed by the errors that name it (``TaskError(..., dependency=...)``); while it is open, work
    goes to roles that do not depend on it."""
    fallback_role: ClassVar[str] = ""
    """Where a task goes when this role has used its last attempt or its token budget (empty:
    escalate)."""
    offline_script: ClassVar[tuple[Mapping[str, Any], ...]] = ()
    """What the offline model answers this agent, turn by turn (``{"tool_calls": [{"name":
    ..., "arguments": {...}}]}`` or ``{"content": ...}``), when its tier has no model
    configured and no ``SWARMLOG_MODEL_<TIER>_SCRIPT``: examples and tests run the whole tool
    loop with no key and no network."""
    mcp_servers: ClassVar[tuple[MCPServer, ...]] = ()
    """The MCP servers whose tools this agent uses, each started (stdio) or reached (HTTP) once
    per agent process; their tools are named ``SERVER.TOOL`` and pinned at registration."""

    def handlers(self) -> dict[str, Handler]:
        """Handlers by event type tag."""
        return dict(_handlers_of(type(self)))

    def handler_for(self, payload: msgspec.Struct) -> Handler | None:
        return _handlers_of(type(self)).get(payload_type(payload))


_HANDLERS: dict[type, dict[str, Handler]] = {}


def _handlers_of(cls: type) -> dict[str, Handler]:
    """The handlers a class declares, found once per class (a worker asks for every task)."""
    found = _HANDLERS.get(cls)
    if found is None:
        found = {}
        for name in dir(cls):
            method = getattr(cls, name, None)
            tag = getattr(method, _HANDLES, None)
            if tag is not None:
                found[tag] = method  # type: ignore[assignment]
        _HANDLERS[cls] = found
    return found
