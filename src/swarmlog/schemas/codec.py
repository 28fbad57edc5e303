"""Encoders and decoders, built once at import (msgspec's fast path)."""

from __future__ import annotations

from typing import Any

import msgspec

from swarmlog.errors import SchemaError
from swarmlog.schemas.credentials import Credential
from swarmlog.schemas.envelope import BatchProof, Envelope, SignedEvent
from swarmlog.schemas.payloads import PAYLOAD_TYPES, Payload

__all__ = [
    "MAX_EVENT_BYTES",
    "MAX_NESTING",
    "check_nesting",
    "decode_credential",
    "decode_envelope",
    "decode_signed",
    "encode",
    "payload_from_json",
    "signed_data",
]

MAX_EVENT_BYTES = 524_288
"""Largest message (signed wire form) that readers accept; larger is quarantined unread."""

MAX_NESTING = 64
"""Deepest nesting of arrays and objects in one payload field. Fixed, not a setting: every reader
must reject the same events, or replays would differ."""

_encoder = msgspec.msgpack.Encoder()
_json_encoder = msgspec.json.Encoder()


def _no_ext(code: int, data: memoryview) -> Any:
    # JSON fields must stay JSON: an extension value could not be projected or shown.
    raise msgspec.ValidationError(f"MessagePack extension type {code} is not allowed")


_envelope_decoder = msgspec.msgpack.Decoder(Envelope, ext_hook=_no_ext)
_signed_decoder = msgspec.msgpack.Decoder(SignedEvent, ext_hook=_no_ext)
_credential_decoder = msgspec.msgpack.Decoder(Credential, ext_hook=_no_ext)

# What a decoder raises on hostile input: besides msgspec's own errors, invalid UTF-8 in a
# string raises UnicodeDecodeError and too deep nesting raises RecursionError.
_DECODE_ERRORS = (
    msgspec.DecodeError,
    msgspec.ValidationError,
    UnicodeDecodeError,
    RecursionError,
)


def encode(obj: Any) -> bytes:
    """MessagePack bytes of a struct (envelope, signed event, credential)."""
    return _encoder.encode(obj)


def signed_data(body: bytes, signature: bytes, proof: BatchProof | None = None) -> bytes:
    """The stored form of a signed event: ``[body, signature]``, or with its batch proof
    ``[body, signature, proof]`` (the bytes :class:`SignedEvent` decodes)."""
    if proof is None:
        return _encoder.encode((body, signature))
    return _encoder.encode((body, signature, proof))


def _schema_error(what: str, exc: Exception) -> SchemaError:
    text = str(exc)
    path = text.rsplit("at `", 1)[1].rstrip("`") if "at `" in text else "$"
    return SchemaError(f"malformed {what}: {text}", path=path)


def decode_signed(data: bytes) -> SignedEvent:
    """Decode the wire form; raises :class:`SchemaError` if it is not a signed event."""
    if len(data) > MAX_EVENT_BYTES:
        raise SchemaError(f"event is {len(data)} bytes, over the {MAX_EVENT_BYTES} byte limit")
    try:
        return _signed_decoder.decode(data)
    except _DECODE_ERRORS as exc:
        raise _schema_error("signed event", exc) from None


def decode_envelope(body: bytes) -> Envelope:
    """Decode an envelope; the error names the offending field path."""
    try:
        envelope = _envelope_decoder.decode(body)
    except _DECODE_ERRORS as exc:
        raise _schema_error("envelope", exc) from None
    check_nesting(envelope.payload)
    return envelope


def _too_deep(value: Any, limit: int) -> bool:
    # Iterative, and it stops at the limit: a hostile value costs no more than the limit allows.
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


_SCALARS = (str, int, float, bool, type(None))
_json_encoder = msgspec.json.Encoder()


def check_nesting(payload: msgspec.Struct) -> None:
    """Raise :class:`SchemaError` when a field of ``payload`` nests arrays and objects deeper
    than :data:`MAX_NESTING` levels, or holds what JSON cannot (a map key that is nil, a
    boolean or an array; a MessagePack extension): the projections keep such fields as JSON,
    so an event the fold could not store is refused whole here, by writer and reader alike,
    rather than stopping the projector at it (a hostile agent's poison message)."""
    for name in payload.__struct_fields__:
        value = getattr(payload, name)
        if isinstance(value, _SCALARS):
            continue
        if isinstance(value, dict | list) and _too_deep(value, MAX_NESTING):
            raise SchemaError(
                f"payload field {name!r} nests arrays/objects deeper than {MAX_NESTING} levels",
                path=f"$.payload.{name}",
            )
        try:
            _json_encoder.encode(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise SchemaError(
                f"payload field {name!r} holds what JSON cannot ({exc}): object keys must be"
                " strings or numbers, values JSON's own",
                path=f"$.payload.{name}",
            ) from None


def decode_credential(data: bytes) -> Credential:
    try:
        return _credential_decoder.decode(data)
    except _DECODE_ERRORS as exc:
        raise _schema_error("credential", exc) from None


def payload_from_json(type_: str, data: bytes | str) -> Payload:
    """Build a payload of ``type_`` from JSON given by a user (CLI ``events publish``)."""
    cls = PAYLOAD_TYPES.get(type_)
    if cls is None:
        raise SchemaError(
            f"unknown event type {type_!r}; run `swarmlog events types` to list the types"
        )
    raw = data.encode() if isinstance(data, str) else data
    try:
        obj = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise SchemaError(f"payload is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise SchemaError("payload must be a JSON object")
    obj.pop("type", None)
    try:
        result: Payload = msgspec.convert(obj, cls)  # type: ignore[assignment]
    except msgspec.ValidationError as exc:
        raise _schema_error(f"{type_} payload", exc) from None
    check_nesting(result)
    return result
