"""Property tests of the wire format: encoding, sealing, tamper evidence, hostile input.

Schema-valid values come from ``st.from_type``, backed by the msgspec-derived strategies that
``conftest.py`` registers for every schema struct.
"""

from __future__ import annotations

import typing
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarmlog.errors import SchemaError
from swarmlog.schemas.codec import (
    MAX_EVENT_BYTES,
    decode_credential,
    decode_envelope,
    decode_signed,
    encode,
    payload_from_json,
    signed_data,
)
from swarmlog.schemas.credentials import Credential
from swarmlog.schemas.envelope import Envelope
from swarmlog.schemas.payloads import PAYLOAD_TYPES, Payload, TaskAssignment, payload_type
from swarmlog.schemas.signing import (
    CREDENTIAL_DOMAIN,
    EVENT_DOMAIN,
    ChainHead,
    Identity,
    event_hash,
    seal,
    verify_signature,
)
from swarmlog.schemas.types import MAX_INT, AgentId, EventId, KeyId, Name

TAGS = sorted(PAYLOAD_TYPES)

envelopes = st.from_type(Envelope)
seeds = st.binary(min_size=32, max_size=32)
entropies = st.binary(min_size=10, max_size=10)
timestamps = st.integers(min_value=0, max_value=MAX_INT)


def envelope_with(tag: str) -> st.SearchStrategy[Envelope]:
    """Envelopes whose payload is of type ``tag``."""
    return st.builds(
        lambda env, payload: msgspec.structs.replace(env, payload=payload),
        envelopes,
        st.from_type(PAYLOAD_TYPES[tag]),
    )


def flip(data: bytes, index: int, mask: int) -> bytes:
    assert 0 <= index < len(data)
    assert 1 <= mask <= 255
    return data[:index] + bytes([data[index] ^ mask]) + data[index + 1 :]


# --- the payload union ---------------------------------------------------------------------------


def test_payload_union_is_exactly_payload_types() -> None:
    members = set(typing.get_args(Payload))
    assert members == set(PAYLOAD_TYPES.values())
    for tag, cls in PAYLOAD_TYPES.items():
        assert cls.__struct_config__.tag == tag
        assert cls.__struct_config__.tag_field == "type"


@given(st.data())
# One draw of every payload type per example: slow to generate by design, more so on a loaded
# machine; what is checked is coverage, not speed. A few examples show the union is reached (each
# type's encodings get examples of their own below), so the default hundred would only repeat it.
@settings(max_examples=10, suppress_health_check=[HealthCheck.too_slow])
def test_strategies_cover_every_payload_type(data: st.DataObject) -> None:
    """One schema-valid payload of every type: the strategies reach the whole union."""
    seen = set()
    for tag, cls in PAYLOAD_TYPES.items():
        payload = data.draw(st.from_type(cls), label=tag)
        assert isinstance(payload, cls)
        assert payload_type(payload) == tag
        # Schema-valid: it survives a validating conversion unchanged.
        assert msgspec.convert(msgspec.to_builtins(payload), Payload) == payload
        seen.add(payload_type(payload))
    assert seen == set(PAYLOAD_TYPES)


# --- encoding round trips ------------------------------------------------------------------------


@pytest.mark.parametrize("tag", TAGS)
@given(data=st.data())
def test_envelope_round_trip_per_type(tag: str, data: st.DataObject) -> None:
    envelope = data.draw(envelope_with(tag))
    assert envelope.type == tag
    body = encode(envelope)
    decoded = decode_envelope(body)
    assert decoded == envelope
    assert decoded.type == tag
    assert encode(decoded) == body


@given(envelopes)
def test_envelope_json_form_is_faithful(envelope: Envelope) -> None:
    decoded = msgspec.json.decode(msgspec.json.encode(envelope), type=Envelope)
    assert decoded == envelope


@pytest.mark.parametrize("tag", TAGS)
@given(data=st.data())
def test_payload_json_round_trip(tag: str, data: st.DataObject) -> None:
    """What a user types for ``events publish`` is msgspec's JSON (bytes in base64)."""
    payload = data.draw(st.from_type(PAYLOAD_TYPES[tag]))
    text = msgspec.json.encode(payload)
    assert payload_from_json(tag, text) == payload
    assert payload_from_json(tag, text.decode()) == payload


def test_payload_json_bytes_are_base64() -> None:
    from swarmlog.schemas.payloads import CredentialIssued

    payload = CredentialIssued(credential=b"\x00\xffabc", signature=bytes(range(64)))
    as_json = msgspec.json.decode(msgspec.json.encode(payload))
    assert as_json["credential"] == "AP9hYmM="
    assert payload_from_json("credential_issued", msgspec.json.encode(payload)) == payload


# --- sealing -------------------------------------------------------------------------------------


@st.composite
def sealed_events(draw: st.DrawFn) -> tuple[Identity, ChainHead, Envelope, Any]:
    template = draw(envelopes)
    identity = Identity.from_seed(template.sender, draw(seeds))
    head = ChainHead(template.sender_seq - 1, template.prev_hash)
    sealed = seal(
        identity,
        head,
        template.payload,
        now_ns=draw(timestamps),
        entropy=draw(entropies),
        workflow_id=template.workflow_id,
        correlation_id=template.correlation_id,
        causation_id=template.causation_id,
        recipient=template.recipient,
    )
    return identity, head, template, sealed


@given(sealed_events())
def test_seal_decodes_to_the_same_envelope_and_verifies(case: Any) -> None:
    identity, head, template, sealed = case
    signed = decode_signed(sealed.data)
    envelope = decode_envelope(signed.body)
    assert envelope == sealed.envelope
    assert envelope.payload == template.payload
    assert envelope.sender == identity.agent_id
    assert envelope.signer == identity.public_key
    assert envelope.sender_seq == head.seq + 1
    assert envelope.prev_hash == head.hash
    assert sealed.head == ChainHead(head.seq + 1, event_hash(signed.body))
    assert verify_signature(envelope.signer, EVENT_DOMAIN, signed.body, signed.signature)
    # Domain separation: the same signature is not a credential signature.
    assert not verify_signature(envelope.signer, CREDENTIAL_DOMAIN, signed.body, signed.signature)


def _decodes_and_verifies(data: bytes) -> bool:
    """True if ``data`` is a signed event whose signature checks out; only SchemaError allowed."""
    try:
        signed = decode_signed(data)
        envelope = decode_envelope(signed.body)
    except SchemaError:
        return False
    return verify_signature(envelope.signer, EVENT_DOMAIN, signed.body, signed.signature)


@given(sealed_events(), st.data())
def test_flipping_any_byte_of_the_wire_form_is_detected(case: Any, data: st.DataObject) -> None:
    sealed = case[3]
    assert _decodes_and_verifies(sealed.data)
    index = data.draw(st.integers(0, len(sealed.data) - 1), label="index")
    mask = data.draw(st.integers(1, 255), label="mask")
    assert not _decodes_and_verifies(flip(sealed.data, index, mask))


@given(sealed_events(), st.data())
def test_flipping_any_byte_of_body_or_signature_is_detected(case: Any, data: st.DataObject) -> None:
    sealed = case[3]
    signed = decode_signed(sealed.data)
    signer = sealed.envelope.signer
    mask = data.draw(st.integers(1, 255), label="mask")
    if data.draw(st.booleans(), label="flip body"):
        body = flip(signed.body, data.draw(st.integers(0, len(signed.body) - 1)), mask)
        signature = signed.signature
    else:
        body = signed.body
        signature = flip(signed.signature, data.draw(st.integers(0, 63)), mask)
    assert not verify_signature(signer, EVENT_DOMAIN, body, signature)
    assert not _decodes_and_verifies(signed_data(body, signature))


# --- hostile input -------------------------------------------------------------------------------


@given(st.binary(max_size=2048))
def test_arbitrary_bytes_raise_only_schema_error(data: bytes) -> None:
    for decoder in (decode_signed, decode_envelope, decode_credential):
        error: SchemaError | None = None
        try:
            decoder(data)
        except SchemaError as exc:
            error = exc
        if error is not None:
            assert error.path
            assert str(error).startswith("[SWL200]")


#: Arbitrary MessagePack-able values, to reach past the framing into validation.
_any_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=80).filter(lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s))
    | st.binary(max_size=80)
    | st.builds(msgspec.msgpack.Ext, st.integers(0, 127), st.binary(max_size=8)),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8).filter(str.isprintable), children, max_size=4)
    ),
    max_leaves=12,
)


@given(envelopes, st.data())
def test_mutated_envelopes_decode_or_raise_schema_error(
    envelope: Envelope, data: st.DataObject
) -> None:
    """Replace, add or drop one (possibly nested) field of a valid envelope."""
    raw = msgspec.msgpack.decode(encode(envelope))
    target: dict[str, Any] = raw
    if data.draw(st.booleans(), label="in payload"):
        target = raw["payload"]
    keys = sorted(target)
    action = data.draw(st.sampled_from(["replace", "add", "drop"]), label="action")
    if action == "drop":
        del target[data.draw(st.sampled_from(keys))]
    else:
        key = data.draw(st.sampled_from(keys)) if action == "replace" else data.draw(st.text())
        target[key] = data.draw(_any_values, label="value")
    try:
        body = msgspec.msgpack.encode(raw)
    except (UnicodeEncodeError, OverflowError):
        return
    try:
        decoded = decode_envelope(body)
    except SchemaError:
        return
    # Whatever decodes is a valid envelope that survives a round trip and has a JSON view
    # (the fold stores payloads as JSON, the CLI shows envelopes as JSON).
    assert decode_envelope(encode(decoded)) == decoded
    assert msgspec.json.decode(msgspec.json.encode(decoded))["id"] == decoded.id


@pytest.mark.parametrize("depth", [10, 1_000, 5_000, 100_000])
def test_deeply_nested_json_is_a_schema_error_not_a_crash(depth: int) -> None:
    """A small (well under the size limit) but deeply nested ``input`` must not crash readers."""
    envelope = Envelope(
        id="0" * 26,
        sender="a",
        signer="0" * 64,
        sender_seq=1,
        prev_hash="",
        occurred_at=0,
        payload=TaskAssignment(task_id="t", role="r", input=[]),
    )
    body = encode(envelope)
    empty = msgspec.msgpack.encode([])
    assert body.count(empty) == 1
    nested = body.replace(empty, b"\x91" * depth + empty)
    assert len(nested) < MAX_EVENT_BYTES
    try:
        decoded = decode_envelope(nested)
    except SchemaError:
        pass
    else:
        assert isinstance(decoded.payload, TaskAssignment)

    text = b'{"task_id": "t", "role": "r", "input": ' + b"[" * depth + b"]" * depth + b"}"
    try:
        payload = payload_from_json("task_assignment", text)
    except SchemaError:
        return
    assert isinstance(payload, TaskAssignment)


def test_oversized_wire_form_is_a_schema_error() -> None:
    with pytest.raises(SchemaError, match="byte limit"):
        decode_signed(b"\x00" * (MAX_EVENT_BYTES + 1))


@pytest.mark.parametrize("type_", ["", "nope", "Result", "task-assignment"])
def test_payload_from_json_unknown_type(type_: str) -> None:
    with pytest.raises(SchemaError, match="unknown event type"):
        payload_from_json(type_, "{}")


@given(st.from_type(Credential))
def test_credential_round_trip(credential: Credential) -> None:
    assert decode_credential(encode(credential)) == credential


@pytest.mark.parametrize(
    "type_", [AgentId, Name, EventId, KeyId], ids=["AgentId", "Name", "EventId", "KeyId"]
)
def test_token_types_reject_a_trailing_newline(type_: Any) -> None:
    valid = {AgentId: "agent", Name: "task", EventId: "0" * 26, KeyId: "0" * 64}[type_]
    assert msgspec.convert(valid, type_) == valid
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(valid + "\n", type_)
