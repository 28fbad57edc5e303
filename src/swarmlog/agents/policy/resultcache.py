"""The result cache (pure part): keys, entries, and the check an entry must pass to be served.

Identical work, the same role and model tier on the same input, can be answered from the
namespace's cache bucket instead of running (and paying for) the handler again. The answer is a
normal ``result`` event with ``cached`` set, so the log says which answers were not computed.
An agent opts in with ``cache_ttl`` (seconds an answer stays good).

Keys are computable by anyone with the code, and the bucket is writable by every internal
agent, so an entry holds no answer of its own: it *points* at the signed ``result`` event on the
log that computed the answer (its stream sequence), with the operator-signed credential of that
event's signer. A replica serves an entry only when :func:`verify_entry` holds: the event is a
valid signed ``result`` (the readers' :func:`~swarmlog.projections.verify.check`), signed by a
key the operator issued to a replica of the replica's own role, computed for this very cache key
(the key is part of the signed result), and fresh. Anything else is ignored: the task is run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from swarmlog.bus.ports import StoredMessage
from swarmlog.bus.subjects import cache_keys
from swarmlog.errors import SchemaError
from swarmlog.projections.verify import check, check_credential
from swarmlog.schemas.codec import decode_credential
from swarmlog.schemas.payloads import CredentialIssued, Result

__all__ = ["CacheEntry", "Hit", "Refused", "cache_key", "decode_entry", "fresh", "verify_entry"]


class CacheEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What the cache holds for one key: where the answer is on the log, and who vouches for
    the key that signed it. No output: an entry never carries content of its own."""

    seq: Annotated[int, Meta(ge=1)]
    """The stream sequence of the ``result`` event that computed the answer."""
    credential: CredentialIssued
    """The operator-signed credential of that event's signer (as in its ``.cred`` file), so a
    reader can check the signer's role without the key store or a scan of the log."""


@dataclass(frozen=True, slots=True)
class Hit:
    """An entry that checks out: the answer, and where it came from."""

    output: Any
    seq: int
    sender: str
    """The replica that computed it (the caller still checks it is not killed)."""


@dataclass(frozen=True, slots=True)
class Refused:
    """An entry that must not be served, and why (for the agent's log)."""

    reason: str


def cache_key(role: str, model: str, task_input: Any) -> str:
    """The cache key of a task: ``result.<role>.<digest>``, the digest of role, model and the
    canonical JSON of its input (the role in clear, so the broker can limit who writes it)."""
    canonical = msgspec.json.encode(task_input, order="sorted")
    digest = hashlib.sha256(f"{role}\x00{model}\x00".encode() + canonical).hexdigest()
    return f"{cache_keys(role)}.{digest}"


def fresh(at: int, *, now: int, ttl: float) -> bool:
    """Whether an answer computed at ``at`` (ns) may still answer at ``now`` (an answer from
    the future is not trusted)."""
    return 0 <= now - at <= ttl * 1e9


def decode_entry(raw: bytes) -> CacheEntry | Refused:
    """The entry stored as ``raw`` (JSON), or why it is not one (garbage, the old form that
    carried its output unsigned, ...)."""
    try:
        return msgspec.json.decode(raw, type=CacheEntry)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return Refused(f"not a pointer to a signed result: {str(exc)[:200]}")


def verify_entry(
    entry: CacheEntry,
    message: StoredMessage | None,
    *,
    key: str,
    role: str,
    namespace: str,
    operator_key: str,
    now: int,
    ttl: float,
) -> Hit | Refused:
    """Whether ``entry`` (found under ``key``) may answer a task of ``role``; ``message`` is
    what the log holds at ``entry.seq`` (``None``: nothing)."""
    if message is None or message.seq != entry.seq:
        return Refused(f"no event at seq {entry.seq}")
    checked = check(message, namespace)
    envelope = checked.envelope
    if checked.rejection is not None or envelope is None:
        reason = checked.rejection.reason if checked.rejection else "malformed"
        return Refused(f"the event at seq {entry.seq} is not valid: {reason}")
    result = envelope.payload
    if not isinstance(result, Result):
        return Refused(f"the event at seq {entry.seq} is a {envelope.type}, not a result")
    if result.cached or result.cache_key != key:
        return Refused(f"the result at seq {entry.seq} was not computed for this key")
    rejection = check_credential(entry.credential, operator_key)
    if rejection is not None:
        return Refused(f"the signer's credential is not valid: {rejection.detail}")
    try:
        credential = decode_credential(entry.credential.credential)
    except SchemaError:  # checked just above; kept for a precise type
        return Refused("the signer's credential is not valid")
    if credential.public_key != envelope.signer or credential.agent_id != envelope.sender:
        return Refused(f"the credential shown is not that of {envelope.sender}, who signed it")
    if credential.role != role:
        return Refused(f"signed by {envelope.sender} of role {credential.role}, not {role}")
    computed = max(envelope.occurred_at, message.stored_at)
    if credential.expires_at is not None and computed > credential.expires_at:
        return Refused(f"{envelope.sender}'s credential had expired when it signed")
    if not fresh(envelope.occurred_at, now=now, ttl=ttl):
        return Refused(f"the result at seq {entry.seq} is too old (or from the future)")
    return Hit(result.output, entry.seq, envelope.sender)
