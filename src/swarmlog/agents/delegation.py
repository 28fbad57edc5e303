"""Delegation: a handler offers a subtask and waits for its outcome (``Context.delegate``).

The subtask's id comes from its parent's id and the call's order (:func:`child_id`), so a retry
of the parent finds the subtask it offered before instead of offering it twice.

One failure, one escalation: a subtask that is escalated waits for its human (who retries,
reassigns, answers or cancels it), and so does the handler that delegated it, within its
timeout, rather than failing too and opening a second escalation for the same failure. A
subtask failed for good (or cancelled) fails the parent at once with ``subtask_failed``, and one
still escalated when the timeout runs out with ``subtask_escalated``: neither is retried, since
another attempt of the parent would find the same subtask in the same state.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

from swarmlog.agents.api import TaskError
from swarmlog.agents.jobs import Job, last_verified
from swarmlog.agents.publisher import Publisher, Speaker
from swarmlog.bus.ports import EventLog
from swarmlog.bus.subjects import aggregate_filter, offer_subject, task_event_filter
from swarmlog.schemas.payloads import (
    Result,
    TaskCancelled,
    TaskEscalated,
    TaskFailed,
    TaskOffered,
)

__all__ = ["Delegation", "child_id"]

_SWEEP = 0.25
"""How often a wait looks at the log again even when no event rang."""


def child_id(parent: str, index: int) -> str:
    """A delegated subtask's id: the same for the same parent and call order (so a retry finds
    it), and a valid name however long the parent's id is."""
    child = f"{parent}-d{index}"
    if len(child) <= 64:
        return child
    digest = hashlib.sha256(parent.encode()).hexdigest()[:10]
    return f"{parent[:40]}-{digest}-d{index}"


@dataclass(eq=False, repr=False)  # compared and shown as an object, as before
class Delegation(Speaker):
    """Offers a replica's subtasks and waits for their outcomes."""

    log: EventLog
    publisher: Publisher

    async def delegate(
        self,
        capability: str,
        input: Any,
        priority: str | None,
        timeout: float,
        job: Job,
        index: int,
    ) -> Any:
        """Offer a subtask of ``job`` and wait for its output (see ``Context.delegate``)."""
        child = child_id(job.task.task_id, index)
        bell = await self.log.doorbell(aggregate_filter(self.namespace, "task", child))
        try:
            outcome = await self._outcome(child)
            if outcome is None or outcome[0] is None:
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
                while outcome is None or outcome[0] is None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 and outcome is not None:
                        raise TaskError(
                            "subtask_escalated",
                            f"subtask {child} still waits for a human after {timeout:g} s:"
                            f" {outcome[1]} (`swarmlog escalations` shows it)",
                            retryable=False,
                        )
                    if remaining <= 0:
                        raise TaskError(
                            "subtask_timeout", f"subtask {child} did not finish in {timeout:g} s"
                        )
                    await bell.wait(min(remaining, _SWEEP))
                    outcome = await self._outcome(child)
        finally:
            await bell.close()
        done, value = outcome
        if not done:
            raise TaskError("subtask_failed", f"subtask {child} failed: {value}", retryable=False)
        return value

    async def _outcome(self, task_id: str) -> tuple[bool | None, Any] | None:
        """``(True, output)`` once the subtask has a result, ``(False, why)`` once it failed for
        good or was cancelled, ``(None, why)`` while it is escalated (a human decides), else
        ``None``."""
        escalated: TaskEscalated | None = None
        for kind in ("result", "task_failed", "task_cancelled", "task_escalated"):
            envelope = await last_verified(
                self.log, task_event_filter(self.namespace, task_id, kind), self.namespace
            )
            payload = envelope.payload if envelope is not None else None
            if isinstance(payload, Result):
                return True, payload.output
            if isinstance(payload, TaskFailed) and payload.final:
                return False, payload.reason or "failed"
            if isinstance(payload, TaskCancelled):
                return False, payload.reason or "cancelled"
            if isinstance(payload, TaskEscalated):
                escalated = payload
        if escalated is not None:
            return None, escalated.reason or "escalated"
        return None
