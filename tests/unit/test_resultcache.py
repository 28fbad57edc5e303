"""The result cache's pure check: an entry is served only when it points at a valid signed
result, computed for the same key by a replica of the role the operator vouched for."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
import pytest

from swarmlog.agents.policy.resultcache import (
    CacheEntry,
    Hit,
    Refused,
    cache_key,
    decode_entry,
    fresh,
    verify_entry,
)
from swarmlog.bus.ports import StoredMessage
from swarmlog.bus.subjects import subject_for
from swarmlog.schemas.codec import decode_signed, signed_data
from swarmlog.schemas.credentials import Credential
from swarmlog.schemas.payloads import CredentialIssued, Payload, Result, TaskStarted
from swarmlog.schemas.signing import ChainHead, Identity, issue_credential, seal

NS = "rc"
SEC = 10**9
NOW = 1_700_000_000 * SEC
KEY = cache_key("summarizer", "offline", {"doc": "text"})
OPERATOR = Identity.from_seed("operator", hashlib.sha256(b"operator").digest())
SUMMARIZER = Identity.from_seed("summarizer-1", hashlib.sha256(b"summarizer-1").digest())
WRITER = Identity.from_seed("writer-1", hashlib.sha256(b"writer-1").digest())


def credential(
    who: Identity, role: str, issuer: Identity = OPERATOR, **fields: Any
) -> CredentialIssued:
    cred = Credential(
        agent_id=who.agent_id,
        role=role,
        public_key=who.public_key,
        issuer=issuer.public_key,
        issued_at=1,
        **fields,
    )
    return issue_credential(issuer, cred)


def stored(who: Identity, payload: Payload, *, seq: int = 7, at: int = NOW - SEC) -> StoredMessage:
    sealed = seal(who, ChainHead(), payload, now_ns=at, entropy=b"\x01" * 10)
    return StoredMessage(seq, subject_for(NS, sealed.envelope), sealed.data, at)


def result(key: str | None = KEY, **fields: Any) -> Result:
    return Result(task_id="t1", output={"summary": "honest"}, cache_key=key, **fields)


def verdict(
    message: StoredMessage | None,
    shown: CredentialIssued | None = None,
    *,
    seq: int = 7,
    key: str = KEY,
    role: str = "summarizer",
    now: int = NOW,
) -> Hit | Refused:
    entry = CacheEntry(seq, shown or credential(SUMMARIZER, "summarizer"))
    return verify_entry(
        entry,
        message,
        key=key,
        role=role,
        namespace=NS,
        operator_key=OPERATOR.public_key,
        now=now,
        ttl=60,
    )


def test_an_entry_pointing_at_the_roles_own_signed_result_is_served() -> None:
    assert verdict(stored(SUMMARIZER, result())) == Hit({"summary": "honest"}, 7, "summarizer-1")


def test_entries_round_trip_and_other_forms_are_refused() -> None:
    entry = CacheEntry(7, credential(SUMMARIZER, "summarizer"))
    assert decode_entry(msgspec.json.encode(entry)) == entry
    unsigned = msgspec.json.encode({"output": "planted", "at": NOW, "model": "small"})
    for raw in (b"\x00\xffgarbage", b"{}", unsigned, b'{"seq": 0, "credential": {}}'):
        assert isinstance(decode_entry(raw), Refused), raw


def tampered(message: StoredMessage) -> StoredMessage:
    signed = decode_signed(message.data)
    body = signed.body.replace(b"honest", b"forged")
    data = signed_data(body, signed.signature)
    return StoredMessage(message.seq, message.subject, data, message.stored_at)


@pytest.mark.parametrize(
    ("case", "message", "shown", "why"),
    [
        ("nothing there", None, None, "no event at seq 7"),
        ("another seq", stored(SUMMARIZER, result(), seq=8), None, "no event at seq 7"),
        ("edited body", tampered(stored(SUMMARIZER, result())), None, "not valid"),
        ("not a result", stored(SUMMARIZER, TaskStarted(task_id="t1")), None, "not a result"),
        ("another key", stored(SUMMARIZER, result(cache_key("summarizer", "", 1))), None, "key"),
        ("no key bound", stored(SUMMARIZER, result(None)), None, "not computed for this key"),
        ("a cached copy", stored(SUMMARIZER, result(cached=True)), None, "not computed"),
        (
            "another role's result",
            stored(WRITER, result()),
            credential(WRITER, "writer"),
            "of role writer, not summarizer",
        ),
        (
            "someone else's credential",
            stored(WRITER, result()),
            credential(SUMMARIZER, "summarizer"),
            "not that of writer-1",
        ),
        (
            "a credential it issued itself",
            stored(WRITER, result()),
            credential(WRITER, "summarizer", issuer=WRITER),
            "credential is not valid",
        ),
        (
            "an expired credential",
            stored(SUMMARIZER, result()),
            credential(SUMMARIZER, "summarizer", expires_at=NOW - 2 * SEC),
            "expired",
        ),
        ("too old", stored(SUMMARIZER, result(), at=NOW - 61 * SEC), None, "too old"),
        ("from the future", stored(SUMMARIZER, result(), at=NOW + SEC), None, "future"),
    ],
)
def test_an_entry_that_does_not_check_out_is_refused(
    case: str, message: StoredMessage | None, shown: CredentialIssued | None, why: str
) -> None:
    refused = verdict(message, shown)
    assert isinstance(refused, Refused), case
    assert why in refused.reason, (case, refused.reason)


def test_a_role_does_not_serve_another_roles_entries() -> None:
    # The same honest entry, read by another role (its own key would differ anyway).
    refused = verdict(stored(SUMMARIZER, result()), role="editor")
    assert isinstance(refused, Refused)
    assert "not editor" in refused.reason


def test_freshness_and_keys() -> None:
    assert fresh(1_000, now=1_000 + 59 * SEC, ttl=60)
    assert not fresh(1_000, now=1_000 + 61 * SEC, ttl=60)
    assert not fresh(1_000, now=999, ttl=60)  # from the future: not trusted
    assert cache_key("r", "", {"a": 1, "b": 2}) == cache_key("r", "", {"b": 2, "a": 1})
    assert cache_key("r", "", 1) != cache_key("r", "large", 1)
    assert KEY.startswith("result.summarizer.")  # the role in clear: the broker can scope writes
    assert msgspec.convert({"task_id": "t", "cache_key": KEY}, Result).cache_key == KEY
    with pytest.raises(msgspec.ValidationError, match="cache_key"):
        msgspec.convert({"task_id": "t", "cache_key": "result.x"}, Result)
