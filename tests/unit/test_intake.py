"""The intake's order: a level whose doorbell rang is looked at first even when the ring overtook
the store, so a critical task submitted behind low ones does not wait for them to run dry."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from swarmlog.agents.api import Agent
from swarmlog.agents.intake import _RING_GRACE, Intake
from swarmlog.bus.ports import Delivery, EventLog


class _Bell:
    def __init__(self) -> None:
        self.pending: list[str] = []

    async def wait(self, timeout: float) -> list[str]:
        rung, self.pending = self.pending, []
        return rung

    async def close(self) -> None:
        pass


class _Queue:
    """Holds named items; ``fetch`` hands out one at a time."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.late = 0
        """Fetches to come that stop waiting before the (loaded) server's answer arrives."""

    async def fetch(self, batch: int, timeout: float) -> list[Delivery]:
        if self.late:
            self.late -= 1
            return []
        if not self.items:
            return []
        return [cast(Delivery, self.items.pop(0))]

    async def waiting(self) -> int:
        return len(self.items)

    async def close(self) -> None:
        pass


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _Worker(Agent):
    role = "worker"


def _intake(clock: _Clock) -> tuple[Intake, _Bell, dict[str, _Queue]]:
    intake = Intake(_Worker(), cast(EventLog, None), "t", ack_wait=5.0, clock=clock)
    bell = _Bell()
    queues = {level: _Queue() for level in ("critical", "high", "normal", "low")}
    intake._bell = cast(Any, bell)
    intake._queues = [(level, cast(Any, queue)) for level, queue in queues.items()]
    return intake, bell, queues


def _take(intake: Intake) -> list[Delivery]:
    return asyncio.run(intake.take(1, 0.0))[1]


def test_a_ring_that_overtook_the_store_keeps_its_level_first() -> None:
    clock = _Clock()
    intake, bell, queues = _intake(clock)
    queues["low"].items = ["low-1", "low-2", "low-3"]
    assert _take(intake) == ["low-1"]  # the sweep finds the low work
    # A critical task is published: the ring arrives before the store has it.
    bell.pending = ["swarmlog.t.wf.work.worker.critical.x"]
    assert _take(intake) == ["low-2"]  # critical looked at first, found empty, low taken
    queues["critical"].items = ["critical-1"]  # the store catches up; no second ring
    clock.now += 0.1
    assert _take(intake) == ["critical-1"]  # looked at before the low level again
    assert _take(intake) == ["low-3"]


def test_a_level_found_empty_after_the_grace_is_no_longer_looked_at_first() -> None:
    clock = _Clock()
    intake, bell, queues = _intake(clock)
    queues["low"].items = ["low-1", "low-2", "low-3"]
    assert _take(intake) == ["low-1"]
    bell.pending = ["swarmlog.t.wf.work.worker.critical.x"]
    assert _take(intake) == ["low-2"]
    clock.now += _RING_GRACE + 0.1
    assert _take(intake) == ["low-3"]  # critical looked at once more, dropped
    queues["critical"].items = ["critical-1"]
    queues["low"].items = ["low-4"]
    assert _take(intake) == ["low-4"]  # until the next sweep or ring
    assert _take(intake) == []  # nothing anywhere this look: the next sweep covers every level
    assert _take(intake) == ["critical-1"]


def test_work_stored_at_a_more_urgent_level_goes_first_when_its_fetch_is_too_slow() -> None:
    clock = _Clock()
    intake, _, queues = _intake(clock)
    queues["normal"].items = ["normal-1"]
    queues["critical"].items = ["critical-1"]  # stored; its doorbell not heard yet
    queues["critical"].late = 1
    assert _take(intake) == ["critical-1"]  # the server says it is there: fetched again
    assert _take(intake) == ["normal-1"]
