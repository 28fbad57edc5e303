"""The clean-room verifier (``verifier.py``, written from docs/protocol.md alone) against every
vector of every file in tests/vectors/."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import nacl.bindings
import pytest
from verifier import (
    BATCH_DOMAIN,
    CHECKPOINT_DOMAIN,
    CREDENTIAL_DOMAIN,
    EVENT_DOMAIN,
    LOGIN_DOMAIN,
    MAX_EVENT_BYTES,
    REASONS,
    STREAM_CHAIN_DOMAIN,
    Checked,
    MsgMap,
    Rejection,
    StoredMessage,
    batch_root,
    check_credential,
    check_stateless,
    checkpoint_signed_bytes,
    decode_credential,
    decode_signed,
    derive_login,
    parse_checkpoint,
    signature_valid,
    stream_chain,
    to_json,
    unpack,
    verify,
    verify_checkpoint,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
FILES = sorted(p.name for p in VECTORS.glob("*.json"))


def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((VECTORS / name).read_text())
    return doc


def cases() -> list[Any]:
    return [
        pytest.param(name, v, id=f"{name}:{v['name']}")
        for name in FILES
        for v in load(name)["vectors"]
    ]


def raw_json(v: Any) -> Any:
    """A decoded MessagePack value as JSON, as the vectors write it (binaries as hex)."""
    if isinstance(v, MsgMap):
        return {k: raw_json(x) for k, x in v.pairs}
    if isinstance(v, list):
        return [raw_json(x) for x in v]
    return to_json(v)


def check_encoding(v: dict[str, Any]) -> None:
    data = bytes.fromhex(v["data"])
    body, signature, proof = decode_signed(data)
    assert proof is None
    assert body.hex() == v["body"]
    assert signature.hex() == v["signature"]
    assert raw_json(unpack(body)) == v["envelope"]
    checked = check_stateless(data, v["subject"], "default")
    assert isinstance(checked, Checked), checked
    assert v["expected"] == {"verdict": "valid"}
    e = checked.envelope
    assert e.signer == v["signer_public_key"]
    assert e.sender == v["sender"]
    assert e.type == v["envelope"]["payload"]["type"]
    # What was written decodes to itself; what was omitted took its default.
    for key, value in v["envelope"].items():
        if key != "payload":
            assert to_json(getattr(e, key)) == value, key
    for key, value in v["envelope"]["payload"].items():
        if key != "type":
            assert to_json(e.payload[key]) == value, key
    assert signature_valid(bytes.fromhex(e.signer), EVENT_DOMAIN, body, signature)


def check_stateless_vector(v: dict[str, Any]) -> None:
    if "data_fill" in v:
        assert v["max_event_bytes"] == MAX_EVENT_BYTES
        data = bytes.fromhex(v["data_fill"]) * v["data_length"]
    else:
        data = bytes.fromhex(v["data"])
    out = check_stateless(data, v["subject"], "default")
    expected = v["expected"]
    assert expected["verdict"] == "quarantined"
    assert isinstance(out, Rejection), out
    assert out.reason == expected["reason"], out.detail
    if "data_fill" in v:  # exactly the limit passes the size check (then is not MessagePack)
        at_limit = check_stateless(data[:MAX_EVENT_BYTES], v["subject"], "default")
        assert isinstance(at_limit, Rejection)
        assert at_limit.reason == "malformed"


def check_sequence(v: dict[str, Any]) -> None:
    messages = [
        StoredMessage(m["seq"], m["subject"], bytes.fromhex(m["data"]), m["stored_at"])
        for m in v["messages"]
    ]
    verifier = verify(messages, v["namespace"], v["operator_public_key"])
    got = [verdict.as_json() for verdict in verifier.verdicts]
    assert got == v["expected"]["verdicts"], [
        (m.seq, d.reason, d.detail) for m, d in zip(messages, verifier.verdicts, strict=True)
    ]
    assert [b.as_json() for b in verifier.chain_breaks] == v["expected"]["chain_breaks"]
    report = verifier.report()
    assert report["events_checked"] == len(messages)
    assert report["valid"] == sum(x["verdict"] == "applied" for x in v["expected"]["verdicts"])
    assert report["events_checked"] == report["valid"] + len(report["rejected"])
    assert report["chain_breaks"] == v["expected"]["chain_breaks"]
    assert report["stream_chain"]["position"] == messages[-1].seq
    assert report["stream_chain"]["gaps"] == []


def check_stream_chain(v: dict[str, Any]) -> None:
    assert bytes.fromhex(v["domain"]) == STREAM_CHAIN_DOMAIN
    pairs: list[tuple[int, bytes]] = []
    chain = stream_chain([])
    assert chain.head.hex() == v["initial_head"]
    for m in v["messages"]:
        pairs.append((m["seq"], bytes.fromhex(m["data"])))
        assert stream_chain(pairs).head.hex() == m["head"], m["seq"]
    assert stream_chain(pairs).as_json() == v["expected"]


def check_checkpoint(v: dict[str, Any]) -> None:
    assert bytes.fromhex(v["domain"]) == CHECKPOINT_DOMAIN
    checkpoint = parse_checkpoint(v["checkpoint"])
    assert checkpoint_signed_bytes(checkpoint).hex() == v["signed_bytes"]
    verdict = verify_checkpoint(v["checkpoint"], v["operator_public_key"])
    expected = v["expected"]
    if expected["verdict"] == "valid":
        assert verdict.valid, verdict
        assert verdict.error is None
    else:
        assert expected["verdict"] == "invalid"
        assert not verdict.valid
        assert verdict.error == expected["error"]


def check_login(v: dict[str, Any]) -> None:
    assert bytes.fromhex(v["login_domain"]) == LOGIN_DOMAIN
    seed = bytes.fromhex(v["seed"])
    public, _ = nacl.bindings.crypto_sign_seed_keypair(seed)
    assert public.hex() == v["public_key"]
    login = derive_login(v["agent_id"], seed)
    assert {
        "nkey_seed": login.nkey_seed,
        "nkey_public_key": login.nkey_public_key,
        "inbox_prefix": login.inbox_prefix,
        "api_prefix": login.api_prefix,
    } == v["expected"]
    assert len(login.nkey_seed) == 58
    assert login.nkey_seed.startswith("SU")
    assert len(login.nkey_public_key) == 56
    assert login.nkey_public_key.startswith("U")


CREDENTIAL_DEFAULTS: dict[str, Any] = {
    "capabilities": [],
    "trust_level": "internal",
    "allowed_types": ["*"],
    "expires_at": None,
    "tools": [],
    "mcp_servers": [],
}


def check_credential_vector(v: dict[str, Any]) -> None:
    assert bytes.fromhex(v["domain"]) == CREDENTIAL_DOMAIN
    credential = bytes.fromhex(v["credential"])
    decoded = decode_credential(credential)
    for name, default in CREDENTIAL_DEFAULTS.items():
        assert to_json(getattr(decoded, name)) == v["fields"].get(name, default), name
    for name, value in v["fields"].items():
        assert to_json(getattr(decoded, name)) == value, name
    out = check_credential(credential, bytes.fromhex(v["signature"]), v["operator_public_key"])
    expected = v["expected"]
    if expected["verdict"] == "valid":
        assert out.valid, out.detail
        assert out.credential == decoded
    else:
        assert expected == {"verdict": "invalid", "reason": "bad_credential"}
        assert not out.valid
        assert out.reason == "bad_credential"


def check_batch(v: dict[str, Any]) -> None:
    expected = v["expected"]
    if v["name"] != "batch/valid":
        out = check_stateless(bytes.fromhex(v["data"]), v["subject"], "default")
        if expected == {"verdict": "valid"}:
            assert isinstance(out, Checked), out
        else:
            assert isinstance(out, Rejection), out
            assert out.reason == expected["reason"], out.detail
        return
    assert expected == {"verdict": "valid"}
    alpha = bytes.fromhex(v["keys"]["alpha"]["public_key"])
    root = bytes.fromhex(v["root"])
    signed = BATCH_DOMAIN + v["size"].to_bytes(8, "big") + root
    assert signed.hex() == v["signed_message"]
    assert signature_valid(alpha, b"", signed, bytes.fromhex(v["signature"]))
    for m in v["messages"]:
        data = bytes.fromhex(m["data"])
        checked = check_stateless(data, m["subject"], "default")
        assert isinstance(checked, Checked), checked
        body, signature, proof = decode_signed(data)
        assert proof is not None
        assert (body.hex(), proof.index, [p.hex() for p in proof.path]) == (
            m["body"],
            m["index"],
            m["path"],
        )
        assert hashlib.sha256(b"\x00" + body).hexdigest() == m["leaf"]
        assert batch_root(body, proof) == root
        assert signature.hex() == v["signature"]


CHECKS = {
    "encoding.json": check_encoding,
    "stateless.json": check_stateless_vector,
    "sequences.json": check_sequence,
    "stream_chain.json": check_stream_chain,
    "checkpoint.json": check_checkpoint,
    "login.json": check_login,
    "credential.json": check_credential_vector,
    "batch.json": check_batch,
}


def test_every_vector_file_is_checked() -> None:
    assert set(FILES) == set(CHECKS)
    for name in FILES:
        doc = load(name)
        assert doc["version"] == 1
        names = [v["name"] for v in doc["vectors"]]
        assert len(names) == len(set(names)), name


@pytest.mark.parametrize(("file", "vector"), cases())
def test_vector(file: str, vector: dict[str, Any]) -> None:
    # P-SIG-2: every identity's seed gives its public key.
    for who, key in vector.get("keys", {}).items():
        public, _ = nacl.bindings.crypto_sign_seed_keypair(bytes.fromhex(key["seed"]))
        assert public.hex() == key["public_key"], who
    CHECKS[file](vector)


def test_every_reason_has_a_vector() -> None:
    names = {
        v["name"].split("/")[0]
        for f in ("stateless.json", "sequences.json")
        for v in load(f)["vectors"]
    }
    assert set(REASONS) <= names, set(REASONS) - names


def test_all_39_payload_types_have_a_valid_vector() -> None:
    from verifier import PAYLOADS

    kinds = {v["name"].removeprefix("valid/") for v in load("encoding.json")["vectors"]}
    assert kinds == set(PAYLOADS)
