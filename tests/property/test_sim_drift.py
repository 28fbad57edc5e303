"""The simulation and the daemons cannot drift apart: they call the same policy functions.

Each test changes one real policy function in its own module (``monkeypatch`` on the module
that defines it, nothing else) and shows two things: the daemon's shell does what the changed
policy says, and the simulation's outcome changes with it (a summary differs, or an invariant
that held now breaks). A simulation that kept its own copy of the policy would not notice.
"""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from fakes import RecordingDelivery
from swarmlog.agents.api import Agent, Context, on
from swarmlog.agents.jobs import Job
from swarmlog.agents.policy import deadlocks, routing, settle
from swarmlog.agents.policy.retry import RetryPolicy
from swarmlog.agents.policy.routing import AgentView, Candidate
from swarmlog.agents.publisher import Publisher
from swarmlog.agents.roles.router import Router
from swarmlog.agents.runtime import AgentRuntime
from swarmlog.bus.memory import MemoryLog
from swarmlog.bus.ports import StoredMessage
from swarmlog.harness.sim import SimResult, simulate
from swarmlog.schemas.payloads import TaskAssignment, TaskOffered
from swarmlog.schemas.signing import Identity

SEEDS = (1, 2, 3, 17, 19, 31, 73, 84, 192)
STEPS = 60
"""Seeds on which every policy under test acts (hand-overs are rare: a task must fail every
attempt); each test first asserts that it does, so a change that stops it fails loudly."""
NS = "drift"
NOW = 1_000 * 10**9


_REAL: list[SimResult] = []


async def _runs(*, real: bool = False) -> list[SimResult]:
    """The simulation over :data:`SEEDS`; with ``real``, under the real policies (run once)."""
    if real and _REAL:
        return _REAL
    runs = [await simulate(seed, STEPS) for seed in SEEDS]
    if real:
        _REAL.extend(runs)
    return runs


def _identity(name: str) -> Identity:
    return Identity.from_seed(name, hashlib.sha256(name.encode()).digest())


# -- settle: after the last attempt, hand over to the fallback role ---------------------------


def _never_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    real = settle.after_failure

    def no_fallback(*args: object, **kwargs: object) -> settle.Settlement:
        decision = real(*args, **kwargs)  # type: ignore[arg-type]
        return settle.Escalate("no fallback") if isinstance(decision, settle.HandOver) else decision

    monkeypatch.setattr(settle, "after_failure", no_fallback)


class _Keeper(Agent):
    role = "keeper"
    capabilities = ("work",)
    retry = RetryPolicy(max_attempts=1)
    fallback_role = "spare"

    @on(TaskAssignment)
    async def run(self, task: TaskAssignment, ctx: Context) -> object:
        raise RuntimeError("unreachable: the test settles a failure directly")


async def _runtime_settles_a_last_failure() -> str:
    log = MemoryLog("SWARMLOG_DRIFT")
    runtime = AgentRuntime(_Keeper(), log, Publisher(log, _identity("keeper-1"), NS))
    job = Job(
        RecordingDelivery(StoredMessage(1, "s", b"")),
        "e1",
        TaskAssignment(task_id="t1", role="keeper"),
        1,
        {},
    )
    outcome = await runtime.settler.failed(job, RuntimeError("it broke"))
    return outcome.status


async def test_a_settle_that_never_falls_back_changes_the_runtime_and_the_simulation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert await _runtime_settles_a_last_failure() == "reassigned"
    before = await _runs(real=True)
    assert sum(r.handovers for r in before) > 0  # the sim's alpha hands over to beta

    _never_fall_back(monkeypatch)
    assert await _runtime_settles_a_last_failure() == "escalated"
    after = await _runs()
    assert sum(r.handovers for r in after) == 0
    escalated = sum(r.tasks.get("escalated", 0) for r in after)
    assert escalated > sum(r.tasks.get("escalated", 0) for r in before)
    assert [r.state_hash for r in after] != [r.state_hash for r in before]


# -- routing: the cheapest tier first ----------------------------------------------------------


def _costliest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    def costliest(candidates: object, capability: str) -> Candidate | None:
        able = routing.eligible(candidates, capability)  # type: ignore[arg-type]
        return max(able, key=lambda c: (c.tier_cost, c.role)) if able else None

    monkeypatch.setattr(routing, "choose", costliest)


async def _router_routes_an_offer() -> str:
    log = MemoryLog("SWARMLOG_DRIFT")
    agents = [
        AgentView("cheap-1", "cheap", frozenset({"work"}), "registered", NOW, tier="small"),
        AgentView("dear-1", "dear", frozenset({"work"}), "registered", NOW, tier="large"),
    ]

    async def source() -> list[AgentView]:
        return agents

    publisher = Publisher(log, _identity("router-1"), NS, clock=lambda: NOW)
    router = Router(log, publisher, source, clock=lambda: NOW)
    await router.start()
    try:
        ops = Publisher(log, _identity("operator"), NS, clock=lambda: NOW)
        await ops.publish(TaskOffered(task_id="t1", capability="work"))
        for _ in range(5):
            for outcome in await router.step(wait=0.01):
                if outcome.status == "assigned":
                    return outcome.role
    finally:
        await router.close()
    raise AssertionError("the offer was not routed")


async def test_routing_to_the_costliest_tier_changes_the_router_and_the_simulation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert await _router_routes_an_offer() == "cheap"
    before = Counter[str]()
    for r in await _runs(real=True):
        before.update(r.routed)
    assert before["alpha"] > before["beta"]  # alpha is the small tier

    _costliest_first(monkeypatch)
    assert await _router_routes_an_offer() == "dear"
    after = Counter[str]()
    for r in await _runs():
        after.update(r.routed)
    assert after["beta"] > after["alpha"]  # beta, the large tier, now takes most of the work


# -- the watchdog: break a deadlock, not only report it ----------------------------------------


async def test_a_watchdog_that_only_reports_deadlocks_breaks_the_simulations_invariant(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = await _runs(real=True)
    assert all(r.ok for r in before)
    assert sum(r.deadlocks for r in before) > 0

    real = deadlocks.response
    monkeypatch.setattr(deadlocks, "response", lambda deadlock, policy: real(deadlock, "escalate"))
    after = await _runs()
    broken = [v for r in after for v in r.violations]
    assert any("deadlocks made" in v for v in broken), broken
    assert sum(r.deadlocks for r in after) == 0
