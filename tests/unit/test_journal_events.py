"""Unit tests of the call journal's events: their schema (round trips, derived call ids, tool
names and servers, additions that leave older events' bytes alone), the tool grant of a
credential, what the verifier lets through, and their fold into ``model_calls`` and
``tool_calls``."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from test_authority import (
    ECHO_1,
    ECHO_2,
    OPERATOR,
    ROUTER,
    WRITER,
    not_permitted,
    routed_to_echo,
    task,
)
from test_verify import Projection

from swarmlog.errors import SchemaError
from swarmlog.projections.verify import check, touches
from swarmlog.schemas.codec import decode_credential, encode, payload_from_json, signed_data
from swarmlog.schemas.credentials import tool_permitted
from swarmlog.schemas.payloads import (
    AgentRegistered,
    ModelCallCompleted,
    ModelCallRequested,
    Payload,
    TaskAssignment,
    TokenUsage,
    ToolCallCompleted,
    ToolCallRequested,
    ToolPin,
    model_call_id,
    tool_call_id,
)
from swarmlog.schemas.signing import EVENT_DOMAIN, ChainHead, Identity, prepare

D1, D2, D3 = "a1" * 32, "b2" * 32, "c3" * 32
_msgpack = msgspec.msgpack.Decoder(Payload)
_json = msgspec.json.Decoder(Payload)


def model_requested(index: int = 1, digest: str = D1, task_id: str = "t1") -> ModelCallRequested:
    return ModelCallRequested(
        task_id=task_id,
        call_index=index,
        call_id=model_call_id(task_id, index),
        model="offline",
        digest=digest,
        messages=[{"role": "user", "content": "count the words"}],
        tools=["word_count", "time.get_current_time"],
    )


def model_completed(index: int = 1, status: str = "ok", **changes: Any) -> ModelCallCompleted:
    fields: dict[str, Any] = {
        "task_id": "t1",
        "call_index": index,
        "call_id": model_call_id("t1", index),
        "model": "offline",
        "status": status,
        "reply": {"role": "assistant", "content": "3 words"} if status == "ok" else {},
        "usage": TokenUsage(model="offline", prompt_tokens=12, completion_tokens=3),
        "duration_ms": 40,
    }
    return ModelCallCompleted(**(fields | changes))


def tool_requested(
    tool: str = "word_count", server: str = "", index: int = 1, digest: str = D2
) -> ToolCallRequested:
    return ToolCallRequested(
        task_id="t1",
        call_index=index,
        call_id=tool_call_id("t1", index),
        tool=tool,
        server=server,
        arguments={"text": "one two three"},
        digest=digest,
        definition=D3,
    )


def tool_completed(
    tool: str = "word_count", server: str = "", index: int = 1, status: str = "ok"
) -> ToolCallCompleted:
    return ToolCallCompleted(
        task_id="t1",
        call_index=index,
        call_id=tool_call_id("t1", index),
        tool=tool,
        server=server,
        status=status,
        result={"words": 3} if status == "ok" else None,
        error="" if status == "ok" else "it broke",
        duration_ms=5,
    )


# --- the schema ----------------------------------------------------------------------------------

JOURNAL = [
    model_requested(),
    model_completed(),
    model_completed(2, "error", error="429 rate limited", usage=None),
    tool_requested(),
    tool_requested("time.get_current_time", "time", 2),
    tool_completed(),
    tool_completed("time.get_current_time", "time", 2, "refused"),
]


@pytest.mark.parametrize("payload", JOURNAL, ids=lambda p: f"{p.call_id}-{type(p).__name__}")
def test_journal_payloads_round_trip_in_both_encodings(payload: Payload) -> None:
    assert _msgpack.decode(encode(payload)) == payload
    assert _json.decode(msgspec.json.encode(payload)) == payload


def test_call_ids_are_derived_from_the_task_and_the_index() -> None:
    assert model_call_id("t1", 3) == "t1.m3"
    assert tool_call_id("wf-a-s1", 12) == "wf-a-s1.t12"
    with pytest.raises(ValueError, match=r"must be 't1\.m2'"):
        ModelCallRequested(task_id="t1", call_index=2, call_id="t1.m1", model="m", digest=D1)
    # A JSON payload from a user is held to the same rule, with the field path.
    text = '{"task_id": "t1", "call_index": 1, "call_id": "t2.t1", "tool": "x", "status": "ok"}'
    with pytest.raises(SchemaError, match=r"must be 't1\.t1'"):
        payload_from_json("tool_call_completed", text)


@pytest.mark.parametrize(
    ("tool", "server", "problem"),
    [
        ("get_current_time", "time", "must be named time.TOOL"),
        ("clock.now", "time", "must be named time.TOOL"),
        ("time.", "time", "must be named time.TOOL"),
        ("time.now", "", "set server"),
    ],
)
def test_a_tool_is_named_after_its_server(tool: str, server: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        tool_requested(tool, server)
    assert tool_requested("time.now", "time").server == "time"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("call_index", 0),
        ("call_index", 10_001),
        ("digest", ""),
        ("digest", "A1" * 32),
        ("tool", "has space"),
        ("tool", ""),
        ("server", "Time"),
        ("duration_ms", -1),
        ("status", "maybe"),
    ],
)
def test_journal_fields_are_bounded(field: str, value: Any) -> None:
    completed = field in ("status", "duration_ms")
    good = msgspec.to_builtins(tool_completed() if completed else tool_requested())
    with pytest.raises(msgspec.ValidationError, match=field):
        _json.decode(msgspec.json.encode(good | {field: value}))


def test_registration_and_credential_additions_keep_older_bytes() -> None:
    """The new fields default to empty and are left out when empty: an event or credential
    written before them decodes to the same value and encodes to the same bytes."""
    old_registration = msgspec.msgpack.encode(
        {"type": "agent_registered", "agent_id": "a1", "role": "r", "capabilities": ["x"]}
    )
    registered = _msgpack.decode(old_registration)
    assert isinstance(registered, AgentRegistered)
    assert (registered.tools, registered.mcp_servers) == ([], [])
    assert encode(registered) == old_registration

    old_credential = msgspec.msgpack.encode(
        {
            "agent_id": "a1",
            "role": "r",
            "public_key": "0" * 64,
            "issuer": "1" * 64,
            "issued_at": 7,
            "capabilities": ["x"],
            "allowed_types": ["result"],
        }
    )
    credential = decode_credential(old_credential)
    assert (credential.tools, credential.mcp_servers) == ([], [])
    assert encode(credential) == old_credential

    pinned = AgentRegistered(
        agent_id="a1",
        role="r",
        tools=[ToolPin(name="word_count", digest=D1), ToolPin(name="time.now", digest=D2)],
        mcp_servers=["time"],
    )
    assert _msgpack.decode(encode(pinned)) == pinned
    granting = msgspec.structs.replace(credential, tools=["word_count"], mcp_servers=["time"])
    assert decode_credential(encode(granting)) == granting


# --- the grant ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "server", "granted"),
    [
        ("word_count", "", True),  # by name
        ("time.get_current_time", "time", True),  # through its server
        ("git.log", "git", True),  # by its qualified name
        ("shell", "", False),
        ("git.diff", "git", False),  # another tool of a server only partly granted
        ("fs.read", "fs", False),
        ("time.now", "", False),  # no server: the server grant does not apply
        ("now", "time", False),  # not the server's name: naming the server carries nothing in
        ("timex.now", "time", False),
    ],
)
def test_tool_permitted(tool: str, server: str, granted: bool) -> None:
    assert tool_permitted(["word_count", "git.log"], ["time"], tool, server) is granted
    assert not tool_permitted([], [], tool, server)  # the default grants nothing


# --- the verifier --------------------------------------------------------------------------------


def granted_swarm(**grants: Any) -> Projection:
    """echo-1 and echo-2 (role echo, granted ``grants``) and writer-1; task t1 routed to echo."""
    p = Projection()
    for agent, role in ((ECHO_1, "echo"), (ECHO_2, "echo"), (WRITER, "writer")):
        p.issue(agent, role=role, capabilities=["text"], **grants)
    p.issue(ROUTER, role="router", capabilities=["text"])
    routed_to_echo(p)
    return p


@pytest.mark.parametrize(
    "payload", [tool_requested("shell"), tool_completed("shell", status="refused")]
)
def test_a_tool_call_the_credential_does_not_grant_is_quarantined(payload: Payload) -> None:
    p = granted_swarm(tools=["word_count"])
    not_permitted(p.emit(ECHO_1, payload), "tool shell", "not granted", "echo-1")
    assert p.state.rows["tool_calls"] == {}


def test_a_tool_call_is_granted_by_name_or_through_its_server() -> None:
    p = granted_swarm(tools=["word_count"], mcp_servers=["time"])
    assert p.emit(ECHO_1, tool_requested()) is None
    assert p.emit(ECHO_1, tool_requested("time.get_current_time", "time", 2)) is None
    not_permitted(p.emit(ECHO_1, tool_requested("git.log", "git", 3)), "tool git.log")
    assert sorted(p.state.rows["tool_calls"]) == [("t1", 1), ("t1", 2)]


def test_only_the_holder_journals_a_tasks_calls() -> None:
    p = granted_swarm(tools=["word_count"])
    # writer-1 is granted the tool too: the task, not the tool, is what it lacks.
    for payload in (model_requested(), tool_requested()):
        not_permitted(p.emit(WRITER, payload), "task t1", "role echo", "writer-1")
    assert p.emit(ECHO_2, model_requested()) is None  # any replica of the role
    assert p.emit(OPERATOR, tool_requested("anything")) is None  # the operator may say anything


def test_an_event_with_a_call_id_of_its_own_choosing_is_malformed() -> None:
    p = granted_swarm(tools=["word_count"])
    for changes in ({"call_id": "t1.t9"}, {"call_id": "t2.t1"}, {"tool": "other.x"}):
        head = p.heads.get("echo-1", ChainHead())
        message = p.message(forged(ECHO_1, tool_requested(), head, changes))
        rejection = p.feed(message)
        assert rejection is not None
        assert rejection.reason == "malformed", rejection
        assert next(iter(changes.values())) in rejection.detail
    assert p.state.rows["tool_calls"] == {}


def forged(who: Identity, payload: Payload, head: ChainHead, changes: dict[str, Any]) -> bytes:
    """``who``'s next event with ``payload`` changed past what its constructor allows, signed."""
    prepared = prepare(who, head, payload, now_ns=50_000, entropy=bytes(10))
    body = msgspec.msgpack.decode(prepared.body)
    body["payload"] |= changes
    raw = msgspec.msgpack.encode(body)
    return signed_data(raw, who.sign(EVENT_DOMAIN, raw))


def test_a_journal_event_touches_its_call_and_its_task() -> None:
    p = Projection()
    sealed = p.seal(ECHO_1, tool_requested(index=4))
    assert ("tool_calls", ("t1", 4)) in touches(sealed.envelope)
    assert ("tasks", ("t1",)) in touches(sealed.envelope)
    sealed = p.seal(ECHO_1, model_completed(2))
    assert ("model_calls", ("t1", 2)) in touches(sealed.envelope)
    assert check(p.message(sealed), "t").rejection is None


# --- the fold ------------------------------------------------------------------------------------


def calls(p: Projection, table: str) -> dict[tuple[str, int], dict[str, Any]]:
    return {key: dict(row) for key, row in p.state.rows[table].items()}


def test_a_model_call_is_requested_then_completed() -> None:
    p = granted_swarm()
    assert p.emit(ECHO_1, model_requested(), workflow_id="wf1") is None
    row = calls(p, "model_calls")[("t1", 1)]
    assert row["status"] == "requested"
    assert (row["workflow_id"], row["agent_id"], row["call_id"], row["model"]) == (
        "wf1",
        "echo-1",
        "t1.m1",
        "offline",
    )
    requested_seq = p.seq
    assert (row["digest"], row["requested_seq"], row["completed_seq"]) == (D1, requested_seq, None)
    assert p.emit(ECHO_1, model_completed()) is None
    row = calls(p, "model_calls")[("t1", 1)]
    assert (row["status"], row["prompt_tokens"], row["completion_tokens"]) == ("ok", 12, 3)
    assert (row["duration_ms"], row["requested_seq"], row["completed_seq"]) == (
        40,
        requested_seq,
        p.seq,
    )
    assert row["completed_at"] > row["requested_at"]
    assert row["workflow_id"] == "wf1"  # kept, though the answer names no workflow
    assert task(p)["updated_seq"] == p.seq  # a call is a sign of the task's life


def test_a_second_request_at_an_index_starts_the_call_over() -> None:
    p = granted_swarm(tools=["word_count"])
    assert p.emit(ECHO_1, model_requested(digest=D1)) is None
    assert p.emit(ECHO_1, model_completed(status="error", error="500", usage=None)) is None
    # The retry asks again (here something else): the row is the call as it stands now.
    assert p.emit(ECHO_2, model_requested(digest=D2)) is None
    row = calls(p, "model_calls")[("t1", 1)]
    assert (row["status"], row["digest"], row["agent_id"], row["requested_seq"]) == (
        "requested",
        D2,
        "echo-2",
        p.seq,
    )
    assert (row["completed_seq"], row["error"], row["prompt_tokens"]) == (None, None, None)
    # Every request and answer stays in the audit trail.
    types = [e["type"] for e in p.state.rows["events"].values()]
    assert types.count("model_call_requested") == 2
    assert types.count("model_call_completed") == 1


def test_tool_calls_fold_with_their_server_and_definition() -> None:
    p = granted_swarm(tools=["word_count"], mcp_servers=["time"])
    p.emit(OPERATOR, TaskAssignment(task_id="t1", role="echo"), workflow_id="wf7")
    assert p.emit(ECHO_1, tool_requested("time.now", "time", 1)) is None
    assert p.emit(ECHO_1, tool_completed("time.now", "time", 1, "error")) is None
    # An answer with no request journaled is recorded all the same.
    assert p.emit(ECHO_1, tool_completed(index=2, status="refused")) is None
    rows = calls(p, "tool_calls")
    first, second = rows[("t1", 1)], rows[("t1", 2)]
    assert (first["tool"], first["server"], first["status"], first["error"]) == (
        "time.now",
        "time",
        "error",
        "it broke",
    )
    assert (first["definition"], first["digest"], first["duration_ms"]) == (D3, D2, 5)
    assert first["workflow_id"] == "wf7"  # from the task, as the event names none
    assert (second["status"], second["requested_seq"], second["digest"]) == ("refused", None, None)
    assert (second["agent_id"], second["call_id"], second["completed_seq"]) == (
        "echo-1",
        "t1.t2",
        p.seq,
    )


def test_registration_and_credential_rows_carry_the_tools() -> None:
    p = Projection()
    p.issue(ECHO_1, role="echo", tools=["word_count"], mcp_servers=["time"])
    credential = p.state.get("credentials", ECHO_1.public_key)
    assert credential is not None
    assert (credential["tools"], credential["mcp_servers"]) == ('["word_count"]', '["time"]')
    pins = [ToolPin(name="word_count", digest=D1), ToolPin(name="time.now", digest=D2)]
    registered = AgentRegistered(agent_id="echo-1", role="echo", tools=pins, mcp_servers=["time"])
    assert p.emit(ECHO_1, registered) is None
    agent = p.state.get("agents", "echo-1")
    assert agent is not None
    assert msgspec.json.decode(agent["tools"]) == [
        {"name": "word_count", "digest": D1},
        {"name": "time.now", "digest": D2},
    ]
    assert agent["mcp_servers"] == '["time"]'
