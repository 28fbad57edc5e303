"""Tamper evidence beyond signatures (pure): a hash chain over the stream's order, and signed
checkpoints of it.

Signatures say who wrote each event and each sender's own chain says none of its events is
missing; neither says that the stream as a whole is the one that was written. The **stream
chain** does: ``head_0`` is 32 zero bytes and, for each message in stream order,

    head_n = sha256(DOMAIN || head_(n-1) || seq (8 bytes, big-endian) || sha256(data))

so deleting, reordering or rewriting any event, or renumbering the stream, changes every later
head. Subjects are left out (they are derived from the event and checked by the verifier), so a
copy of the stream restored under another namespace has the same chain.

A **checkpoint** is the head at a sequence, signed by the operator (its own signature domain):
export it (``swarmlog audit checkpoint``), keep it elsewhere, and later check any copy of the
stream against it (``swarmlog audit verify --against FILE``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import msgspec

from swarmlog.bus.ports import EventLog
from swarmlog.errors import VerificationError
from swarmlog.schemas.signing import Identity, verify_signature

__all__ = [
    "CHECKPOINT_DOMAIN",
    "MAX_CHECKPOINT_BYTES",
    "Checkpoint",
    "StreamChain",
    "chain_of",
    "sign_checkpoint",
    "verify_checkpoint",
]

CHAIN_DOMAIN = b"swarmlog/stream-chain/v1\x00"
CHECKPOINT_DOMAIN = b"swarmlog/checkpoint/v1\x00"
_ZERO = bytes(32)
MAX_CHECKPOINT_BYTES = 16_384
"""A checkpoint file is a few hundred bytes of JSON; a reader refuses anything larger."""


@dataclass
class StreamChain:
    """The running head of the stream chain; feed it every message in stream order."""

    head: bytes = _ZERO
    position: int = 0
    gaps: list[tuple[int, int]] = field(default_factory=list)
    """Sequence ranges missing from the stream (deleted messages), as ``(first, last)``."""

    def add(self, seq: int, data: bytes) -> None:
        if seq != self.position + 1:
            self.gaps.append((self.position + 1, seq - 1))
        digest = hashlib.sha256(data).digest()
        self.head = hashlib.sha256(
            CHAIN_DOMAIN + self.head + seq.to_bytes(8, "big") + digest
        ).digest()
        self.position = seq

    @property
    def hexhead(self) -> str:
        return self.head.hex()


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    """The stream chain's head at ``seq``, signed by the operator."""

    namespace: str
    seq: int
    head: str
    created_at: str
    operator_key: str
    signature: str = ""

    def body(self) -> bytes:
        unsigned = msgspec.structs.replace(self, signature="")
        return msgspec.json.encode(unsigned, order="sorted")


def sign_checkpoint(operator: Identity, checkpoint: Checkpoint) -> Checkpoint:
    signature = operator.sign(CHECKPOINT_DOMAIN, checkpoint.body())
    return msgspec.structs.replace(checkpoint, signature=signature.hex())


def verify_checkpoint(checkpoint: Checkpoint, operator_key: str) -> None:
    """Raise :class:`VerificationError` unless ``operator_key`` signed ``checkpoint``."""
    if checkpoint.operator_key != operator_key:
        raise VerificationError(
            "checkpoint_operator",
            f"the checkpoint was signed by operator {checkpoint.operator_key[:16]}…, not this"
            f" data dir's {operator_key[:16]}…",
        )
    try:
        signature = bytes.fromhex(checkpoint.signature)
    except ValueError:
        signature = b""
    if not verify_signature(operator_key, CHECKPOINT_DOMAIN, checkpoint.body(), signature):
        raise VerificationError(
            "checkpoint_signature", "the checkpoint's signature does not verify: it was altered"
        )


async def chain_of(log: EventLog, until_seq: int | None = None) -> StreamChain:
    """The stream chain of ``log`` from its first message up to ``until_seq`` (or its end)."""
    chain = StreamChain()
    async for batch in log.read(1, until_seq=until_seq):
        for message in batch:
            if until_seq is not None and message.seq > until_seq:
                return chain
            chain.add(message.seq, message.data)
    return chain
