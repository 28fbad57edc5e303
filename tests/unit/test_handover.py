"""Work that moves on (a hand-over to a fallback role, a claimed swarm offer) keeps every field
that must survive, and internal-only work never goes to a role with an external replica: the
runtime asks the projection, as the router does, and fails closed when it cannot."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest

from fakes import RUNNING
from swarmlog.agents.api import Agent, Context, on
from swarmlog.agents.policy.retry import RetryPolicy
from swarmlog.agents.policy.routing import AGENTS_SQL
from swarmlog.agents.publisher import Publisher
from swarmlog.agents.runtime import AgentRuntime, Outcome
from swarmlog.bus.memory import MemoryLog
from swarmlog.schemas.codec import decode_envelope, decode_signed
from swarmlog.schemas.credentials import Credential
from swarmlog.schemas.payloads import Payload, Result, TaskAssignment, TaskOffered
from swarmlog.schemas.signing import Identity, issue_credential

NS = "ho"
LATER = time.time_ns() + 3600 * 10**9
SCHEMA = {"type": "object"}


def identity(name: str) -> Identity:
    return Identity.from_seed(name, hashlib.sha256(name.encode()).digest())


class Failing(Agent):
    role = "keeper"
    capabilities = ("secret",)
    retry = RetryPolicy(initial_delay=0.01, max_delay=0.1, max_attempts=2, jitter=0)
    fallback_role = "spare"

    @on(TaskAssignment)
    async def run(self, task: TaskAssignment, ctx: Context) -> object:
        raise RuntimeError("down")


class Claimer(Agent):
    role = "keeper"
    capabilities = ("secret",)
    swarm = True

    @on(TaskAssignment)
    async def run(self, task: TaskAssignment, ctx: Context) -> object:
        return {"internal_only": task.internal_only, "deadline_at": task.deadline_at}


Query = Callable[[str], Awaitable[list[dict[str, Any]]]]


def projection(*agents: tuple[str, str, str]) -> Query:
    """A projection knowing ``(agent_id, role, trust_level)`` agents."""

    async def query(sql: str) -> list[dict[str, Any]]:
        assert sql == AGENTS_SQL  # the router's own view of the agents
        return [
            {
                "agent_id": agent_id,
                "role": role,
                "capabilities": json.dumps(["secret"]),
                "status": "registered",
                "last_heartbeat_at": 1,
                "in_flight": 0,
                "tier": "",
                "dependencies": "[]",
                "trust_level": trust,
            }
            for agent_id, role, trust in agents
        ]

    return query


async def broken(sql: str) -> list[dict[str, Any]]:
    raise TimeoutError("no reply")


pytestmark = pytest.mark.usefixtures("close_runtimes")


class Setup:
    def __init__(self) -> None:
        self.log = MemoryLog("SWARMLOG_HO")
        self.operator = identity("operator")
        self.ops = Publisher(self.log, self.operator, NS)

    async def start(self, agent: Agent, query: Query | None) -> AgentRuntime:
        worker = identity("keeper-1")
        credential = Credential(
            agent_id=worker.agent_id,
            role=agent.role,
            public_key=worker.public_key,
            issuer=self.operator.public_key,
            issued_at=1,
            capabilities=list(agent.capabilities),
        )
        await self.ops.publish(issue_credential(self.operator, credential))
        runtime = AgentRuntime(agent, self.log, Publisher(self.log, worker, NS), query=query)
        await runtime.start()
        RUNNING.append(runtime)
        return runtime

    def payloads(self, kind: type[Payload]) -> list[Any]:
        found = []
        for m in self.log._messages:
            payload = decode_envelope(decode_signed(m.data).body).payload
            if isinstance(payload, kind):
                found.append(payload)
        return found


async def outcomes(runtime: AgentRuntime, count: int) -> list[Outcome]:
    got: list[Outcome] = []
    end = time.monotonic() + 10
    while len(got) < count and time.monotonic() < end:
        got += await runtime.step(wait=0.05)
    return got


SECRET = TaskAssignment(
    task_id="t1",
    role="keeper",
    capability="secret",
    priority="high",
    input={"ledger": "private"},
    deadline_at=LATER,
    parent_task_id="p1",
    expected_output_schema=SCHEMA,
    internal_only=True,
)


async def test_internal_work_is_not_handed_to_a_fallback_role_with_an_external_replica() -> None:
    s = Setup()
    query = projection(("keeper-1", "keeper", "internal"), ("spare-2", "spare", "external"))
    runtime = await s.start(Failing(), query)
    await s.ops.publish(SECRET, workflow_id="wf")
    done = await outcomes(runtime, 2)
    assert [o.status for o in done] == ["retrying", "escalated"]
    assert [m for m in s.log._messages if ".work.spare." in m.subject] == []
    (escalated,) = [m for m in s.log._messages if m.subject.endswith(".task_escalated")]
    assert b"role spare has an external replica" in escalated.data


@pytest.mark.parametrize("query", [None, broken], ids=["no projection", "projection down"])
async def test_internal_work_is_not_handed_over_when_trust_cannot_be_checked(
    query: Query | None,
) -> None:
    s = Setup()
    runtime = await s.start(Failing(), query)
    await s.ops.publish(SECRET, workflow_id="wf")
    assert [o.status for o in await outcomes(runtime, 2)] == ["retrying", "escalated"]
    assert [m for m in s.log._messages if ".work.spare." in m.subject] == []


async def test_a_hand_over_carries_every_field_and_counts_the_attempts_on() -> None:
    s = Setup()
    query = projection(("keeper-1", "keeper", "internal"), ("spare-1", "spare", "internal"))
    runtime = await s.start(Failing(), query)
    await s.ops.publish(SECRET, workflow_id="wf")
    assert [o.status for o in await outcomes(runtime, 2)] == ["retrying", "reassigned"]
    handed = [a for a in s.payloads(TaskAssignment) if a.role == "spare"]
    # every field carried over; two attempts failed here: it resumes from their checkpoint
    expected = msgspec.structs.replace(SECRET, role="spare", attempt=3)
    assert handed == [expected]


def secret_offer() -> TaskOffered:
    return TaskOffered(
        task_id="s1", capability="secret", mode="swarm", deadline_at=LATER, internal_only=True
    )


async def test_a_role_with_an_external_replica_does_not_claim_internal_swarm_work() -> None:
    s = Setup()
    query = projection(("keeper-1", "keeper", "internal"), ("keeper-2", "keeper", "external"))
    runtime = await s.start(Claimer(), query)
    await s.ops.publish(secret_offer(), workflow_id="wf")
    assert [o.status for o in await outcomes(runtime, 1)] == ["not_trusted"]
    assert not any(m.subject.endswith(".task_claimed") for m in s.log._messages)


async def test_a_claimed_offer_runs_as_internal_only_work_with_its_deadline() -> None:
    s = Setup()
    runtime = await s.start(Claimer(), projection(("keeper-1", "keeper", "internal")))
    await s.ops.publish(secret_offer(), workflow_id="wf")
    assert [o.status for o in await outcomes(runtime, 1)] == ["succeeded"]
    (result,) = s.payloads(Result)
    assert result.output == {"internal_only": True, "deadline_at": LATER}  # its subtasks too
