"""The stream chain and signed checkpoints on a real server: an untouched copy of the stream
matches a checkpoint of the original; a copy with one event deleted, two reordered or one
rewritten does not; a checkpoint altered or signed by another operator is refused."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec
import pytest
from swarmkit import Swarm, seed

from swarmlog.bus.jetstream import JetStreamLog
from swarmlog.bus.ports import Append, StoredMessage
from swarmlog.errors import VerificationError
from swarmlog.projections.streamchain import (
    Checkpoint,
    chain_of,
    sign_checkpoint,
    verify_checkpoint,
)
from swarmlog.schemas.payloads import Result, TaskAssignment
from swarmlog.schemas.signing import Identity

pytestmark = pytest.mark.integration

Tamper = Callable[[list[StoredMessage]], list[StoredMessage]]


def untouched(ms: list[StoredMessage]) -> list[StoredMessage]:
    return ms


def delete_one(ms: list[StoredMessage]) -> list[StoredMessage]:
    return ms[:7] + ms[8:]


def swap_two(ms: list[StoredMessage]) -> list[StoredMessage]:
    return [*ms[:5], ms[6], ms[5], *ms[7:]]


def rewrite_one(ms: list[StoredMessage]) -> list[StoredMessage]:
    m = ms[9]
    changed = StoredMessage(m.seq, m.subject, m.data[:-1] + bytes([m.data[-1] ^ 1]))
    return [*ms[:9], changed, *ms[10:]]


async def copy_of(swarm: Swarm, tamper: Tamper) -> JetStreamLog:
    """The stream copied, message by message, into a fresh stream of another namespace."""
    original = [m async for batch in swarm.log.read(1) for m in batch]
    namespace = f"c{uuid.uuid4().hex[:10]}"
    copy = await JetStreamLog.open(swarm.settings.nats_url or "", namespace, provision=True)
    prefix, new = f"swarmlog.{swarm.namespace}.", f"swarmlog.{namespace}."
    for i, m in enumerate(tamper(original)):
        subject = new + m.subject.removeprefix(prefix)
        await copy.append(Append(subject=subject, data=m.data, msg_id=f"copy-{i}"))
    return copy


@pytest.mark.parametrize(
    ("tamper", "matches"),
    [(untouched, True), (delete_one, False), (swap_two, False), (rewrite_one, False)],
)
async def test_a_copied_stream_is_checked_against_a_checkpoint(
    swarm: Swarm, tamper: Tamper, matches: bool
) -> None:
    await swarm.publisher(swarm.operator).publish_many(
        [TaskAssignment(task_id=f"t{i}", role="worker") for i in range(10)]
    )
    await swarm.publisher(swarm.alice).publish_many(
        [Result(task_id=f"t{i}", output=i) for i in range(10)]
    )
    chain = await chain_of(swarm.log)
    checkpoint = sign_checkpoint(
        swarm.operator,
        Checkpoint(
            namespace=swarm.namespace,
            seq=chain.position,
            head=chain.hexhead,
            created_at=datetime.now(UTC).isoformat(),
            operator_key=swarm.operator.public_key,
        ),
    )
    exported = msgspec.json.decode(msgspec.json.encode(checkpoint), type=Checkpoint)
    verify_checkpoint(exported, swarm.operator.public_key)  # it travels as JSON and still checks
    copy = await copy_of(swarm, tamper)
    try:
        at = await chain_of(copy, exported.seq)
        assert (at.position == exported.seq and at.hexhead == exported.head) is matches
        assert at.gaps == []  # a copy has no holes to give it away: only the chain does
    finally:
        await copy.close()


async def test_an_altered_or_foreign_checkpoint_is_refused(swarm: Swarm) -> None:
    chain = await chain_of(swarm.log)
    checkpoint = sign_checkpoint(
        swarm.operator,
        Checkpoint(
            namespace=swarm.namespace,
            seq=chain.position,
            head=chain.hexhead,
            created_at="2026-11-26T00:00:00+00:00",
            operator_key=swarm.operator.public_key,
        ),
    )
    moved = msgspec.structs.replace(checkpoint, seq=checkpoint.seq + 1)
    with pytest.raises(VerificationError, match="does not verify"):
        verify_checkpoint(moved, swarm.operator.public_key)
    stranger = Identity.from_seed("operator", seed("someone else"))
    forged = sign_checkpoint(
        stranger, msgspec.structs.replace(checkpoint, operator_key=stranger.public_key)
    )
    with pytest.raises(VerificationError, match="signed by operator"):
        verify_checkpoint(forged, swarm.operator.public_key)
