"""A clean-room verifier of the swarmlog wire protocol, version 1 (with P-VER-6), written from
``docs/protocol.md`` alone (rule ids in the comments are that page's).

It uses only the standard library, PyNaCl (Ed25519) and the ``msgpack`` package: nothing of
swarmlog. Entry points:

- :func:`verify` / :class:`Verifier`: the verdict of each stored message (P-CHK-0 .. P-CHK-22),
  the chain breaks (P-CHN-5), the stream chain (P-STR-1, P-STR-2) and a report in the shape of
  ``swarmlog audit verify --json`` (P-OUT-1, without ``state_hash``);
- :func:`check_stateless`: P-CHK-1 .. P-CHK-6 for one message;
- :func:`stream_chain`: the stream chain of a list of messages;
- :func:`verify_checkpoint`, :func:`load_checkpoint`, :func:`checkpoint_matches` (P-CKP-*);
- :func:`derive_login` (P-LOG-1 .. P-LOG-5);
- :func:`check_credential` (P-CRD-1 .. P-CRD-3).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import nacl.bindings
import nacl.exceptions

# --------------------------------------------------------------------------------------------
# Constants (P-SIG-1, section 2.6, P-CHK-15)

EVENT_DOMAIN = b"swarmlog/event/v1\x00"
BATCH_DOMAIN = b"swarmlog/event-batch/v1\x00"
CREDENTIAL_DOMAIN = b"swarmlog/credential/v1\x00"
PRESENCE_DOMAIN = b"swarmlog/presence/v1\x00"
CHECKPOINT_DOMAIN = b"swarmlog/checkpoint/v1\x00"
STREAM_CHAIN_DOMAIN = b"swarmlog/stream-chain/v1\x00"
LOGIN_DOMAIN = b"swarmlog/nats-login/v1\x00"

MAX_EVENT_BYTES = 524_288
MAX_BATCH = 4096
MAX_PATH = 12
MAX_NESTING = 64
MAX_CREDENTIAL_BYTES = 8_192
MAX_CHECKPOINT_FILE_BYTES = 16_384
MAX_AHEAD_NS = 300_000_000_000
MAX_BEHIND_NS = 3_600_000_000_000
OPERATOR = "operator"

INT64_MAX = 2**63 - 1
COUNT_MAX = 2**40

REASONS = (
    "oversized",
    "malformed",
    "subject_mismatch",
    "bad_signature",
    "unknown_signer",
    "wrong_sender",
    "revoked",
    "expired",
    "not_permitted",
    "killed",
    "bad_credential",
    "replayed",
    "chain_fork",
    "duplicate_id",
    "bad_timestamp",
)

CONTROL_TYPES = frozenset(
    {"credential_issued", "credential_revoked", "agent_killed", "agent_revived"}
    | {"escalation_resolved"}
)
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
HOLDER_TYPES = frozenset(
    {
        "task_started",
        "task_heartbeat",
        "task_checkpointed",
        "task_completed",
        "task_retry_scheduled",
        "result",
        "error",
        "model_call_requested",
        "model_call_completed",
        "tool_call_requested",
        "tool_call_completed",
    }
)
OVERSEEN_TYPES = frozenset({"task_failed", "task_escalated", "task_cancelled"})
JOURNAL_TYPES = frozenset(
    {"model_call_requested", "model_call_completed", "tool_call_requested", "tool_call_completed"}
)
# P-SUB-1: the types stored under task.<task_id>.<type>
TASK_SUBJECT_TYPES = frozenset(
    {
        "result",
        "error",
        "task_offered",
        "task_claimed",
        "task_started",
        "task_heartbeat",
        "task_checkpointed",
        "task_completed",
        "task_failed",
        "task_retry_scheduled",
        "task_escalated",
        "escalation_resolved",
        "task_cancelled",
    }
    | JOURNAL_TYPES
)
# P-STA-4: the types that make (and maybe change) a task row
TASK_ROW_TYPES = TASK_SUBJECT_TYPES | {"task_assignment"}
WORKFLOW_TYPES = frozenset(
    {"workflow_submitted", "workflow_planned", "workflow_revised", "workflow_completed"}
)
AGENT_SUBJECT_TYPES = frozenset(
    {"agent_registered", "agent_heartbeat", "agent_stopped", "agent_lost", "agent_seen"}
)
CTL_TYPES = frozenset({"credential_issued", "credential_revoked", "agent_killed", "agent_revived"})
SYS_TYPES = frozenset(
    {"budget_exceeded", "circuit_opened", "circuit_closed", "circuit_half_opened"}
    | {"snapshot_taken"}
)


# --------------------------------------------------------------------------------------------
# MessagePack decoding (P-ENC-1 .. P-ENC-10)


class Malformed(Exception):
    """A value that does not decode under the rules of P-ENC-5."""


class MsgMap:
    """A MessagePack map as read: its (key, value) pairs in order, duplicates kept (P-ENC-5.2)."""

    __slots__ = ("pairs",)

    def __init__(self, pairs: list[tuple[Any, Any]]) -> None:
        self.pairs = pairs


def unpack(data: bytes) -> Any:
    """One MessagePack value filling ``data`` exactly (no trailing bytes).

    Strings with invalid UTF-8 decode (surrogate-escaped) so that a skipped value may hold them
    (P-ENC-5.3); a decoded string field checks them (:func:`text`). Maps keep all their pairs,
    whatever their keys, so that duplicates and non-string keys can be judged afterwards.
    """
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            unicode_errors="surrogateescape",
            strict_map_key=False,
            object_pairs_hook=MsgMap,
            use_list=True,
        )
    except Exception as e:  # ExtraData, FormatError, StackError, ValueError (bad timestamp)...
        raise Malformed(f"not MessagePack: {type(e).__name__}: {e}") from None


def valid_utf8(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# A validator turns a decoded MessagePack value into the Python value the verifier uses, or
# raises Malformed. ``level`` is the nesting level the value would be at if it is an array or a
# map (P-ENC-9): 1 for a payload field's own value.
Validator = Callable[[Any, str, int], Any]


def text(max_len: int | None = None, min_len: int = 0, pattern: str | None = None) -> Validator:
    regex = re.compile(pattern) if pattern is not None else None

    def check(v: Any, path: str, level: int) -> str:
        if type(v) is not str:
            raise Malformed(f"{path}: expected a string, got {type(v).__name__}")
        if not valid_utf8(v):
            raise Malformed(f"{path}: invalid UTF-8")
        if len(v) < min_len or (max_len is not None and len(v) > max_len):
            raise Malformed(f"{path}: length {len(v)} outside {min_len}..{max_len}")
        if regex is not None and regex.fullmatch(v) is None:
            raise Malformed(f"{path}: {v[:80]!r} does not match {pattern}")
        return v

    return check


def integer(lo: int, hi: int) -> Validator:
    def check(v: Any, path: str, level: int) -> int:
        if type(v) is not int:
            raise Malformed(f"{path}: expected an integer, got {type(v).__name__}")
        if not lo <= v <= hi:
            raise Malformed(f"{path}: {v} outside {lo}..{hi}")
        return v

    return check


def floating(lo: float, hi: float) -> Validator:
    def check(v: Any, path: str, level: int) -> float:
        if type(v) not in (float, int):
            raise Malformed(f"{path}: expected a float, got {type(v).__name__}")
        f = float(v)
        if not lo <= f <= hi:  # NaN fails too
            raise Malformed(f"{path}: {f} outside {lo}..{hi}")
        return f

    return check


def boolean(v: Any, path: str, level: int) -> bool:
    if type(v) is not bool:
        raise Malformed(f"{path}: expected a boolean, got {type(v).__name__}")
    return v


def choice(*options: str) -> Validator:
    inner = text()

    def check(v: Any, path: str, level: int) -> str:
        s = inner(v, path, level)
        if s not in options:
            raise Malformed(f"{path}: {s[:80]!r} is not one of {options}")
        return s

    return check


def binary(max_len: int | None = None, exact: int | None = None) -> Validator:
    def check(v: Any, path: str, level: int) -> bytes:
        if type(v) is not bytes:
            raise Malformed(f"{path}: expected binary, got {type(v).__name__}")
        if exact is not None and len(v) != exact:
            raise Malformed(f"{path}: {len(v)} bytes, not {exact}")
        if max_len is not None and len(v) > max_len:
            raise Malformed(f"{path}: {len(v)} bytes > {max_len}")
        return v

    return check


def optional(inner: Validator) -> Validator:
    def check(v: Any, path: str, level: int) -> Any:
        return None if v is None else inner(v, path, level)

    return check


def nesting(level: int, path: str) -> None:
    if level > MAX_NESTING:
        raise Malformed(f"{path}: nested deeper than {MAX_NESTING}")


def array(item: Validator, max_items: int | None = None) -> Validator:
    def check(v: Any, path: str, level: int) -> list[Any]:
        if type(v) is not list:
            raise Malformed(f"{path}: expected an array, got {type(v).__name__}")
        nesting(level, path)
        if max_items is not None and len(v) > max_items:
            raise Malformed(f"{path}: {len(v)} items > {max_items}")
        return [item(x, f"{path}[{i}]", level + 1) for i, x in enumerate(v)]

    return check


MIN_TS_SECONDS = -62_135_596_800  # 0001-01-01T00:00:00Z
MAX_TS_MICROS = (253_402_300_799 + 1) * 1_000_000 - 1  # 9999-12-31T23:59:59.999999Z


def timestamp_ok(ts: msgpack.Timestamp) -> bool:
    """P-ENC-5.8: in range after rounding to microseconds (half to even)."""
    q, r = divmod(ts.nanoseconds, 1000)
    if r > 500 or (r == 500 and q % 2 == 1):
        q += 1
    micros = ts.seconds * 1_000_000 + q
    return MIN_TS_SECONDS * 1_000_000 <= micros <= MAX_TS_MICROS


def json_value(v: Any, path: str, level: int) -> Any:
    """P-ENC-10: any MessagePack value but extension types (a well-formed timestamp passes);
    map keys only strings, integers, floats, binaries or timestamps; strings must be UTF-8.
    Returned as read, maps as dicts (the last value of a key counting)."""
    t = type(v)
    if v is None or t in (bool, int, float, bytes):
        return v
    if t is str:
        if not valid_utf8(v):
            raise Malformed(f"{path}: invalid UTF-8")
        return v
    if t is msgpack.Timestamp:
        if not timestamp_ok(v):
            raise Malformed(f"{path}: timestamp out of range")
        return v
    if t is list:
        nesting(level, path)
        return [json_value(x, f"{path}[{i}]", level + 1) for i, x in enumerate(v)]
    if t is MsgMap:
        nesting(level, path)
        out: list[tuple[Any, Any]] = []
        for k, x in v.pairs:
            # Keys: strings, integers, floats, binaries, timestamps. A map, nil, a boolean or an
            # array has no JSON form (P-ENC-10, appendix B item 1); an extension is malformed.
            if k is None or type(k) not in (str, int, float, bytes, msgpack.Timestamp):
                raise Malformed(f"{path}: a map key that is {type(k).__name__}")
            k = json_value(k, f"{path}.<key>", level + 1)
            out.append((k, json_value(x, f"{path}.{k!r}", level + 1)))
        return dict(out)
    raise Malformed(f"{path}: extension type {v!r}")


def msg_map(v: Any, path: str, level: int) -> dict[str, Any]:
    """`Msg`: a map with string keys and JSON values."""
    if type(v) is not MsgMap:
        raise Malformed(f"{path}: expected a map, got {type(v).__name__}")
    nesting(level, path)
    out: dict[str, Any] = {}
    for k, x in v.pairs:
        key = text()(k, f"{path}.<key>", level)
        out[key] = json_value(x, f"{path}.{key}", level + 1)
    return out


@dataclass(frozen=True)
class Field:
    name: str
    check: Validator
    required: bool = True
    default: Any = None


def req(name: str, check: Validator) -> Field:
    return Field(name, check)


def opt(name: str, check: Validator, default: Any = None) -> Field:
    return Field(name, check, required=False, default=default)


def struct_pairs(v: Any, path: str) -> dict[str, Any]:
    """A struct's map (P-ENC-5.2): string keys only, the last value of a key counting."""
    if type(v) is not MsgMap:
        raise Malformed(f"{path}: expected a map, got {type(v).__name__}")
    out: dict[str, Any] = {}
    for k, x in v.pairs:
        if type(k) is not str:
            raise Malformed(f"{path}: a key that is not a string ({type(k).__name__})")
        if not valid_utf8(k):
            raise Malformed(f"{path}: a key with invalid UTF-8")
        out[k] = x
    return out


def decode_struct(
    fields: tuple[Field, ...], v: Any, path: str, skip: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Decode a struct: unknown keys skipped (P-ENC-5.3), missing required ones malformed and
    missing optional ones their default (P-ENC-5.4), present ones checked (P-ENC-5.5)."""
    given = struct_pairs(v, path)
    out: dict[str, Any] = {}
    for f in fields:
        if f.name in given:
            out[f.name] = f.check(given[f.name], f"{path}.{f.name}", 1)
        elif f.required:
            raise Malformed(f"{path}: missing required field {f.name!r}")
        else:
            out[f.name] = f.default() if callable(f.default) else f.default
    return out


def struct(*fields: Field) -> Validator:
    """A nested struct (`Usage`, `ToolPin`): not traversed for nesting (P-ENC-9)."""

    def check(v: Any, path: str, level: int) -> dict[str, Any]:
        return decode_struct(fields, v, path)

    return check


# Section 2.4 types
NAME = text(64, 1, r"[a-z0-9][a-z0-9_-]*")
CAP = text(64, 0, r"[a-z0-9][a-z0-9_.:-]*")
KEY = text(pattern=r"[0-9a-f]{64}")
HASH = text(pattern=r"([0-9a-f]{64})?")
DIGEST = text(pattern=r"[0-9a-f]{64}")
ULID = text(pattern=r"[0-9A-HJKMNP-TV-Z]{26}")
REF = text(128, 0, r"[A-Za-z0-9][A-Za-z0-9_.:-]*")
TARGET = text(64, 0, r"(\*|[a-z0-9][a-z0-9_-]*)")
TOOL_NAME = text(192, 1, r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
SERVER = text(64, 0, r"([a-z0-9][a-z0-9_-]*)?")
CALL_ID = text(80, 0, r"[a-z0-9][a-z0-9_-]*\.[mt][0-9]+")
CACHE_KEY = text(160, 0, r"result\.[a-z0-9][a-z0-9_-]*\.[0-9a-f]{64}")
TS = integer(0, INT64_MAX)
COUNT = integer(0, COUNT_MAX)
ATTEMPT = integer(1, 1000)
REASON = text(4096)
TEXT = text(65536)
PRIORITY = choice("critical", "high", "normal", "low")
JSON = json_value
USAGE = struct(
    opt("model", text(256), ""),
    opt("prompt_tokens", COUNT, 0),
    opt("completion_tokens", COUNT, 0),
)
TOOL_PIN = struct(req("name", TOOL_NAME), req("digest", DIGEST))
CALL_INDEX = integer(1, 10000)


def empty_list() -> list[Any]:
    return []


def empty_map() -> dict[str, Any]:
    return {}


PAYLOADS: dict[str, tuple[Field, ...]] = {
    "task_assignment": (
        req("task_id", NAME),
        req("role", NAME),
        opt("capability", CAP, ""),
        opt("priority", PRIORITY, "normal"),
        opt("input", JSON),
        opt("attempt", ATTEMPT, 1),
        opt("deadline_at", optional(TS)),
        opt("parent_task_id", optional(NAME)),
        opt("expected_output_schema", JSON),
        opt("internal_only", boolean, False),
    ),
    "result": (
        req("task_id", NAME),
        opt("output", JSON),
        opt("cached", boolean, False),
        opt("usage", optional(USAGE)),
        opt("cache_key", optional(CACHE_KEY)),
        opt("attempt", optional(ATTEMPT)),
        opt("started_at", optional(TS)),
    ),
    "error": (
        req("task_id", NAME),
        req("code", text(128)),
        opt("message", REASON, ""),
        opt("retryable", boolean, True),
        opt("dependency", optional(NAME)),
        opt("traceback", REASON, ""),
        opt("permanent", boolean, False),
    ),
    "clarification_request": (
        req("request_id", NAME),
        req("to", NAME),
        req("question", TEXT),
        opt("task_id", optional(NAME)),
    ),
    "clarification_response": (
        req("request_id", NAME),
        req("to", NAME),
        req("answer", TEXT),
        opt("task_id", optional(NAME)),
    ),
    "workflow_submitted": (
        req("pattern", choice("supervisor", "pipeline", "debate", "swarm", "custom")),
        opt("input", JSON),
        opt("budget_tokens", optional(COUNT)),
    ),
    "workflow_planned": (opt("version", integer(1, 1_000_000), 1), opt("plan", JSON)),
    "workflow_revised": (
        req("version", integer(2, 1_000_000)),
        opt("plan", JSON),
        opt("reason", REASON, ""),
    ),
    "workflow_completed": (
        req("status", choice("succeeded", "failed", "cancelled")),
        opt("result", JSON),
    ),
    "task_offered": (
        req("task_id", NAME),
        req("capability", CAP),
        opt("priority", PRIORITY, "normal"),
        opt("input", JSON),
        opt("mode", choice("routed", "swarm"), "routed"),
        opt("deadline_at", optional(TS)),
        opt("parent_task_id", optional(NAME)),
        opt("avoid_roles", array(NAME, 16), empty_list),
        opt("internal_only", boolean, False),
    ),
    "task_claimed": (req("task_id", NAME), req("agent_id", NAME)),
    "task_started": (req("task_id", NAME), opt("attempt", ATTEMPT, 1)),
    "task_heartbeat": (
        req("task_id", NAME),
        opt("progress", optional(floating(0.0, 1.0))),
        opt("note", REASON, ""),
    ),
    "task_checkpointed": (req("task_id", NAME), opt("data", JSON)),
    "task_completed": (req("task_id", NAME),),
    "task_failed": (req("task_id", NAME), opt("reason", REASON, ""), opt("final", boolean, False)),
    "task_retry_scheduled": (
        req("task_id", NAME),
        req("attempt", ATTEMPT),
        opt("delay_ms", COUNT, 0),
    ),
    "task_escalated": (req("task_id", NAME), opt("reason", REASON, "")),
    "escalation_resolved": (
        req("escalation_id", ULID),
        req("task_id", NAME),
        req("action", choice("retry", "reassign", "answer", "cancel")),
        opt("role", optional(NAME)),
        opt("answer", TEXT, ""),
        opt("note", REASON, ""),
    ),
    "task_cancelled": (req("task_id", NAME), opt("reason", REASON, "")),
    "model_call_requested": (
        req("task_id", NAME),
        req("call_index", CALL_INDEX),
        req("call_id", CALL_ID),
        req("model", text(256)),
        req("digest", DIGEST),
        opt("messages", array(msg_map, 1024), empty_list),
        opt("tools", array(TOOL_NAME, 256), empty_list),
        opt("reserved_tokens", integer(0, 2**53), 0),
    ),
    "model_call_completed": (
        req("task_id", NAME),
        req("call_index", CALL_INDEX),
        req("call_id", CALL_ID),
        req("model", text(256)),
        req("status", choice("ok", "error")),
        opt("reply", msg_map, empty_map),
        opt("usage", optional(USAGE)),
        opt("duration_ms", COUNT, 0),
        opt("error", REASON, ""),
    ),
    "tool_call_requested": (
        req("task_id", NAME),
        req("call_index", CALL_INDEX),
        req("call_id", CALL_ID),
        req("tool", TOOL_NAME),
        req("digest", DIGEST),
        opt("server", SERVER, ""),
        opt("arguments", JSON),
        opt("definition", HASH, ""),
    ),
    "tool_call_completed": (
        req("task_id", NAME),
        req("call_index", CALL_INDEX),
        req("call_id", CALL_ID),
        req("tool", TOOL_NAME),
        req("status", choice("ok", "error", "refused")),
        opt("server", SERVER, ""),
        opt("result", JSON),
        opt("error", REASON, ""),
        opt("duration_ms", COUNT, 0),
    ),
    "agent_registered": (
        req("agent_id", NAME),
        req("role", NAME),
        opt("capabilities", array(CAP, 64), empty_list),
        opt("tier", text(64), ""),
        opt("replica", text(64), ""),
        opt("dependencies", array(NAME, 64), empty_list),
        opt("tools", array(TOOL_PIN, 256), empty_list),
        opt("mcp_servers", array(NAME, 64), empty_list),
    ),
    "agent_heartbeat": (req("agent_id", NAME), opt("in_flight", COUNT, 0)),
    "agent_stopped": (req("agent_id", NAME), opt("reason", REASON, "")),
    "agent_lost": (req("agent_id", NAME), opt("last_seen_at", optional(TS))),
    "agent_seen": (req("agent_id", NAME), req("seen_at", TS)),
    "agent_killed": (req("agent_id", TARGET), opt("reason", REASON, "")),
    "agent_revived": (req("agent_id", TARGET),),
    "credential_issued": (
        req("credential", binary(max_len=MAX_CREDENTIAL_BYTES)),
        req("signature", binary(exact=64)),
    ),
    "credential_revoked": (req("public_key", KEY), opt("reason", REASON, "")),
    "budget_exceeded": (
        req("scope", choice("agent", "workflow")),
        req("scope_id", NAME),
        req("limit", choice("soft", "hard")),
        req("used_tokens", COUNT),
        req("budget_tokens", COUNT),
    ),
    "circuit_opened": (req("circuit", text(128)), opt("reason", REASON, "")),
    "circuit_closed": (req("circuit", text(128)), opt("reason", REASON, "")),
    "circuit_half_opened": (req("circuit", text(128)),),
    "deadlock_detected": (
        req("cycle", array(NAME, 10000)),
        opt("victim", optional(NAME)),
        opt("to", optional(NAME)),
        opt("task_id", optional(NAME)),
    ),
    "snapshot_taken": (req("seq", COUNT), req("state_hash", HASH), opt("name", text(256), "")),
}
assert len(PAYLOADS) == 39


def decode_payload(v: Any) -> tuple[str, dict[str, Any]]:
    """P-ENC-6: the tag `type` (anywhere in the map; twice only with the same value), then the
    type's fields (P-ENC-5), then the derived fields (P-ENC-8)."""
    struct_pairs(v, "payload")  # a map with string keys
    tags = [x for k, x in v.pairs if k == "type"]
    if not tags:
        raise Malformed("payload: no 'type'")
    for tag in tags:
        if type(tag) is not str or not valid_utf8(tag):
            raise Malformed("payload.type: not a string")
    if any(tag != tags[0] for tag in tags):
        raise Malformed("payload.type: given twice with different values")
    kind = tags[0]
    if kind not in PAYLOADS:
        raise Malformed(f"payload.type: unknown type {kind[:80]!r}")
    fields = decode_struct(PAYLOADS[kind], v, f"payload<{kind}>")
    if kind in JOURNAL_TYPES:
        letter = "m" if kind.startswith("model_") else "t"
        if fields["call_id"] != f"{fields['task_id']}.{letter}{fields['call_index']}":
            raise Malformed(f"payload.call_id: {fields['call_id']!r} is not derived")
    if kind in ("tool_call_requested", "tool_call_completed"):
        server, tool = fields["server"], fields["tool"]
        if server:
            if not (tool.startswith(server + ".") and len(tool) > len(server) + 1):
                raise Malformed(f"payload.tool: {tool!r} is not under server {server!r}")
        elif "." in tool:
            raise Malformed(f"payload.tool: {tool!r} has a '.' but no server")
    return kind, fields


ENVELOPE = (
    req("id", ULID),
    req("sender", NAME),
    req("signer", KEY),
    req("sender_seq", integer(1, INT64_MAX)),
    req("prev_hash", HASH),
    req("occurred_at", TS),
    req("payload", lambda v, path, level: v),  # decoded by decode_payload
    opt("workflow_id", optional(NAME)),
    opt("correlation_id", optional(REF)),
    opt("causation_id", optional(REF)),
    opt("recipient", optional(NAME)),
    opt("schema_version", integer(1, 1000), 1),  # P-VER-3
)


@dataclass(frozen=True)
class Envelope:
    id: str
    sender: str
    signer: str
    sender_seq: int
    prev_hash: str
    occurred_at: int
    type: str
    payload: dict[str, Any]
    workflow_id: str | None
    correlation_id: str | None
    causation_id: str | None
    recipient: str | None
    schema_version: int


def decode_envelope(body: bytes) -> Envelope:
    """P-ENC-2 .. P-ENC-10: one map filling the body."""
    fields = decode_struct(ENVELOPE, unpack(body), "envelope")
    kind, payload = decode_payload(fields.pop("payload"))
    return Envelope(type=kind, payload=payload, **fields)


@dataclass(frozen=True)
class Proof:
    """P-ENC-1a."""

    index: int
    size: int
    path: list[bytes]


def decode_proof(v: Any) -> Proof | None:
    """P-ENC-1a; nil is no proof."""
    if v is None:
        return None
    if type(v) is not list or len(v) != 3:
        raise Malformed("signed.proof: expected an array of 3 elements")
    index = integer(0, MAX_BATCH - 1)(v[0], "signed.proof.index", 2)
    size = integer(2, MAX_BATCH)(v[1], "signed.proof.size", 2)
    path = array(binary(exact=32), MAX_PATH)(v[2], "signed.proof.path", 2)
    return Proof(index, size, path)


def decode_signed(data: bytes) -> tuple[bytes, bytes, Proof | None]:
    """P-ENC-1: ``[body (bin), signature (bin 64)]``, or a proof (or nil) third; nothing after."""
    v = unpack(data)
    if type(v) is not list:
        raise Malformed(f"signed event: expected an array, got {type(v).__name__}")
    if not 2 <= len(v) <= 3:
        raise Malformed(f"signed event: {len(v)} elements")
    body = binary()(v[0], "signed.body", 1)
    signature = binary(exact=64)(v[1], "signed.signature", 1)
    proof = decode_proof(v[2]) if len(v) > 2 else None
    return body, signature, proof


CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid_millis(ulid: str) -> int:
    """P-ENC-12: the first 10 characters as a big-endian base-32 number."""
    n = 0
    for c in ulid[:10]:
        n = n * 32 + CROCKFORD.index(c)
    return n


def implied_subject(namespace: str, e: Envelope) -> str | None:
    """P-SUB-1; None when the event implies none (P-SUB-2)."""
    p, t = e.payload, e.type
    if t == "task_assignment":
        rest = f"work.{p['role']}.{p['priority']}.{p['task_id']}"
    elif t in TASK_SUBJECT_TYPES:
        rest = f"task.{p['task_id']}.{t}"
    elif t in ("clarification_request", "clarification_response"):
        rest = f"msg.{p['to']}.{t}"
    elif t == "deadlock_detected":
        rest = f"msg.{p['to']}.{t}" if p["to"] is not None else f"sys.{t}"
    elif t in WORKFLOW_TYPES:
        if e.workflow_id is None:
            return None
        rest = f"wf.{e.workflow_id}.{t}"
    elif t in AGENT_SUBJECT_TYPES:
        rest = f"agent.{p['agent_id']}.{t}"
    elif t in CTL_TYPES:
        rest = f"ctl.{t}"
    elif t in SYS_TYPES:
        rest = f"sys.{t}"
    else:  # pragma: no cover - every one of the 39 types is above
        raise AssertionError(t)
    return f"swarmlog.{namespace}.{e.sender}.{rest}"


# --------------------------------------------------------------------------------------------
# Signatures (P-SIG-3)


def signature_valid(public_key: bytes, domain: bytes, message: bytes, signature: bytes) -> bool:
    if len(signature) != 64 or len(public_key) != 32:
        return False
    try:
        nacl.bindings.crypto_sign_open(signature + domain + message, public_key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError):
        return False
    return True


def batch_root(body: bytes, proof: Proof) -> bytes | None:
    """P-SIG-5: the root RFC 9162's inclusion proof computes, or None when it fails."""
    if proof.index >= proof.size:
        return None
    fn, sn = proof.index, proof.size - 1
    r = hashlib.sha256(b"\x00" + body).digest()
    for p in proof.path:
        if sn == 0:
            return None
        if fn % 2 == 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn //= 2
                    sn //= 2
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn //= 2
        sn //= 2
    return r if sn == 0 else None


def event_signature_valid(
    public_key: bytes, body: bytes, signature: bytes, proof: Proof | None
) -> bool:
    """P-SIG-4, or with a proof P-SIG-5 (no cache here: every member is verified)."""
    if proof is None:
        return signature_valid(public_key, EVENT_DOMAIN, body, signature)
    root = batch_root(body, proof)
    if root is None:
        return False
    return signature_valid(
        public_key, BATCH_DOMAIN, proof.size.to_bytes(8, "big") + root, signature
    )


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------
# Credentials (section 4)


@dataclass(frozen=True)
class Credential:
    agent_id: str
    role: str
    public_key: str
    issuer: str
    issued_at: int
    capabilities: tuple[str, ...]
    trust_level: str
    allowed_types: tuple[str, ...]
    expires_at: int | None
    tools: tuple[str, ...]
    mcp_servers: tuple[str, ...]


CREDENTIAL_FIELDS = (
    req("agent_id", NAME),
    req("role", NAME),
    req("public_key", KEY),
    req("issuer", KEY),
    req("issued_at", TS),
    opt("capabilities", array(CAP, 64), empty_list),
    opt("trust_level", choice("internal", "external"), "internal"),
    opt("allowed_types", array(text(), 128), lambda: ["*"]),
    opt("expires_at", optional(TS)),
    opt("tools", array(TOOL_NAME, 256), empty_list),
    opt("mcp_servers", array(NAME, 64), empty_list),
)


def decode_credential(data: bytes) -> Credential:
    """P-CRD-1."""
    f = decode_struct(CREDENTIAL_FIELDS, unpack(data), "credential")
    for name in ("capabilities", "allowed_types", "tools", "mcp_servers"):
        f[name] = tuple(f[name])
    return Credential(**f)


@dataclass(frozen=True)
class CredentialCheck:
    valid: bool
    reason: str | None  # "bad_credential" when not valid
    detail: str
    credential: Credential | None = None


def check_credential(credential: bytes, signature: bytes, operator_key: str) -> CredentialCheck:
    """P-CRD-3, in its order."""
    op = bytes.fromhex(operator_key)
    if not signature_valid(op, CREDENTIAL_DOMAIN, credential, signature):
        return CredentialCheck(False, "bad_credential", "the operator key did not sign it")
    try:
        c = decode_credential(credential)
    except Malformed as e:
        return CredentialCheck(False, "bad_credential", str(e)[:500])
    if c.issuer != operator_key:
        return CredentialCheck(False, "bad_credential", "issuer is not the operator key")
    if c.agent_id == OPERATOR:
        return CredentialCheck(False, "bad_credential", "a credential names the operator")
    return CredentialCheck(True, None, "", c)


# --------------------------------------------------------------------------------------------
# The stream chain (section 6)


@dataclass
class StreamChain:
    head: bytes = bytes(32)
    position: int = 0
    gaps: list[tuple[int, int]] = field(default_factory=list)

    def add(self, seq: int, data: bytes) -> None:
        """P-STR-1, P-STR-2."""
        if seq <= self.position:
            raise ValueError(f"stream sequence {seq} after {self.position}")
        if seq != self.position + 1:
            self.gaps.append((self.position + 1, seq - 1))
        self.head = hashlib.sha256(
            STREAM_CHAIN_DOMAIN + self.head + seq.to_bytes(8, "big") + hashlib.sha256(data).digest()
        ).digest()
        self.position = seq

    def as_json(self) -> dict[str, Any]:
        return {
            "head": self.head.hex(),
            "position": self.position,
            "gaps": [[a, b] for a, b in self.gaps],
        }


def stream_chain(messages: Iterable[tuple[int, bytes]]) -> StreamChain:
    """The chain over ``(seq, data)`` pairs in stream order."""
    chain = StreamChain()
    for seq, data in messages:
        chain.add(seq, data)
    return chain


# --------------------------------------------------------------------------------------------
# The verifier (section 8)


@dataclass(frozen=True)
class StoredMessage:
    """A stored message as P-CHK-0 gives it."""

    seq: int
    subject: str
    data: bytes
    stored_at: int = 0


@dataclass(frozen=True)
class Verdict:
    seq: int
    applied: bool
    reason: str | None = None
    detail: str = ""
    sender: str | None = None
    type: str | None = None

    def as_json(self) -> dict[str, Any]:
        if self.applied:
            return {"verdict": "applied"}
        return {"verdict": "quarantined", "reason": self.reason}


@dataclass(frozen=True)
class ChainBreak:
    seq: int
    sender: str
    expected_seq: int
    got_seq: int

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "sender": self.sender,
            "expected_seq": self.expected_seq,
            "got_seq": self.got_seq,
        }


@dataclass(frozen=True)
class Checked:
    """A message that passed P-CHK-1 .. P-CHK-6."""

    envelope: Envelope
    body: bytes
    body_hash: str


@dataclass(frozen=True)
class Rejection:
    reason: str
    detail: str = ""
    in_chain: bool = False


def check_stateless(data: bytes, subject: str, namespace: str) -> Checked | Rejection:
    """P-CHK-1 .. P-CHK-6."""
    if len(data) > MAX_EVENT_BYTES:
        return Rejection("oversized", f"{len(data)} > {MAX_EVENT_BYTES}")
    try:
        body, signature, proof = decode_signed(data)
        envelope = decode_envelope(body)
    except Malformed as e:
        return Rejection("malformed", str(e)[:500])
    if ulid_millis(envelope.id) != (envelope.occurred_at // 1_000_000) % 2**48:
        return Rejection("malformed", "the id's time is not occurred_at's millisecond")
    implied = implied_subject(namespace, envelope)
    if implied is None:
        return Rejection("malformed", f"a {envelope.type} event without workflow_id")
    if implied != subject:
        return Rejection("subject_mismatch", f"implies {implied}")
    if not event_signature_valid(bytes.fromhex(envelope.signer), body, signature, proof):
        return Rejection("bad_signature")
    return Checked(envelope, body, sha256_hex(body))


@dataclass
class CredentialRow:
    credential: Credential
    revoked: bool = False
    revoked_reason: str | None = None


@dataclass
class KillSwitch:
    active: bool
    reason: str = ""


@dataclass
class Task:
    role: str | None = None
    claimed_by: str | None = None
    mode: str | None = None
    status: str | None = None
    capability: str | None = None


@dataclass
class Clarification:
    asker: str
    asked: str


@dataclass
class Head:
    seq: int = 0
    hash: str = ""


@dataclass
class Verifier:
    """Judges stored messages one after the other (P-CHK-0), keeping the state of 8.1."""

    namespace: str
    operator_key: str
    heads: dict[str, Head] = field(default_factory=dict)
    applied_ids: set[str] = field(default_factory=set)
    credentials: dict[str, CredentialRow] = field(default_factory=dict)
    kill_switches: dict[str, KillSwitch] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)
    clarifications: dict[str, Clarification] = field(default_factory=dict)
    verdicts: list[Verdict] = field(default_factory=list)
    chain_breaks: list[ChainBreak] = field(default_factory=list)
    chain: StreamChain = field(default_factory=StreamChain)

    def judge(self, message: StoredMessage) -> Verdict:
        self.chain.add(message.seq, message.data)
        checked = check_stateless(message.data, message.subject, self.namespace)
        if isinstance(checked, Rejection):
            verdict = Verdict(message.seq, False, checked.reason, checked.detail)
        else:
            verdict = self.judge_checked(message, checked)
        self.verdicts.append(verdict)
        return verdict

    def judge_checked(self, message: StoredMessage, checked: Checked) -> Verdict:
        e = checked.envelope
        head = self.heads.get(e.sender, Head())
        outcome = self.admit(message, e, head)
        if outcome is None or outcome.in_chain:
            if e.sender_seq > head.seq + 1:  # P-CHN-5
                self.chain_breaks.append(
                    ChainBreak(message.seq, e.sender, head.seq + 1, e.sender_seq)
                )
            self.heads[e.sender] = Head(e.sender_seq, checked.body_hash)  # P-CHN-6
        if outcome is not None:
            return Verdict(message.seq, False, outcome.reason, outcome.detail, e.sender, e.type)
        self.apply(e)
        return Verdict(message.seq, True, None, "", e.sender, e.type)

    def admit(self, message: StoredMessage, e: Envelope, head: Head) -> Rejection | None:
        """P-CHK-7 .. P-CHK-22: None when the event is applied."""
        op = self.operator_key
        c: Credential | None = None
        # Identity (not in chain)
        if e.signer == op:  # P-CHK-7
            if e.sender != OPERATOR:
                return Rejection("wrong_sender", "the operator key signs only as 'operator'")
            if e.type == "credential_issued":
                check = check_credential(
                    e.payload["credential"], e.payload["signature"], self.operator_key
                )
                if not check.valid:
                    return Rejection("bad_credential", check.detail)
        else:
            if e.sender == OPERATOR:  # P-CHK-8
                return Rejection("unknown_signer", "not the trusted operator key")
            row = self.credentials.get(e.signer)
            if row is None:  # P-CHK-9
                return Rejection("unknown_signer", e.signer[:16])
            if row.revoked:  # P-CHK-10
                return Rejection("revoked", row.revoked_reason or "")
            c = row.credential
            if c.agent_id != e.sender:
                return Rejection("wrong_sender", f"the key is {c.agent_id}'s")
            expires_at = c.expires_at  # P-CHK-11
            if expires_at is not None and max(e.occurred_at, message.stored_at) > expires_at:
                return Rejection("expired", f"expired at {expires_at}")
        # Chain (not in chain)
        if e.sender_seq <= head.seq:  # P-CHK-12
            return Rejection("replayed", f"sender_seq {e.sender_seq} <= head {head.seq}")
        if e.id in self.applied_ids:  # P-CHK-13
            return Rejection("duplicate_id", e.id)
        if e.sender_seq == head.seq + 1 and e.prev_hash != head.hash:  # P-CHK-14
            return Rejection("chain_fork", f"prev_hash does not match sender_seq {head.seq}")
        # Time (in chain)
        stored_at = message.stored_at
        if stored_at > 0 and (  # P-CHK-15
            e.occurred_at > stored_at + MAX_AHEAD_NS or e.occurred_at < stored_at - MAX_BEHIND_NS
        ):
            span = (e.occurred_at - stored_at) / 1e9
            return Rejection("bad_timestamp", f"occurred_at is {span:+.3f}s off", in_chain=True)
        # Authority (in chain)
        if c is None:  # the operator: P-CHK-16
            if e.type == "credential_revoked" and e.payload["public_key"] not in self.credentials:
                return Rejection(
                    "unknown_signer",
                    f"revokes {e.payload['public_key'][:16]}..., never issued",
                    in_chain=True,
                )
            return None
        refusal = self.authority(e, c)
        if refusal is not None:
            return Rejection("not_permitted", refusal, in_chain=True)
        for target in (e.sender, "*"):  # P-CHK-22
            switch = self.kill_switches.get(target)
            if switch is not None and switch.active:
                return Rejection("killed", switch.reason, in_chain=True)
        return None

    def authority(self, e: Envelope, c: Credential) -> str | None:
        """P-CHK-17 .. P-CHK-21 for a sender other than the operator: why not, or None."""
        t, p = e.type, e.payload
        if t in CONTROL_TYPES:  # P-CHK-17
            return f"{t} is the operator's"
        if "*" not in c.allowed_types and t not in c.allowed_types:
            return f"{t} is not in allowed_types"
        if c.trust_level == "external" and t in INTERNAL_TYPES:  # P-CHK-18
            return f"{t} is for internal agents"
        # P-CHK-19: speaking for another
        if t == "agent_registered":
            if p["agent_id"] != e.sender:
                return f"registers {p['agent_id']}"
            if p["role"] != c.role:
                return f"registers as role {p['role']}, credential says {c.role}"
            missing = [x for x in p["capabilities"] if x not in c.capabilities]
            if missing:
                return f"capabilities {missing} not in the credential"
        elif t in ("agent_heartbeat", "agent_stopped", "task_claimed"):
            if p["agent_id"] != e.sender:
                return f"{t} for {p['agent_id']}"
        elif t in ("agent_lost", "agent_seen"):
            if c.role != "watchdog":
                return f"{t} from role {c.role}"
        elif t == "clarification_request":
            if p["request_id"] in self.clarifications:
                return f"clarification {p['request_id']} exists"
        elif t == "clarification_response":
            asked = self.clarifications.get(p["request_id"])
            if asked is None or asked.asked != e.sender:
                return f"clarification {p['request_id']} was not asked of {e.sender}"
        # P-CHK-20: whose task it is
        task = self.tasks.get(p["task_id"]) if "task_id" in p else None
        if t == "task_offered":
            if task is not None:
                return f"task {p['task_id']} exists"
        elif t == "task_assignment":
            if task is not None:
                if task.role is not None:
                    if task.role != c.role:
                        return f"task {p['task_id']} is role {task.role}'s"
                elif task.claimed_by is not None:
                    return f"task {p['task_id']} is claimed by {task.claimed_by}"
                elif task.mode == "swarm":
                    return f"task {p['task_id']} is a swarm offer"
                elif c.role != "router":
                    return f"task {p['task_id']} is the router's to route"
        elif t == "task_claimed":
            if not (
                task is not None
                and task.mode == "swarm"
                and task.claimed_by is None
                and task.role is None
                and task.status == "offered"
                and task.capability in c.capabilities
            ):
                return f"task {p['task_id']} is not open to {e.sender}'s claim"
        elif t in HOLDER_TYPES or (t in OVERSEEN_TYPES and c.role not in ("router", "watchdog")):
            holds = task is not None and (
                task.claimed_by == e.sender or (task.role is not None and task.role == c.role)
            )
            if not holds:
                return f"{e.sender} does not hold task {p['task_id']}"
        # P-CHK-21: tools (P-CRD-12)
        if t in ("tool_call_requested", "tool_call_completed"):
            tool, server = p["tool"], p["server"]
            granted = tool in c.tools or (
                server != "" and tool.startswith(server + ".") and server in c.mcp_servers
            )
            if not granted:
                return f"tool {tool} is not granted by {e.sender}'s credential"
        return None

    def apply(self, e: Envelope) -> None:
        """P-STA-1 .. P-STA-5 (the head is moved by the caller)."""
        self.applied_ids.add(e.id)
        t, p = e.type, e.payload
        if t == "credential_issued":
            c = decode_credential(p["credential"])
            old = self.credentials.get(c.public_key)
            self.credentials[c.public_key] = CredentialRow(
                c,
                revoked=old.revoked if old else False,
                revoked_reason=old.revoked_reason if old else None,
            )
        elif t == "credential_revoked":
            row = self.credentials.get(p["public_key"])
            if row is not None:
                row.revoked = True
                row.revoked_reason = p["reason"]
        elif t == "agent_killed":
            self.kill_switches[p["agent_id"]] = KillSwitch(True, p["reason"])
        elif t == "agent_revived":
            switch = self.kill_switches.setdefault(p["agent_id"], KillSwitch(False))
            switch.active = False
        elif t == "clarification_request":
            self.clarifications[p["request_id"]] = Clarification(e.sender, p["to"])
        if t in TASK_ROW_TYPES:
            task = self.tasks.setdefault(p["task_id"], Task())
            if t == "task_assignment":
                task.role, task.capability, task.status = p["role"], p["capability"], "assigned"
            elif t == "task_offered":
                task.capability, task.mode, task.status = p["capability"], p["mode"], "offered"
            elif t == "task_claimed":
                task.claimed_by, task.status = p["agent_id"], "claimed"
            elif t == "task_started":
                task.status = "running"
            elif t in ("result", "task_completed"):
                task.status = "succeeded"
            elif t == "error":
                task.status = "errored"
            elif t == "task_failed":
                task.status = "failed" if p["final"] else "errored"
            elif t == "task_retry_scheduled":
                task.status = "retry_scheduled"
            elif t == "task_escalated":
                task.status = "escalated"
            elif t == "task_cancelled":
                task.status = "cancelled"

    def report(self) -> dict[str, Any]:
        """The report of ``audit verify --json`` (P-OUT-1), without ``state_hash``."""
        rejected = [
            {"seq": v.seq, "reason": v.reason, "detail": v.detail}
            for v in self.verdicts
            if not v.applied
        ]
        return {
            "events_checked": len(self.verdicts),
            "valid": sum(v.applied for v in self.verdicts),
            "rejected": rejected,
            "chain_breaks": [b.as_json() for b in self.chain_breaks],
            "position": self.verdicts[-1].seq if self.verdicts else 0,
            "stream_chain": self.chain.as_json(),
        }


def verify(messages: Iterable[StoredMessage], namespace: str, operator_key: str) -> Verifier:
    """Judge ``messages`` (in stream order) from an empty state; the verifier holds the
    verdicts, the chain breaks, the stream chain and :meth:`Verifier.report`."""
    verifier = Verifier(namespace, operator_key)
    for m in messages:
        verifier.judge(m)
    return verifier


# --------------------------------------------------------------------------------------------
# Checkpoints (section 7)


class CheckpointFileError(Exception):
    """A file a reader refuses (P-CKP-1): not regular, too large, not a checkpoint."""


@dataclass(frozen=True)
class Checkpoint:
    namespace: str
    seq: int
    head: str
    created_at: str
    operator_key: str
    signature: str = ""


CHECKPOINT_TYPES: dict[str, type] = {
    "namespace": str,
    "seq": int,
    "head": str,
    "created_at": str,
    "operator_key": str,
    "signature": str,
}


def parse_checkpoint(text_: str | bytes) -> Checkpoint:
    """P-CKP-1: a JSON object with these fields of exactly these types, unknown keys ignored."""
    try:
        doc = json.loads(text_)
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointFileError(f"not JSON: {e}") from None
    if type(doc) is not dict:
        raise CheckpointFileError("not a JSON object")
    values: dict[str, Any] = {}
    for name, kind in CHECKPOINT_TYPES.items():
        if name not in doc:
            if name == "signature":
                continue
            raise CheckpointFileError(f"no {name}")
        if type(doc[name]) is not kind:
            raise CheckpointFileError(f"{name} is not a {kind.__name__}")
        values[name] = doc[name]
    return Checkpoint(**values)


def load_checkpoint(path: Path) -> Checkpoint:
    """P-CKP-1: the reader's refusals of the file itself."""
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointFileError(f"{path} is not a regular file")
    if st.st_size > MAX_CHECKPOINT_FILE_BYTES:
        raise CheckpointFileError(f"{path} is larger than {MAX_CHECKPOINT_FILE_BYTES} bytes")
    return parse_checkpoint(path.read_bytes())


SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n"}
SHORT_ESCAPES |= {"\r": "\\r", "\t": "\\t"}


def json_string(s: str) -> str:
    """P-CKP-2's string escaping."""
    out = []
    for ch in s:
        if ch in SHORT_ESCAPES:
            out.append(SHORT_ESCAPES[ch])
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def checkpoint_signed_bytes(c: Checkpoint) -> bytes:
    """P-CKP-2: compact JSON, keys sorted, signature empty."""
    return (
        "{"
        f'"created_at":{json_string(c.created_at)},'
        f'"head":{json_string(c.head)},'
        f'"namespace":{json_string(c.namespace)},'
        f'"operator_key":{json_string(c.operator_key)},'
        f'"seq":{c.seq},'
        '"signature":""'
        "}"
    ).encode("utf-8", "surrogatepass")


def read_hex(s: str) -> bytes:
    """P-CKP-3.2: pairs of hex digits, either case, whitespace between pairs; else no bytes."""
    try:
        return bytes.fromhex(s)
    except ValueError:
        return b""


@dataclass(frozen=True)
class CheckpointVerdict:
    valid: bool
    error: str | None  # "checkpoint_operator" | "checkpoint_signature"
    checkpoint: Checkpoint


def verify_checkpoint(checkpoint: Checkpoint | str | bytes, operator_key: str) -> CheckpointVerdict:
    """P-CKP-3, in its order; a file's text is parsed first (P-CKP-1, CheckpointFileError)."""
    c = checkpoint if isinstance(checkpoint, Checkpoint) else parse_checkpoint(checkpoint)
    if c.operator_key != operator_key:
        return CheckpointVerdict(False, "checkpoint_operator", c)
    signed = checkpoint_signed_bytes(c)
    if not signature_valid(
        bytes.fromhex(operator_key), CHECKPOINT_DOMAIN, signed, read_hex(c.signature)
    ):
        return CheckpointVerdict(False, "checkpoint_signature", c)
    return CheckpointVerdict(True, None, c)


def checkpoint_matches(c: Checkpoint, messages: Iterable[tuple[int, bytes]]) -> bool:
    """P-CKP-4: the chain over the messages with seq <= c.seq ends at c.seq with c.head."""
    chain = stream_chain((s, d) for s, d in messages if s <= c.seq)
    return chain.position == c.seq and chain.head.hex() == c.head


# --------------------------------------------------------------------------------------------
# Logins (section 10)


def crc16_xmodem(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def nkey_encode(raw: bytes) -> str:
    """P-LOG-2: base32 (upper case, no padding) of raw || CRC-16/XMODEM little-endian."""
    full = raw + crc16_xmodem(raw).to_bytes(2, "little")
    return base64.b32encode(full).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class Login:
    nkey_seed: str
    nkey_public_key: str
    inbox_prefix: str
    api_prefix: str | None


def derive_login(agent_id: str, seed: bytes) -> Login:
    """P-LOG-1 .. P-LOG-3 and P-LOG-5 for the 32-byte event seed of ``agent_id``."""
    if len(seed) != 32:
        raise ValueError("an Ed25519 seed is 32 bytes")
    login_seed = hashlib.sha256(LOGIN_DOMAIN + seed).digest()
    public, _secret = nacl.bindings.crypto_sign_seed_keypair(login_seed)
    return Login(
        nkey_seed=nkey_encode(b"\x95\x00" + login_seed),
        nkey_public_key=nkey_encode(b"\xa0" + public),
        inbox_prefix=f"_INBOX_{agent_id}",
        api_prefix=None if agent_id == OPERATOR else "$JS.EXT.API",
    )


# --------------------------------------------------------------------------------------------
# JSON views, for comparing with the vectors


def to_json(v: Any) -> Any:
    """A decoded value as the vectors write it: binaries as hex."""
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, list | tuple):
        return [to_json(x) for x in v]
    if isinstance(v, dict):
        return {k: to_json(x) for k, x in v.items()}
    if isinstance(v, float) and math.isnan(v):
        return None
    return v
