"""The claim protocol on the in-memory bus: however many agents race, exactly one wins, and the
projection records that one."""

from __future__ import annotations

import asyncio
import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from swarmlog.agents.claims import claim
from swarmlog.agents.publisher import Publisher
from swarmlog.bus.memory import MemoryLog
from swarmlog.bus.ports import Append, AppendResult, StoredMessage
from swarmlog.projections.fold import fold_checked
from swarmlog.projections.state import State
from swarmlog.projections.verify import check
from swarmlog.schemas.credentials import Credential
from swarmlog.schemas.payloads import TaskOffered
from swarmlog.schemas.signing import Identity, issue_credential

NS = "claims"


class InterleavingLog(MemoryLog):
    """The in-memory log, yielding to other tasks before each read or write as a drawn schedule
    says, so claimants really interleave between reading the offer and appending a claim."""

    def __init__(self, pauses: list[int]) -> None:
        super().__init__("SWARMLOG_CLAIMS")
        self._pauses = pauses
        self._calls = 0

    async def _pause(self) -> None:
        self._calls += 1
        for _ in range(self._pauses[self._calls % len(self._pauses)]):
            await asyncio.sleep(0)

    async def last_message(self, filter_subject: str) -> StoredMessage | None:
        await self._pause()
        return await super().last_message(filter_subject)

    async def append(self, item: Append) -> AppendResult:
        await self._pause()
        return await super().append(item)


def identity(name: str) -> Identity:
    return Identity.from_seed(name, hashlib.sha256(name.encode()).digest())


async def race(claimants: int, delays: list[int]) -> tuple[list[bool], str | None]:
    log = InterleavingLog(delays)
    operator = identity("operator")
    ops = Publisher(log, operator, NS)
    agents = [identity(f"a{i}") for i in range(claimants)]
    for agent in agents:
        credential = Credential(
            agent_id=agent.agent_id,
            role="worker",
            public_key=agent.public_key,
            issuer=operator.public_key,
            issued_at=1,
            capabilities=["web"],
        )
        await ops.publish(issue_credential(operator, credential))
    await ops.publish(TaskOffered(task_id="t1", capability="web", mode="swarm"), workflow_id="wf")
    publishers = [Publisher(log, a, NS) for a in agents]

    async def contender(i: int) -> bool:
        return (await claim(log, publishers[i], "t1")).won

    wins = await asyncio.gather(*(contender(i) for i in range(claimants)))
    # The projector's own check and fold over the log (the DuckDB writer equals this fold:
    # tests/property/test_fold.py), without a database file per example.
    stored = [m async for batch in log.read(1) for m in batch]
    state = State()
    fold_checked(state, (check(m, NS) for m in stored), operator.public_key)
    row = state.rows["tasks"][("t1",)]
    assert row["status"] == "claimed"
    return list(wins), row["claimed_by"]


@settings(deadline=None)
@given(st.integers(2, 12), st.lists(st.integers(0, 3), min_size=1, max_size=24))
def test_exactly_one_claim_wins_and_is_projected(claimants: int, delays: list[int]) -> None:
    wins, claimed_by = asyncio.run(race(claimants, delays))
    assert wins.count(True) == 1
    assert claimed_by == f"a{wins.index(True)}"
