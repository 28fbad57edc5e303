"""The handler's port: the I/O behind a running handler's :class:`~swarmlog.agents.api.Context`,
bound to its job (every event it emits carries the job's workflow and causation)."""

from __future__ import annotations

from typing import Any

from swarmlog.agents.api import Exchange, TaskError
from swarmlog.agents.conversation import Conversations
from swarmlog.agents.delegation import Delegation
from swarmlog.agents.inbox import Inbox
from swarmlog.agents.jobs import JobScope
from swarmlog.agents.llm.messages import Answer, TextSink
from swarmlog.agents.policy.outputs import check_output
from swarmlog.agents.tools import ToolOutcome
from swarmlog.schemas.payloads import Payload, TaskCheckpointed, TaskHeartbeat, TokenUsage

__all__ = ["HandlerPort"]


class HandlerPort:
    """A handler's :class:`~swarmlog.agents.api.ContextPort`, bound to its job."""

    def __init__(
        self,
        scope: JobScope,
        conversations: Conversations,
        inbox: Inbox,
        delegation: Delegation,
    ) -> None:
        self._scope = scope
        self._job, self._query = scope.job, scope.query
        self._conversations = conversations
        self._inbox = inbox
        self._delegation = delegation

    async def emit(self, payload: Payload) -> None:
        await self._scope.publish(payload)

    async def progress(self, fraction: float | None, note: str) -> None:
        await self._job.delivery.in_progress()
        await self.emit(TaskHeartbeat(task_id=self._job.task.task_id, progress=fraction, note=note))

    async def checkpoint(self, data: Any) -> None:
        check_output(data, None)  # a checkpoint is JSON that fits in an event, like a result
        await self.emit(TaskCheckpointed(task_id=self._job.task.task_id, data=data))

    async def ask(self, to: str, question: str, timeout: float) -> str:
        return await self._inbox.ask(to, question, timeout, self._job)

    async def delegate(
        self, capability: str, input: Any, priority: str | None, timeout: float, index: int
    ) -> Any:
        return await self._delegation.delegate(
            capability, input, priority, timeout, self._job, index
        )

    async def chat(self, exchange: Exchange, on_text: TextSink | None) -> Answer:
        return await self._conversations.answer(exchange, on_text)

    async def call_tool(self, name: str, arguments: str) -> ToolOutcome:
        return await self._conversations.call_tool(name, arguments)

    def call_usage(self) -> list[TokenUsage]:
        return list(self._conversations.calls.usage)

    async def query(self, sql: str) -> list[dict[str, Any]]:
        if self._query is None:
            raise TaskError("no_projection", "no projection to read from", retryable=False)
        return await self._query(sql)
