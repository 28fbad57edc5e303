"""Small fakes shared by test modules (imported as ``fakes``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from swarmlog.bus.ports import StoredMessage

if TYPE_CHECKING:
    from swarmlog.agents.runtime import AgentRuntime

__all__ = ["RUNNING", "RecordingDelivery"]

RUNNING: list[AgentRuntime] = []
"""Runtimes a test started; the ``close_runtimes`` fixture closes them after it."""


class RecordingDelivery:
    """A :class:`~swarmlog.bus.ports.Delivery` that records how it was settled."""

    def __init__(self, message: StoredMessage, num_delivered: int = 1) -> None:
        self.message = message
        self.num_delivered = num_delivered
        self.settled: list[str] = []

    async def ack(self) -> None:
        self.settled.append("ack")

    async def in_progress(self) -> None:
        pass

    async def nak(self, delay: float | None = None) -> None:
        self.settled.append("nak")

    async def term(self) -> None:
        self.settled.append("term")
