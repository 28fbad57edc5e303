"""The envelope every event travels in, and its signed wire form."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from swarmlog.schemas.payloads import Payload, payload_type
from swarmlog.schemas.types import MAX_INT, AgentId, EventId, Hash, KeyId, Name, Timestamp

__all__ = [
    "MAX_BATCH",
    "MAX_PATH",
    "SCHEMA_VERSION",
    "BatchProof",
    "Envelope",
    "Ref",
    "SignedEvent",
]

SCHEMA_VERSION = 1
"""The envelope version this code writes; readers upcast older versions."""

Ref = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*\Z", max_length=128)]
"""A reference to another event or conversation (correlation and causation ids)."""


class Envelope(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Who said what, when, in reply to what, and where it sits in the sender's chain.

    The ``type`` of an event is the tag of its ``payload``.
    """

    id: EventId
    """Sortable, unique event id (a ULID); also the ``Nats-Msg-Id`` dedupe key."""
    sender: AgentId
    """The agent that emits the event (``operator`` for the operator)."""
    signer: KeyId
    """The public key that signs the event; must belong to ``sender``'s credential."""
    sender_seq: Annotated[int, Meta(ge=1, le=MAX_INT)]
    """The sender's own sequence number, 1 for its first event."""
    prev_hash: Hash
    """SHA-256 of the sender's previous event body; empty for its first event."""
    occurred_at: Timestamp
    """When the sender emitted it, from the sender's injected clock (ns since the epoch)."""
    payload: Payload
    workflow_id: Name | None = None
    correlation_id: Ref | None = None
    causation_id: Ref | None = None
    recipient: AgentId | None = None
    schema_version: Annotated[int, Meta(ge=1, le=1000)] = SCHEMA_VERSION

    @property
    def type(self) -> str:
        """The event type: the payload's tag."""
        return payload_type(self.payload)


MAX_BATCH = 4096
"""The most events one batch signature may cover (a proof's ``size``)."""
MAX_PATH = 12
"""The longest inclusion path a proof may carry: that of a batch of :data:`MAX_BATCH`."""

_Digest = Annotated[bytes, Meta(min_length=32, max_length=32)]


class BatchProof(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """Where an event sits in a batch signed once (:mod:`swarmlog.schemas.batches`): its index
    among the batch's ``size`` events and the inclusion path from its leaf to the batch's root,
    which the signature covers."""

    index: Annotated[int, Meta(ge=0, lt=MAX_BATCH)]
    size: Annotated[int, Meta(ge=2, le=MAX_BATCH)]
    path: Annotated[list[_Digest], Meta(max_length=MAX_PATH)]


class SignedEvent(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """What is stored on the stream: the encoded envelope, its Ed25519 signature and, for an
    event signed in a batch, its :class:`BatchProof`.

    The signature covers the exact ``body`` bytes (with a domain prefix), directly or through
    the batch's root, so no canonical re-encoding is ever needed to verify. Write the stored
    bytes with :func:`~swarmlog.schemas.codec.signed_data`: encoding this struct itself would
    write a third element (nil) that the reference writer never writes.
    """

    body: bytes
    signature: Annotated[bytes, Meta(min_length=64, max_length=64)]
    proof: BatchProof | None = None
