"""Ed25519 identity, domain-separated signatures, the per-sender hash chain and sealing.

Pure: keys, clocks and entropy come in as arguments. An event signature is made over
``EVENT_DOMAIN + body`` (a batch's over ``BATCH_DOMAIN`` + its size and root:
:mod:`swarmlog.schemas.batches`), a credential signature over ``CREDENTIAL_DOMAIN + body``
and a presence over ``PRESENCE_DOMAIN + body``, so a signature for one use can never be
replayed as another (a NATS login nonce, say).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import nacl.bindings
import nacl.exceptions
import nacl.signing

from swarmlog.errors import SchemaError
from swarmlog.schemas.batches import BATCH_DOMAIN, batch_message, leaf_hash, root_of, tree
from swarmlog.schemas.codec import MAX_EVENT_BYTES, check_nesting, encode, signed_data
from swarmlog.schemas.credentials import Credential
from swarmlog.schemas.envelope import BatchProof, Envelope, SignedEvent
from swarmlog.schemas.ids import new_event_id
from swarmlog.schemas.payloads import CredentialIssued, Payload

__all__ = [
    "AUDITOR_ROLE",
    "BATCH_LEAVES",
    "CONDUCTOR_ROLE",
    "CONTROL_TYPES",
    "CREDENTIAL_DOMAIN",
    "EVENT_DOMAIN",
    "INTERNAL_TYPES",
    "OPERATOR_ID",
    "PRESENCE_DOMAIN",
    "ROUTER_ROLE",
    "WATCHDOG_ROLE",
    "ChainHead",
    "Identity",
    "Prepared",
    "Sealed",
    "event_hash",
    "forget_verified_roots",
    "issue_credential",
    "prepare",
    "seal",
    "sign_all",
    "signed_validly",
    "verify_signature",
]

EVENT_DOMAIN = b"swarmlog/event/v1\x00"
CREDENTIAL_DOMAIN = b"swarmlog/credential/v1\x00"
PRESENCE_DOMAIN = b"swarmlog/presence/v1\x00"
"""A replica's signed presence in the presence bucket (:mod:`swarmlog.schemas.presence`): never
an event, so never signed under :data:`EVENT_DOMAIN`."""
OPERATOR_ID = "operator"
"""The sender id of the operator, the root of trust."""

CONTROL_TYPES = frozenset(
    {
        "credential_issued",
        "credential_revoked",
        "agent_killed",
        "agent_revived",
        "escalation_resolved",
    }
)
"""Event types only the operator may emit."""

INTERNAL_TYPES = frozenset(
    {
        "task_offered",
        "task_assignment",
        "task_cancelled",
        "workflow_submitted",
        "workflow_planned",
        "workflow_revised",
        "workflow_completed",
        "budget_exceeded",
        "circuit_opened",
        "circuit_half_opened",
        "circuit_closed",
        "deadlock_detected",
        "snapshot_taken",
        "agent_lost",
        "agent_seen",
    }
)
"""Event types reserved for ``internal`` agents: an ``external`` agent (one that faces the outside
world, and so may be talked into anything) may answer its own work, ask and answer questions and
announce itself, but not create or route work, steer workflows or speak for the system."""

ROUTER_ROLE = "router"
"""The built-in role that turns routed offers into assignments: the only role that may assign a
task offered for routing, and one that may fail or escalate work it cannot route."""
CONDUCTOR_ROLE = "conductor"
"""The built-in role that runs workflows: it offers their steps and completes them."""
AUDITOR_ROLE = "auditor"
"""The role of a read-only login: an auditor reads the stream to verify it (``swarmlog audit
verify --as``) and may do nothing else on the broker; its credential allows it no event but its
own registration."""
WATCHDOG_ROLE = "watchdog"
"""The built-in role that escalates stalled and deadlocked work, whoever holds it, and says which
replicas are lost (``agent_lost``) and back (``agent_seen``)."""


@dataclass(frozen=True)
class Identity:
    """An agent (or the operator) and its private signing key."""

    agent_id: str
    signing_key: nacl.signing.SigningKey

    @classmethod
    def from_seed(cls, agent_id: str, seed: bytes) -> Identity:
        return cls(agent_id, nacl.signing.SigningKey(seed))

    @property
    def seed(self) -> bytes:
        """The 32-byte secret seed (for deriving this identity's other keys)."""
        return bytes(self.signing_key)

    @property
    def public_key(self) -> str:
        """The hex public key, which is also the key id."""
        return bytes(self.signing_key.verify_key).hex()

    def sign(self, domain: bytes, body: bytes) -> bytes:
        return bytes(self.signing_key.sign(domain + body).signature)


@dataclass(frozen=True)
class ChainHead:
    """The last event a sender emitted: its sequence number and body hash."""

    seq: int = 0
    hash: str = ""


@dataclass(frozen=True)
class Sealed:
    """A signed event ready to publish, and the sender's chain head after it."""

    envelope: Envelope
    data: bytes
    head: ChainHead

    @property
    def id(self) -> str:
        return self.envelope.id


def event_hash(body: bytes) -> str:
    """The hash that links a sender's events into a chain."""
    return hashlib.sha256(body).hexdigest()


@lru_cache(maxsize=4096)
def _public_key_bytes(public_key: str) -> bytes:
    return bytes.fromhex(public_key)


def verify_signature(public_key: str, domain: bytes, body: bytes, signature: bytes) -> bool:
    """True when ``signature`` is ``public_key``'s signature of ``domain + body``.

    Calls libsodium directly (it releases the GIL), so verification scales across threads.
    """
    try:
        nacl.bindings.crypto_sign_open(signature + domain + body, _public_key_bytes(public_key))
    except (nacl.exceptions.BadSignatureError, ValueError):
        return False
    return True


@lru_cache(maxsize=1024)
def _root_signed(public_key: str, size: int, root: bytes, signature: bytes) -> bool:
    # The events of one batch share its root and signature: checked once, answered from here
    # for the rest. Only the key's, root's and signature's own verdict is kept (every input is
    # in the key), so no event can borrow another's.
    return verify_signature(public_key, BATCH_DOMAIN, batch_message(size, root), signature)


def forget_verified_roots() -> None:
    """Forget the batch roots already checked (a benchmark measures the checks from cold)."""
    _root_signed.cache_clear()


def signed_validly(public_key: str, signed: SignedEvent) -> bool:
    """True when ``signed`` is signed by ``public_key``: its body alone (``EVENT_DOMAIN``) or,
    with a :class:`BatchProof`, the root of the batch its path leads its body to."""
    if signed.proof is None:
        return verify_signature(public_key, EVENT_DOMAIN, signed.body, signed.signature)
    root = root_of(signed.body, signed.proof)
    return root is not None and _root_signed(public_key, signed.proof.size, root, signed.signature)


@dataclass(frozen=True)
class Prepared:
    """An envelope encoded and chained, not yet signed: a run of them is signed together
    (:func:`sign_all`)."""

    envelope: Envelope
    body: bytes
    head: ChainHead

    def sign(self, identity: Identity) -> Sealed:
        signature = identity.sign(EVENT_DOMAIN, self.body)
        return Sealed(self.envelope, signed_data(self.body, signature), self.head)


BATCH_LEAVES = 32
"""The most events a publisher signs with one batch signature. Each event carries its path
(34 bytes a level: five levels here, 170 bytes); signing and checking cost a thirty-second of a
signature an event, so larger batches would save little and add bytes to every event."""
_ROOM = 1024
"""Bytes below the event size limit a body must stay for its proof to fit beside it."""


def sign_all(prepared: Sequence[Prepared], identity: Identity) -> list[Sealed]:
    """Sign a run of prepared events: once per batch of up to :data:`BATCH_LEAVES` (each event
    with its :class:`BatchProof`), and alone where that leaves one event, or its body leaves no
    room for a proof under the size limit."""
    sealed: dict[int, Sealed] = {}
    batchable: list[int] = []
    for i, p in enumerate(prepared):
        if len(p.body) > MAX_EVENT_BYTES - _ROOM:
            sealed[i] = p.sign(identity)
        else:
            batchable.append(i)
    trees = -(-len(batchable) // BATCH_LEAVES)
    for t in range(trees):  # as even as may be: 33 events are batches of 17 and 16, not 32 and 1
        members = batchable[t * len(batchable) // trees : (t + 1) * len(batchable) // trees]
        if len(members) == 1:
            sealed[members[0]] = prepared[members[0]].sign(identity)
            continue
        root, paths = tree([leaf_hash(prepared[i].body) for i in members])
        size = len(members)
        signature = identity.sign(BATCH_DOMAIN, batch_message(size, root))
        for index, (i, path) in enumerate(zip(members, paths, strict=True)):
            p = prepared[i]
            data = signed_data(p.body, signature, BatchProof(index, size, path))
            sealed[i] = Sealed(p.envelope, data, p.head)
    return [sealed[i] for i in range(len(prepared))]


def prepare(
    identity: Identity,
    head: ChainHead,
    payload: Payload,
    *,
    now_ns: int,
    entropy: bytes,
    **fields: Any,
) -> Prepared:
    """Build and chain ``identity``'s next event after ``head``, without signing it.

    The chain links bodies, not signatures, so a run of events can be prepared in order and then
    signed in parallel.
    """
    check_nesting(payload)  # what readers would reject as malformed is never signed
    envelope = Envelope(
        id=new_event_id(now_ns, entropy),
        sender=identity.agent_id,
        signer=identity.public_key,
        sender_seq=head.seq + 1,
        prev_hash=head.hash,
        occurred_at=now_ns,
        payload=payload,
        **fields,
    )
    try:
        body = encode(envelope)
    except OverflowError:  # JSON allows any integer; MessagePack holds 64 bits
        raise SchemaError(
            "a number in the payload is out of range: integers must lie within -2**63 and"
            " 2**64 - 1 (send a larger one as a string)"
        ) from None
    return Prepared(envelope, body, ChainHead(envelope.sender_seq, event_hash(body)))


def seal(
    identity: Identity,
    head: ChainHead,
    payload: Payload,
    *,
    now_ns: int,
    entropy: bytes,
    **fields: Any,
) -> Sealed:
    """Sign ``payload`` as ``identity``'s next event after ``head``.

    ``fields`` are the optional envelope fields (``workflow_id``, ``correlation_id``,
    ``causation_id``, ``recipient``).
    """
    return prepare(identity, head, payload, now_ns=now_ns, entropy=entropy, **fields).sign(identity)


def issue_credential(operator: Identity, credential: Credential) -> CredentialIssued:
    """The operator's signed statement that ``credential`` holds: a ``credential_issued``."""
    if credential.issuer != operator.public_key:
        raise ValueError("the credential's issuer must be the signing operator key")
    body = encode(credential)
    return CredentialIssued(credential=body, signature=operator.sign(CREDENTIAL_DOMAIN, body))
