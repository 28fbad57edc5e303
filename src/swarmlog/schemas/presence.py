"""Presence (pure): a replica's signed statement that it is alive now, and what it holds.

Liveness and load are not history, so they stay off the log: every replica puts its presence
into the namespace's presence bucket (a KV bucket whose values expire, one key per agent id)
every :data:`PRESENCE_EVERY` seconds, and readers (the router, the watchdog, the views) judge
who is live from it. The log keeps only the changes that matter (``agent_registered``,
``agent_stopped``, ``agent_lost``, ``agent_seen``, ``agent_killed``).

A value is a :class:`Presence` encoded as MessagePack and signed with the agent's own Ed25519
key over :data:`~swarmlog.schemas.signing.PRESENCE_DOMAIN` + body: a presence signature can never
pass for an event signature or the other way round. It names its namespace and agent id, so a
value copied to another key or namespace does not verify. :func:`open_presence` is the one check
every reader applies, against the public key the projection holds for the agent (its
operator-issued, unrevoked credential); a value that fails is ignored, never trusted, with one
of the reasons in :data:`REFUSALS`.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from swarmlog.schemas.signing import PRESENCE_DOMAIN, Identity, verify_signature
from swarmlog.schemas.types import MAX_INT, AgentId, KeyId, Name, Namespace, Role, Timestamp

__all__ = [
    "MAX_AHEAD_NS",
    "MAX_PRESENCE_BYTES",
    "PRESENCE_EVERY",
    "PRESENCE_TTL",
    "REFUSALS",
    "STALE_AFTER",
    "Presence",
    "Refused",
    "SignedPresence",
    "fresh",
    "open_presence",
    "seal_presence",
]

PRESENCE_EVERY = 5.0
"""Seconds between a replica's presence puts (``SWARMLOG_PRESENCE_EVERY``)."""
STALE_AFTER = 15.0
"""Seconds after its last presence at which a replica no longer counts as live
(``SWARMLOG_STALE_AFTER``): three missed puts."""
PRESENCE_TTL = 30.0
"""Seconds a value stays in the bucket after its last put (the bucket's ``max_age``): longer than
:data:`STALE_AFTER`, so the readers' rule decides liveness and the expiry only clears out what
nobody will put again."""
MAX_AHEAD_NS = 5 * 60 * 1_000_000_000
"""How far a presence may be dated ahead of the reader's clock (clock skew between hosts, as
for events)."""
MAX_PRESENCE_BYTES = 131_072
"""Largest value a reader decodes."""

_MAX_TASKS = 1024  # an agent's concurrency is at most 1024

REFUSALS: dict[str, str] = {
    "malformed": "the value is not a well-formed signed presence",
    "wrong_key": "the value names another agent or namespace than the key it is stored under",
    "unknown_agent": "the projection knows no unrevoked credential for the agent",
    "wrong_signer": "the value is signed by a key other than the agent's own",
    "bad_signature": "the signature does not match the value and the agent's key",
    "future": "the value is dated too far ahead of the reader's clock",
    "replayed": "the value is older than one the reader already accepted from the same run",
}
"""Every reason a presence value is ignored."""


class Presence(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What a replica says about itself each beat."""

    namespace: Namespace
    agent_id: AgentId
    role: Role
    signer: KeyId
    """The public key that signs the value: the agent's own."""
    at: Timestamp
    """When it was put, from the replica's clock (ns since the epoch)."""
    seq: Annotated[int, Meta(ge=1, le=MAX_INT)]
    """The replica's count of puts since it started (with ``at``, orders its values)."""
    run: Annotated[str, Meta(pattern=r"^[0-9a-f]{0,32}\Z")] = ""
    """A random id of the replica's process: values of one run are ordered by ``seq``; a run
    that starts anew (a restart, perhaps on a host whose clock is behind) begins again at 1."""
    load: Annotated[int, Meta(ge=0, le=1 << 20)] = 0
    """Tasks in hand."""
    capacity: Annotated[int, Meta(ge=0, le=1 << 20)] = 1
    """Tasks it takes at once (its agent's ``concurrency``)."""
    tasks: Annotated[list[Name], Meta(max_length=_MAX_TASKS)] = msgspec.field(default_factory=list)
    """The ids of the tasks in hand: work a live replica holds is not stalled, however long it
    runs without an event."""
    every: Annotated[float, Meta(ge=0.0, le=3600.0)] = PRESENCE_EVERY
    """Seconds until its next put."""


class SignedPresence(msgspec.Struct, frozen=True, array_like=True):
    """What the bucket holds: the encoded :class:`Presence` and its signature."""

    body: bytes
    signature: Annotated[bytes, Meta(min_length=64, max_length=64)]


class Refused(msgspec.Struct, frozen=True):
    """A value a reader ignored, and why (a key of :data:`REFUSALS`)."""

    reason: str
    detail: str = ""


_encoder = msgspec.msgpack.Encoder()
_signed = msgspec.msgpack.Decoder(SignedPresence)
_body = msgspec.msgpack.Decoder(Presence)


def seal_presence(identity: Identity, presence: Presence) -> bytes:
    """``presence`` signed by ``identity``, as the bucket stores it."""
    if presence.signer != identity.public_key or presence.agent_id != identity.agent_id:
        raise ValueError("a presence is signed by the agent it names, with the key it names")
    body = _encoder.encode(presence)
    return _encoder.encode(SignedPresence(body, identity.sign(PRESENCE_DOMAIN, body)))


def open_presence(
    raw: bytes,
    *,
    key: str,
    namespace: str,
    public_key: str | None,
    now: int,
) -> Presence | Refused:
    """The presence stored as ``raw`` under ``key`` (an agent id) if it is authentic: it
    verifies against ``public_key`` (the agent's key as the projection knows it; ``None``:
    none); else why not.

    Checked in order: well formed; names ``key`` and ``namespace``; the agent has a key;
    signed by it (the value's signer, then the signature); dated no more than
    :data:`MAX_AHEAD_NS` after ``now``. An authentic value says when the agent was last heard
    from; whether that makes it live now is :func:`fresh`'s to say (an old value put again is
    authentic and stale: it never makes anyone live).
    """
    if len(raw) > MAX_PRESENCE_BYTES:
        return Refused("malformed", f"{len(raw)} bytes > {MAX_PRESENCE_BYTES}")
    try:
        signed = _signed.decode(raw)
        presence = _body.decode(signed.body)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        return Refused("malformed", str(exc)[:200])
    if presence.agent_id != key or presence.namespace != namespace:
        where = f"{presence.namespace}/{presence.agent_id}"
        return Refused("wrong_key", f"names {where}, stored under {namespace}/{key}")
    if public_key is None:
        return Refused("unknown_agent", key)
    if presence.signer != public_key:
        return Refused("wrong_signer", f"signed by {presence.signer[:16]}")
    if not verify_signature(public_key, PRESENCE_DOMAIN, signed.body, signed.signature):
        return Refused("bad_signature")
    if presence.at - now > MAX_AHEAD_NS:
        return Refused("future", f"{(presence.at - now) / 1e9:.0f} s ahead")
    return presence


def fresh(presence: Presence, *, now: int, stale_after: float = STALE_AFTER) -> bool:
    """Whether an authentic ``presence`` says its agent is live at ``now``: put no more than
    ``stale_after`` seconds before (a value from the future was refused already)."""
    return now - presence.at <= stale_after * 1e9
