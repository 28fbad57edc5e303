"""Property tests of batch signatures: the tree and its inclusion proofs (RFC 9162), and that
every member of a batch signed once verifies alone, while any change to one is caught."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from swarmlog.bus.ports import StoredMessage
from swarmlog.bus.subjects import subject_for
from swarmlog.projections.verify import check
from swarmlog.schemas.batches import leaf_hash, root_of, tree
from swarmlog.schemas.codec import MAX_EVENT_BYTES, decode_signed, signed_data
from swarmlog.schemas.envelope import MAX_PATH, BatchProof
from swarmlog.schemas.payloads import Result
from swarmlog.schemas.signing import (
    BATCH_LEAVES,
    ChainHead,
    Identity,
    Prepared,
    prepare,
    sign_all,
)

ALICE = Identity.from_seed("alice", bytes([7]) * 32)
NS = "default"
T0 = 1_700_000_000_000_000_000


def _run(outputs: list[str]) -> list[Prepared]:
    head, out = ChainHead(), []
    for i, text in enumerate(outputs):
        ready = prepare(
            ALICE,
            head,
            Result(task_id=f"t{i}", output=text),
            now_ns=T0 + i * 1_000_000,
            entropy=i.to_bytes(10, "big"),
        )
        out.append(ready)
        head = ready.head
    return out


def _verdict(sealed_data: bytes, prepared: Prepared) -> str | None:
    message = StoredMessage(1, subject_for(NS, prepared.envelope), sealed_data)
    rejection = check(message, NS).rejection
    return None if rejection is None else rejection.reason


@settings(max_examples=60)
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=70))
def test_every_leaf_proves_its_way_to_the_root_and_nowhere_else(bodies: list[bytes]) -> None:
    root, paths = tree([leaf_hash(b) for b in bodies])
    size = len(bodies)
    for index, (body, path) in enumerate(zip(bodies, paths, strict=True)):
        assert len(path) <= MAX_PATH
        if size == 1:
            continue
        assert root_of(body, BatchProof(index, size, path)) == root
        assert root_of(body + b"x", BatchProof(index, size, path)) != root
        if path:
            assert root_of(body, BatchProof(index, size, path[:-1])) != root
        assert root_of(body, BatchProof(index, size, [*path, root])) != root
        other = (index + 1) % size
        if bodies[other] != body:
            assert root_of(body, BatchProof(other, size, path)) != root
    assert root_of(bodies[0], BatchProof(size, size + 1 if size > 1 else 2, [])) is None


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=1, max_value=3 * BATCH_LEAVES + 5))
def test_a_run_signed_in_batches_verifies_member_by_member(n: int) -> None:
    prepared = _run([f"out {i}" for i in range(n)])
    sealed = sign_all(prepared, ALICE)
    assert [s.envelope for s in sealed] == [p.envelope for p in prepared]
    signed = [decode_signed(s.data) for s in sealed]
    sizes = {s.proof.size for s in signed if s.proof is not None}
    # One signature per batch, batches as even as may be and never of one event.
    assert len({s.signature for s in signed}) == -(-n // BATCH_LEAVES)
    assert all(s.proof is None for s in signed) == (n == 1)
    assert not sizes or (max(sizes) <= BATCH_LEAVES and max(sizes) - min(sizes) <= 1)
    for s, p in zip(sealed, prepared, strict=True):
        assert _verdict(s.data, p) is None


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=2, max_value=BATCH_LEAVES), st.data())
def test_a_member_changed_in_any_way_is_a_bad_signature(n: int, data: st.DataObject) -> None:
    prepared = _run([f"out {i}" for i in range(n)])
    signed = [decode_signed(s.data) for s in sign_all(prepared, ALICE)]
    i = data.draw(st.integers(0, n - 1))
    j = data.draw(st.integers(0, n - 1).filter(lambda j: j != i))
    member, proof = signed[i], signed[i].proof
    assert proof is not None
    other = signed[j].proof
    assert other is not None
    forgeries = [
        # Another member's place in the tree.
        signed_data(member.body, member.signature, BatchProof(j, n, proof.path)),
        signed_data(member.body, member.signature, other),
        # No proof: the signature is over the root, not the body.
        signed_data(member.body, member.signature),
        # The batch said to be larger.
        signed_data(member.body, member.signature, BatchProof(i, n + 1, proof.path)),
    ]
    for forged in forgeries:
        assert _verdict(forged, prepared[i]) == "bad_signature"
    # Another member's body (genuine, under its own subject) with this one's proof.
    assert _verdict(signed_data(signed[j].body, member.signature, proof), prepared[j]) == (
        "bad_signature"
    )


def test_a_body_with_no_room_for_a_proof_is_signed_alone() -> None:
    prepared = _run(["a", "x" * (MAX_EVENT_BYTES - 900), "b"])
    signed = [decode_signed(s.data) for s in sign_all(prepared, ALICE)]
    assert signed[1].proof is None
    assert signed[0].proof is not None
    assert signed[2].proof is not None
    assert (signed[0].proof.size, signed[0].proof.index, signed[2].proof.index) == (2, 0, 1)
