"""Broker permissions (pure): what a login may publish and subscribe to, checked with NATS wildcard
matching over generated agents, roles and namespaces."""

from __future__ import annotations

import nacl.signing
import nkeys
from hypothesis import given
from hypothesis import strategies as st

from swarmlog.bus.permissions import (
    ACCOUNT,
    SYSTEM_ROLES,
    _imported,
    account_of,
    accounts_in,
    agent_permissions,
    authorization_config,
    covers,
    login_for,
    users_for,
    valid_login_key,
)
from swarmlog.bus.queues import agent_queues, queue_names, router_queue
from swarmlog.bus.subjects import subject_matches
from swarmlog.schemas.signing import AUDITOR_ROLE

ids = st.from_regex(r"[a-z][a-z0-9_-]{0,11}", fullmatch=True)
roles = st.one_of(ids, st.sampled_from(sorted(SYSTEM_ROLES | {AUDITOR_ROLE})))
trust = st.sampled_from(["internal", "external"])

MANAGEMENT = [
    "$JS.API.STREAM.CREATE.{s}",
    "$JS.API.STREAM.UPDATE.{s}",
    "$JS.API.STREAM.DELETE.{s}",
    "$JS.API.STREAM.PURGE.{s}",
    "$JS.API.STREAM.MSG.DELETE.{s}",
    "$JS.API.STREAM.SNAPSHOT.{s}",
    "$JS.API.STREAM.RESTORE.{s}",
    "$JS.API.STREAM.NAMES",
    "$JS.API.STREAM.LIST",
    "$JS.API.CONSUMER.CREATE.{s}",
    "$JS.API.CONSUMER.CREATE.{s}.spy.swarmlog.x.>",
    "$JS.API.CONSUMER.DURABLE.CREATE.{s}.spy",
    "$JS.API.CONSUMER.DELETE.{s}.x-router",
    "$JS.API.CONSUMER.LIST.{s}",
    "$JS.API.ACCOUNT.PURGE",
    "$JS.API.STREAM.PURGE.KV_{s}_FLAGS",
    "$JS.API.STREAM.DELETE.KV_{s}_CACHE",
]


def _allowed(patterns: tuple[str, ...] | None, subject: str) -> bool:
    return patterns is None or any(subject_matches(p, subject) for p in patterns)


@given(ns=ids, agent=ids, other=ids, role=roles, other_role=ids, level=trust)
def test_an_agent_speaks_only_under_its_own_prefix_and_manages_nothing(
    ns: str, agent: str, other: str, role: str, other_role: str, level: str
) -> None:
    perms = agent_permissions([ns], agent, role, level)
    stream = "SWARMLOG_" + ns.upper()
    # Its own prefix, but for an auditor, which publishes nothing at all.
    own = _allowed(perms.publish, f"swarmlog.{ns}.{agent}.task.t1.result")
    assert own == (role != AUDITOR_ROLE)
    if other != agent:
        assert not _allowed(perms.publish, f"swarmlog.{ns}.{other}.task.t1.result")
        assert not _allowed(perms.subscribe, f"_INBOX_{other}.abc")
        assert not _allowed(perms.publish, f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{ns}-inbox-{other}")
    assert not _allowed(perms.publish, f"swarmlog.{ns}.operator.ctl.agent_killed")
    assert not _allowed(perms.publish, f"$KV.{stream}_FLAGS.all")  # kill switches: operator's
    assert not _allowed(perms.subscribe, "_INBOX.abc")
    for template in MANAGEMENT:
        assert not _allowed(perms.publish, template.format(s=stream)), template
    if other_role != role:
        theirs = f"{ns}-{other_role}-normal"
        assert not _allowed(perms.publish, f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{theirs}")
        assert not _allowed(perms.publish, f"$JS.ACK.{stream}.{theirs}.1.1.1.1.1")
    if role == AUDITOR_ROLE:  # reads the stream, no queue, no query: see the test below
        assert not _allowed(perms.publish, f"_swarmlog.{ns}.rpc.query")
        return
    # Its own queues, as the runtime opens them, are readable and acknowledgeable.
    for spec in agent_queues(ns, role, agent, swarm=True, max_attempts=3, ack_wait=1.0):
        assert _allowed(perms.publish, f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{spec.name}")
        assert _allowed(perms.publish, f"$JS.ACK.{stream}.{spec.name}.1.2.3.4.5")
    external = level == "external"
    assert _allowed(perms.publish, f"_swarmlog.{ns}.rpc.query") is not external
    # Doorbells hear the stream's republish (bell subjects), never the events' own subjects.
    assert _allowed(perms.subscribe, f"_swarmlog.{ns}.bell.x.task.t1.result") is not external
    system = role in SYSTEM_ROLES and not external
    assert _allowed(perms.subscribe, f"_swarmlog.{ns}.bell.x.wf.w1.workflow_submitted") is system
    assert _allowed(perms.subscribe, f"_swarmlog.{ns}.bell.x.work.{role}.normal.t1")
    assert _allowed(perms.subscribe, f"_swarmlog.{ns}.bell.x.msg.{agent}.clarification_request")
    assert not _allowed(perms.subscribe, f"swarmlog.{ns}.x.task.t1.result")
    # Only the stream rings: no agent may publish a bell.
    assert not _allowed(perms.publish, f"_swarmlog.{ns}.bell.{agent}.work.{role}.critical.t1")


@given(ns=st.lists(ids, min_size=2, max_size=3, unique=True), agent=ids, role=ids)
def test_permissions_in_one_namespace_give_nothing_in_another(
    ns: list[str], agent: str, role: str
) -> None:
    perms = agent_permissions(ns[:1], agent, role)
    assert not _allowed(perms.publish, f"swarmlog.{ns[1]}.{agent}.task.t1.result")
    both = agent_permissions(ns, agent, role)
    assert all(_allowed(both.publish, f"swarmlog.{n}.{agent}.task.t1.result") for n in ns)


def test_queue_names_cover_every_queue_the_runtime_and_router_open() -> None:
    names = queue_names("ns", "router", "router-1")
    assert router_queue("ns", give_up_after=60).name in names
    specs = agent_queues("ns", "w", "w-1", swarm=True, max_attempts=2, ack_wait=5.0)
    assert {s.name for s in specs} <= set(queue_names("ns", "w", "w-1"))


@given(seed=st.binary(min_size=32, max_size=32), agent=ids)
def test_a_login_key_is_not_the_event_key(seed: bytes, agent: str) -> None:
    login = login_for(agent, seed)
    assert login == login_for(agent, seed)  # derived, so nothing more to store
    event_key = bytes(nacl.signing.SigningKey(seed).verify_key)
    raw_login = nkeys.from_seed(bytearray(login.seed.encode()))
    assert login.public_key.startswith("U")
    assert bytes(raw_login.public_key) != nkeys_public(event_key)
    # A login nonce signed with the login key is no event signature, and the other way round.
    nonce = b"server-nonce"
    signature = raw_login.sign(nonce)
    try:
        nacl.signing.VerifyKey(event_key).verify(nonce, signature)
        verified = True
    except Exception:
        verified = False
    assert not verified
    assert login.seed not in repr(login)


def nkeys_public(raw: bytes) -> bytes:
    import base64
    import binascii

    prefixed = bytes([nkeys.PREFIX_BYTE_USER]) + raw
    crc = binascii.crc_hqx(prefixed, 0).to_bytes(2, "little")
    return base64.b32encode(prefixed + crc).rstrip(b"=")


def test_the_config_lists_every_user_once_with_its_permissions() -> None:
    operator = login_for("operator", bytes(32))
    a, b = login_for("a-1", b"\x01" * 32), login_for("b-1", b"\x02" * 32)
    agents = [
        ("a-1", "worker", "internal", a.public_key, True),
        ("b-1", "worker", "internal", b.public_key, False),  # killed
    ]
    text = authorization_config(users_for(["default"], operator, agents))
    assert text.count('"nkey"') == 2
    assert operator.public_key in text
    assert a.public_key in text
    assert b.public_key not in text  # not admitted: no login...
    assert accounts_in(text) == {"AGENT_a-1", "AGENT_b-1"}  # ...but its account stays
    assert "swarmlog.default.a-1.>" in text
    assert operator.seed not in text
    assert a.seed not in text


tokens = st.sampled_from(["a", "b", "c", "*", ">"])
concrete = st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=4).map(".".join)


def _subject(parts: list[str]) -> str:
    # A '>' may only end a subject.
    cut = parts.index(">") + 1 if ">" in parts else len(parts)
    return ".".join(parts[:cut])


patterns = st.lists(tokens, min_size=1, max_size=4).map(_subject)


@given(wide=patterns, narrow=patterns, samples=st.lists(concrete, max_size=30))
def test_covers_agrees_with_matching(wide: str, narrow: str, samples: list[str]) -> None:
    """If ``wide`` covers ``narrow``, every subject ``narrow`` matches, ``wide`` matches too."""
    if covers(wide, narrow):
        for subject in samples:
            if subject_matches(narrow, subject):
                assert subject_matches(wide, subject), (wide, narrow, subject)
    if narrow == wide:
        assert covers(wide, narrow)


@given(
    agents=st.lists(st.tuples(ids, roles, trust), min_size=1, max_size=4, unique_by=lambda a: a[0])
)
def test_no_agent_shares_the_streams_account_or_imports_what_it_may_not_publish(
    agents: list[tuple[str, str, str]],
) -> None:
    """The operator is the streams' account's only login; each agent's account imports exactly
    the services its login may publish to (so no reply can lead anywhere else), no two of them
    overlapping (a message would cross twice), each exported to the accounts importing it."""
    operator = login_for("operator", bytes(32))
    logins = [
        (a, r, t, login_for(a, bytes([i + 1]) * 32).public_key, True)
        for i, (a, r, t) in enumerate(agents)
    ]
    users = users_for(["ns"], operator, logins)
    assert [u.name for u in users if u.account == ACCOUNT] == ["operator"]
    assert accounts_in(authorization_config(users)) == {account_of(a) for a, _, _ in agents}
    exports: dict[tuple[str, str], dict[str, object]] = {}
    for user in users[1:]:
        imports: list[dict[str, object]] = []
        seen = _imported(user.account, user.permissions, exports, imports)
        services = [i for i in imports if "service" in i]
        local = [str(i.get("to", i["service"]["subject"])) for i in services]  # type: ignore[index]
        assert sorted(local) == sorted(seen.publish or ())
        assert not any(a != b and covers(a, b) for a in local for b in local)
        for service in services:
            subject = service["service"]["subject"]  # type: ignore[index]
            assert user.account in exports[("service", subject)]["accounts"]  # type: ignore[operator]
        assert all(
            s.startswith(("$JS.EXT.API.", "swarmlog.", "$JS.ACK.", "$KV.", "_swarmlog."))
            for s in local
        ), local


def test_an_auditor_may_read_the_stream_and_nothing_else() -> None:
    for trust_level in ("internal", "external"):
        permissions = agent_permissions(["default", "b"], "auditor-1", AUDITOR_ROLE, trust_level)
        assert permissions.publish == (
            "$JS.API.STREAM.INFO.SWARMLOG_DEFAULT",
            "$JS.API.DIRECT.GET.SWARMLOG_DEFAULT",
            "$JS.API.STREAM.INFO.SWARMLOG_B",
            "$JS.API.DIRECT.GET.SWARMLOG_B",
        )
        assert permissions.subscribe == ("_INBOX_auditor-1.>",)


@given(seed=st.binary(min_size=32, max_size=32), flip=st.integers(0, 55))
def test_a_login_key_is_recognised_and_a_mistyped_one_is_not(seed: bytes, flip: int) -> None:
    key = login_for("a", seed).public_key
    assert valid_login_key(key)
    mistyped = key[:flip] + ("A" if key[flip] != "A" else "B") + key[flip + 1 :]
    assert not valid_login_key(mistyped)
    assert not valid_login_key(key[:-1])
    assert not valid_login_key("S" + key[1:])
