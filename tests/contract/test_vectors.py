"""The protocol test vectors (tests/vectors/*.json) against swarmlog.

Three things are checked: the committed files are exactly what ``tests/vectors/generate.py``
makes now (so any change to encoding, signing, subjects or verification fails here until the
vectors are regenerated and reviewed); swarmlog's verifier, fold, stream chain, checkpoints,
logins and credentials give every verdict the files state, read from the files themselves (as an
outside implementation would read them); and every quarantine reason has a vector.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec
import pytest

from swarmlog.bus.memory import MemoryLog
from swarmlog.bus.permissions import LOGIN_DOMAIN, login_for
from swarmlog.bus.ports import Append, StoredMessage
from swarmlog.bus.subjects import stream_name
from swarmlog.errors import VerificationError
from swarmlog.projections.fold import fold_checked
from swarmlog.projections.projector import Projector
from swarmlog.projections.state import State
from swarmlog.projections.store import ProjectionStore
from swarmlog.projections.streamchain import (
    CHAIN_DOMAIN,
    CHECKPOINT_DOMAIN,
    Checkpoint,
    StreamChain,
    verify_checkpoint,
)
from swarmlog.projections.verify import REASONS, admit, check, check_credential
from swarmlog.schemas.batches import BATCH_DOMAIN, batch_message, leaf_hash, root_of
from swarmlog.schemas.codec import decode_credential, decode_envelope, decode_signed
from swarmlog.schemas.payloads import PAYLOAD_TYPES, CredentialIssued
from swarmlog.schemas.signing import (
    CREDENTIAL_DOMAIN,
    EVENT_DOMAIN,
    Identity,
    verify_signature,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
REGENERATE = ".venv/bin/python tests/vectors/generate.py"


@cache
def generator() -> ModuleType:
    """tests/vectors/generate.py, imported by path (``generate`` is too common a name)."""
    spec = importlib.util.spec_from_file_location(
        "swarmlog_vector_generator", VECTORS / "generate.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@cache
def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((VECTORS / name).read_text())
    return doc


def vectors(name: str) -> list[dict[str, Any]]:
    doc = load(name)
    assert doc["version"] == 1
    assert doc["about"]
    for vector in doc["vectors"]:
        assert vector["name"], vector
        assert vector["rule"], vector
    result: list[dict[str, Any]] = doc["vectors"]
    return result


def by_name(name: str) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in vectors(name)}


def as_json(struct: msgspec.Struct) -> Any:
    """JSON builtins with every bytes value as lowercase hex (the files' convention)."""
    return generator().as_json(struct)


def message(vector: dict[str, Any], seq: int = 1) -> StoredMessage:
    return StoredMessage(seq, vector["subject"], bytes.fromhex(vector["data"]))


# --- (a) the files are what swarmlog makes now ----------------------------------------------------


def test_the_committed_vectors_are_what_swarmlog_produces_now() -> None:
    gen = generator()
    built = gen.build()
    on_disk = sorted(p.name for p in VECTORS.glob("*.json"))
    assert on_disk == sorted(built), f"vector files on disk {on_disk}, generated {sorted(built)}"
    for name, doc in built.items():
        assert gen.render(doc) == (VECTORS / name).read_text(), (
            f"tests/vectors/{name} is not what swarmlog produces now: the protocol changed"
            " (encoding, signing, subjects, verification or the fold). If the change is"
            f" intended, regenerate the vectors with `{REGENERATE}`, review their diff (other"
            " implementations and docs/protocol.md rely on them) and commit them with it."
        )


def test_every_key_is_the_one_its_seed_gives() -> None:
    count = 0
    for name in generator().FILES:
        for vector in vectors(name):
            for who, key in vector.get("keys", {}).items():
                assert (
                    Identity.from_seed(who, bytes.fromhex(key["seed"])).public_key
                    == (key["public_key"])
                ), (name, vector["name"], who)
                count += 1
    assert count > 0


# --- (b) swarmlog gives every verdict the files state ---------------------------------------------


def test_encoding_has_one_valid_event_per_payload_type() -> None:
    found = vectors("encoding.json")
    assert [v["name"] for v in found] == [f"valid/{t}" for t in PAYLOAD_TYPES]
    for vector in found:
        data = bytes.fromhex(vector["data"])
        checked = check(message(vector), "default")
        assert vector["expected"] == {"verdict": "valid"}
        assert checked.rejection is None, (vector["name"], checked.rejection)
        signed = decode_signed(data)
        assert signed.body.hex() == vector["body"]
        assert signed.signature.hex() == vector["signature"]
        assert verify_signature(
            vector["signer_public_key"], EVENT_DOMAIN, signed.body, signed.signature
        )
        envelope = decode_envelope(signed.body)
        assert envelope.type == vector["name"].removeprefix("valid/")
        assert envelope.sender == vector["sender"]
        assert envelope.signer == vector["signer_public_key"]
        assert as_json(envelope) == vector["envelope"], vector["name"]


def test_stateless_rejections() -> None:
    found = vectors("stateless.json")
    assert [v["name"] for v in found] == [
        "oversized",
        "malformed/non-json-key",
        "malformed/not-msgpack",
        "malformed/truncated",
        "malformed/bad-envelope",
        "malformed/id-time-mismatch",
        "subject_mismatch",
        "bad_signature/bit-flipped-body",
        "bad_signature/bit-flipped-signature",
        "bad_signature/wrong-domain",
    ]
    for vector in found:
        if "data" in vector:
            stored = message(vector)
        else:  # too large to write out: a fill byte and a length
            data = bytes.fromhex(vector["data_fill"]) * vector["data_length"]
            assert len(data) > vector["max_event_bytes"]
            stored = StoredMessage(1, vector["subject"], data)
        expected = vector["expected"]
        assert expected["verdict"] == "quarantined"
        checked = check(stored, "default")
        assert checked.rejection is not None, vector["name"]
        assert checked.rejection.reason == expected["reason"], vector["name"]
        # admit passes the stateless verdict on, whatever the state.
        rejection = admit(State(), checked, "00" * 32)
        assert rejection is not None
        assert rejection.reason == expected["reason"]


def _stored(vector: dict[str, Any]) -> list[StoredMessage]:
    return [
        StoredMessage(m["seq"], m["subject"], bytes.fromhex(m["data"]), m["stored_at"])
        for m in vector["messages"]
    ]


def _verdicts(vector: dict[str, Any], rejected: dict[int, str]) -> list[dict[str, str]]:
    return [
        {"verdict": "quarantined", "reason": rejected[m["seq"]]}
        if m["seq"] in rejected
        else {"verdict": "applied"}
        for m in vector["messages"]
    ]


SEQUENCES = (
    "valid/credential-then-events",
    "unknown_signer",
    "wrong_sender",
    "revoked",
    "expired",
    "not_permitted/type",
    "not_permitted/external-internal-type",
    "not_permitted/not-holder",
    "killed",
    "bad_credential",
    "replayed",
    "chain_fork",
    "duplicate_id",
    "bad_timestamp",
    "chain_gap",
)


def test_sequences_fold_to_their_verdicts_and_chain_breaks() -> None:
    found = vectors("sequences.json")
    assert tuple(v["name"] for v in found) == SEQUENCES
    for vector in found:
        messages = _stored(vector)
        assert [m.seq for m in messages] == list(range(1, len(messages) + 1))
        assert vector["operator_public_key"] == vector["keys"]["operator"]["public_key"]
        state = State()
        checked = [check(m, vector["namespace"]) for m in messages]
        rejected = dict(fold_checked(state, checked, vector["operator_public_key"]))
        assert _verdicts(vector, rejected) == vector["expected"]["verdicts"], vector["name"]
        breaks = [
            {k: row[k] for k in ("seq", "sender", "expected_seq", "got_seq")}
            for _, row in sorted(state.rows["chain_breaks"].items())
        ]
        assert breaks == vector["expected"]["chain_breaks"], vector["name"]
    # The run named after a rule shows it (a quarantine with that reason, or a chain break).
    for vector in found:
        reasons = {v.get("reason") for v in vector["expected"]["verdicts"]}
        rule = vector["name"].split("/")[0]
        if rule == "valid":
            assert reasons == {None}
        elif rule == "chain_gap":
            assert vector["expected"]["chain_breaks"]
        else:
            assert rule in reasons, vector["name"]


@pytest.mark.parametrize("name", ["chain_gap", "not_permitted/type", "duplicate_id"])
async def test_the_projector_folds_a_run_as_the_vector_says(tmp_path: Path, name: str) -> None:
    """The projector (DuckDB) over an in-memory log stamped with each message's stored_at
    agrees with the vector too (a few runs only: a store costs a tenth of a second)."""
    vector = by_name("sequences.json")[name]
    messages = _stored(vector)
    times = iter(m.stored_at for m in messages)
    log = MemoryLog(stream_name(vector["namespace"]), wall_clock=lambda: next(times))
    for m in messages:
        await log.append(Append(m.subject, m.data, msg_id=f"vector-{m.seq}"))
    with ProjectionStore(tmp_path / "p.duckdb") as store:
        projector = Projector(
            log, store, namespace=vector["namespace"], operator_key=vector["operator_public_key"]
        )
        try:
            await projector.run(follow=False)
        finally:
            projector.close()
        rejected = dict(store.rows("SELECT seq, reason FROM quarantine"))
        breaks = [
            {"seq": s, "sender": a, "expected_seq": e, "got_seq": g}
            for s, a, e, g in store.rows(
                "SELECT seq, sender, expected_seq, got_seq FROM chain_breaks ORDER BY seq"
            )
        ]
    assert _verdicts(vector, rejected) == vector["expected"]["verdicts"]
    assert breaks == vector["expected"]["chain_breaks"]


def test_stream_chain_heads_and_gaps() -> None:
    found = by_name("stream_chain.json")
    assert set(found) == {"stream-chain/run", "stream-chain/gap"}
    for vector in found.values():
        assert vector["domain"] == CHAIN_DOMAIN.hex()
        chain = StreamChain()
        assert chain.hexhead == vector["initial_head"]
        for step in vector["messages"]:
            chain.add(step["seq"], bytes.fromhex(step["data"]))
            assert chain.hexhead == step["head"], (vector["name"], step["seq"])
        expected = vector["expected"]
        assert chain.hexhead == expected["head"]
        assert chain.position == expected["position"]
        assert [list(g) for g in chain.gaps] == expected["gaps"]
    assert found["stream-chain/gap"]["expected"]["gaps"]


def test_checkpoints() -> None:
    found = by_name("checkpoint.json")
    assert set(found) == {"checkpoint/valid", "checkpoint/altered", "checkpoint/other-operator"}
    for vector in found.values():
        assert vector["domain"] == CHECKPOINT_DOMAIN.hex()
        checkpoint = msgspec.json.decode(vector["checkpoint"], type=Checkpoint)
        assert checkpoint.body().hex() == vector["signed_bytes"]
        try:
            verify_checkpoint(checkpoint, vector["operator_public_key"])
            got = {"verdict": "valid"}
        except VerificationError as exc:
            got = {"verdict": "invalid", "error": exc.reason}
        assert got == vector["expected"], vector["name"]
    valid = found["checkpoint/valid"]
    checkpoint = msgspec.json.decode(valid["checkpoint"], type=Checkpoint)
    assert checkpoint.head == by_name("stream_chain.json")["stream-chain/run"]["expected"]["head"]
    assert verify_signature(
        valid["operator_public_key"],
        CHECKPOINT_DOMAIN,
        bytes.fromhex(valid["signed_bytes"]),
        bytes.fromhex(checkpoint.signature),
    )


def test_logins() -> None:
    found = by_name("login.json")
    assert set(found) == {"login/agent", "login/operator"}
    for vector in found.values():
        assert vector["login_domain"] == LOGIN_DOMAIN.hex()
        got = login_for(vector["agent_id"], bytes.fromhex(vector["seed"]))
        expected = vector["expected"]
        assert got.seed == expected["nkey_seed"]
        assert got.public_key == expected["nkey_public_key"]
        assert got.inbox_prefix == expected["inbox_prefix"]
        assert got.api_prefix == expected["api_prefix"]
        assert expected["nkey_seed"].startswith("SU")
        assert expected["nkey_public_key"].startswith("U")


def test_credentials() -> None:
    found = by_name("credential.json")
    assert set(found) == {"credential/valid", "credential/bad-signature"}
    for vector in found.values():
        assert vector["domain"] == CREDENTIAL_DOMAIN.hex()
        body = bytes.fromhex(vector["credential"])
        decoded = decode_credential(body)
        assert as_json(decoded) == vector["fields"]
        assert decoded.issuer == vector["operator_public_key"]
        rejection = check_credential(
            CredentialIssued(credential=body, signature=bytes.fromhex(vector["signature"])),
            vector["operator_public_key"],
        )
        got = (
            {"verdict": "valid"}
            if rejection is None
            else {"verdict": "invalid", "reason": rejection.reason}
        )
        assert got == vector["expected"], vector["name"]


# --- (c) every reason has a vector ----------------------------------------------------------------


def test_every_quarantine_reason_has_a_vector() -> None:
    shown = {v["expected"]["reason"] for v in vectors("stateless.json")}
    for vector in vectors("sequences.json"):
        shown |= {v["reason"] for v in vector["expected"]["verdicts"] if "reason" in v}
    assert set(REASONS) - shown == set(), "reasons no vector shows"
    assert shown <= set(REASONS)


def test_batches() -> None:
    found = by_name("batch.json")
    valid = found.pop("batch/valid")
    alpha = valid["keys"]["alpha"]["public_key"]
    root = bytes.fromhex(valid["root"])
    assert bytes.fromhex(valid["signed_message"]) == BATCH_DOMAIN + batch_message(3, root)
    assert verify_signature(
        alpha, BATCH_DOMAIN, batch_message(3, root), bytes.fromhex(valid["signature"])
    )
    for member in valid["messages"]:
        checked = check(message(member), "default")
        assert checked.rejection is None, checked.rejection
        signed = decode_signed(bytes.fromhex(member["data"]))
        assert signed.proof is not None
        assert signed.body.hex() == member["body"]
        assert leaf_hash(signed.body).hex() == member["leaf"]
        assert root_of(signed.body, signed.proof) == root
        # Signed over the root, never over the body alone.
        assert not verify_signature(alpha, EVENT_DOMAIN, signed.body, signed.signature)
    for name, vector in found.items():
        checked = check(message(vector), "default")
        want = vector["expected"]
        if want["verdict"] == "valid":
            assert checked.rejection is None, name
        else:
            assert checked.rejection is not None, name
            assert checked.rejection.reason == want["reason"], name
