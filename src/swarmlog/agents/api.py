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
becomes an ``error`` event, retried by the agent's :class:`RetryPolicy` when ``retryable``.
Anything an agent must remember goes into events: instances keep no state between tasks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import msgspec

from swarmlog.agents.retry import RetryPolicy
from swarmlog.schemas.payloads import TaskAssignment, TokenUsage, payload_type

__all__ = ["Agent", "Context", "Handler", "TaskError", "on"]

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


class TaskError(Exception):
    """A handler's failure with a stable ``code``; ``retryable=False`` escalates at once."""

    def __init__(self, code: str, message: str = "", *, retryable: bool = True) -> None:
        super().__init__(message or code)
        self.code = code
        self.message = message
        self.retryable = retryable


@dataclass
class Context:
    """What a handler may do besides returning its result."""

    agent_id: str
    task: TaskAssignment
    attempt: int
    usage_records: list[TokenUsage] = field(default_factory=list)

    def usage(self, model: str, *, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        """Record model usage; it is attached to the result and projected into budgets."""
        self.usage_records.append(
            TokenUsage(
                model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
            )
        )

    def total_usage(self) -> TokenUsage | None:
        if not self.usage_records:
            return None
        return TokenUsage(
            model=self.usage_records[-1].model,
            prompt_tokens=sum(u.prompt_tokens for u in self.usage_records),
            completion_tokens=sum(u.completion_tokens for u in self.usage_records),
        )


class Agent:
    """Base class of agents: set ``role`` (and optionally ``capabilities``, ``tier``, ``retry``,
    ``fallback_role``) and mark handlers with :func:`on`."""

    role: ClassVar[str] = ""
    capabilities: ClassVar[tuple[str, ...]] = ()
    tier: ClassVar[str] = ""
    retry: ClassVar[RetryPolicy] = RetryPolicy()
    concurrency: ClassVar[int] = 1
    """Tasks one replica runs at once, taken together from the most urgent level with work."""
    fallback_role: ClassVar[str] = ""
    """Where a task goes when this role has used its last attempt (empty: escalate)."""

    def handlers(self) -> dict[str, Handler]:
        """Handlers by event type tag."""
        found: dict[str, Handler] = {}
        for name in dir(type(self)):
            method = getattr(type(self), name, None)
            tag = getattr(method, _HANDLES, None)
            if tag is not None:
                found[tag] = method  # type: ignore[assignment]
        return found

    def handler_for(self, payload: msgspec.Struct) -> Handler | None:
        return self.handlers().get(payload_type(payload))
