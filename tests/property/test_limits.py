"""The protocol's limits on one payload (pure): nesting deeper than MAX_NESTING levels is refused
when signing and, should a forger sign it anyway, quarantined by every reader as malformed."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmlog.bus.ports import StoredMessage
from swarmlog.bus.subjects import subject_for
from swarmlog.errors import SchemaError
from swarmlog.projections.verify import check
from swarmlog.schemas.codec import MAX_NESTING, encode, payload_from_json, signed_data
from swarmlog.schemas.payloads import Result
from swarmlog.schemas.signing import EVENT_DOMAIN, ChainHead, Identity, seal

ALICE = Identity.from_seed("alice", bytes([2]) * 32)


def nested(depth: int, as_dict: bool) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"k": value} if as_dict else [value]
    return value


@given(depth=st.integers(1, MAX_NESTING * 3), as_dict=st.booleans())
def test_nesting_up_to_the_limit_is_signed_and_read_beyond_it_neither(
    depth: int, as_dict: bool
) -> None:
    output = nested(depth, as_dict)
    allowed = depth <= MAX_NESTING
    text = msgspec.json.encode({"task_id": "t1", "output": output})
    if allowed:
        payload = payload_from_json("result", text)
        sealed = seal(ALICE, ChainHead(), payload, now_ns=1_000, entropy=bytes(10))
        message = StoredMessage(1, subject_for("ns", sealed.envelope), sealed.data, 2_000)
        assert check(message, "ns").rejection is None
        return
    with pytest.raises(SchemaError, match="deeper than"):
        payload_from_json("result", text)
    with pytest.raises(SchemaError, match="deeper than"):
        seal(ALICE, ChainHead(), Result(task_id="t1", output=output), now_ns=1, entropy=bytes(10))
    # A forger who signs it anyway, bypassing swarmlog: every reader rejects it, unread.
    sealed = seal(ALICE, ChainHead(), Result(task_id="t1", output="x"), now_ns=1, entropy=bytes(10))
    envelope = msgspec.structs.replace(sealed.envelope, payload=Result(task_id="t1", output=output))
    body = encode(envelope)
    forged = signed_data(body, ALICE.sign(EVENT_DOMAIN, body))
    rejection = check(StoredMessage(1, subject_for("ns", envelope), forged, 2_000), "ns").rejection
    assert rejection is not None
    assert rejection.reason == "malformed"


@given(value=st.integers(min_value=2**64) | st.integers(max_value=-(2**63) - 1))
def test_an_integer_beyond_64_bits_is_refused_when_signing_with_a_clear_error(value: int) -> None:
    # Found by the command-line fuzzing: JSON allows any integer, MessagePack does not.
    payload = payload_from_json("result", msgspec.json.encode({"task_id": "t1", "output": value}))
    with pytest.raises(SchemaError, match="out of range"):
        seal(ALICE, ChainHead(), payload, now_ns=1, entropy=bytes(10))
