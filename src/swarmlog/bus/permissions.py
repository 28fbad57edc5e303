"""What each connection may publish and subscribe to on the broker (pure).

Signatures say who wrote an event; these permissions make sure an agent can only *say* and
*hear* what its role needs, enforced by nats-server itself, so a compromised agent process cannot
write under another sender's prefix, take another role's work, delete or reconfigure the stream,
or flip a kill switch. swarmlog writes them into the server's ``authorization`` block from the
credentials in the key store (:func:`authorization_config`); the shell that keeps that block in
step with the key store and the kill switches is :mod:`swarmlog.control.broker`.

Who logs in where: the **operator** (the CLI and the projector it starts) is the one login of
the account :data:`ACCOUNT`, which owns the streams and buckets, with every permission. **Every
agent logs in to an account of its own** (:func:`account_of`) that holds nothing: it sees only
the subjects :data:`ACCOUNT` exports to it, exactly those its permissions allow, each imported one
by one (the JetStream API under :data:`AGENT_API`). NATS does not check a request's *reply*
subject against publish permissions, so an agent that shared the streams' account could point
the server's answer to an allowed request at that account's JetStream API (a pull answered onto
``$JS.API.STREAM.DELETE...`` deletes the stream). Across an import, the server maps every reply
to an inbox of its own that leads back into the requester's account, and nothing in an agent's
account leads anywhere but to what that agent may publish itself. The server also stamps each
request that crosses an import with the requesting account (``Nats-Request-Info``, overwriting
any copy the client sent), which is how a service knows who asks (:func:`caller_of`).

What each agent may do:
- a **system** role (router, conductor, watchdog): an agent that also hears every event of the
  namespace and reads every role's queue depth.
- an **agent** (``internal``): its own prefix, its own role's queues and inbox, the task events
  it waits on, projection queries, its own key of the presence bucket (and reading the others').
- an **external** agent: as an agent, minus what lets it see or steer others: no projection
  queries, no result-cache writes, no waiting on other tasks, no reading others' presence.
- an **auditor** (:data:`~swarmlog.schemas.signing.AUDITOR_ROLE`): the stream's info and its
  messages by direct get, in batches, and nothing else: no publishing (not even under its own
  prefix), no queues, no queries, no buckets.

Only the operator may create, change or delete streams and consumers: every durable consumer an
agent reads (:mod:`swarmlog.bus.queues` names them) is created by the operator (``swarmlog up``,
``swarmlog agent start``) before the agent starts. An agent creates no consumer at all (a
consumer's configuration, its delivery subject above all, is too much power to hand out): it
follows the kill-switch bucket by subscribing to the bucket's subjects and reading keys one by one.

Each login key is an nkey derived from the agent's Ed25519 seed under its own domain
(:data:`LOGIN_DOMAIN`): a different key from the one that signs events, so a signature over a
server's login nonce can never be taken for an event signature or the other way round.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import nkeys

from swarmlog.bus.queues import queue_names
from swarmlog.bus.subjects import (
    JS_API,
    ack_filter,
    bell_of,
    cache_keys,
    inbox_filter,
    js_api,
    kind_filter,
    kv_bucket,
    kv_filter,
    kv_key,
    kv_stream,
    live_filter,
    role_work_filter,
    rpc_subject,
    sender_filter,
    stream_name,
    stream_subjects,
)
from swarmlog.schemas.signing import AUDITOR_ROLE, OPERATOR_ID

__all__ = [
    "ACCOUNT",
    "AGENT_ACCOUNT_PREFIX",
    "AGENT_API",
    "LOGIN_DOMAIN",
    "REQUEST_INFO_HEADER",
    "Login",
    "Permissions",
    "User",
    "account_of",
    "accounts_in",
    "agent_permissions",
    "authorization_config",
    "caller_of",
    "covers",
    "inbox_prefix",
    "login_for",
    "users_for",
    "valid_login_key",
]

LOGIN_DOMAIN = b"swarmlog/nats-login/v1\x00"

ACCOUNT = "SWARMLOG"
"""The NATS account holding the streams and buckets; the operator is its only login."""
AGENT_ACCOUNT_PREFIX = "AGENT_"
"""Each agent's own account is named this and its agent id (:func:`account_of`)."""
AGENT_API = "$JS.EXT.API"
"""Where an agent reaches the JetStream API calls imported from :data:`ACCOUNT` (an account
without streams answers ``$JS.API`` itself)."""
REQUEST_INFO_HEADER = "Nats-Request-Info"
"""The header the server sets on a request that crossed an import: JSON with the account."""

SYSTEM_ROLES = frozenset({"router", "conductor", "watchdog"})
"""Built-in roles that hear the whole namespace (they coordinate everyone else's work)."""


@dataclass(frozen=True)
class Login:
    """How one process logs in to NATS: its nkey seed and the inbox prefix it may hear on."""

    seed: str
    """The nkey user seed (``SU...``): a secret, never logged."""
    public_key: str
    """The nkey user public key (``U...``) the server's config names."""
    inbox_prefix: str
    api_prefix: str | None = None
    """Where this login reaches the JetStream API: ``None`` for the operator (``$JS.API``), the
    imported :data:`AGENT_API` for an agent."""

    def __repr__(self) -> str:  # the seed must not reach a log through a repr
        return f"Login(public_key={self.public_key!r}, inbox_prefix={self.inbox_prefix!r})"


def inbox_prefix(agent_id: str) -> str:
    """The reply-subject prefix of ``agent_id``'s connection: replies to it, and no one else's."""
    return f"_INBOX_{agent_id}"


def valid_login_key(text: str) -> bool:
    """Whether ``text`` is an nkey *user* public key (``U`` and 55 more base32 characters, its
    checksum right): what an agent whose secret the operator never holds gives as its login."""
    if len(text) != 56 or not text.startswith("U"):
        return False
    try:
        raw = base64.b32decode(text + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        return False
    return (
        len(raw) == 35
        and raw[0] == nkeys.PREFIX_BYTE_USER
        and nkeys.crc16_checksum(raw[:-2]) == raw[-2:]
    )


def account_of(agent_id: str) -> str:
    """The NATS account ``agent_id`` logs in to: its own, holding nothing but its imports."""
    return AGENT_ACCOUNT_PREFIX + agent_id


def caller_of(request_info: str | None) -> str:
    """Who sent a request, from its ``Nats-Request-Info`` header (see the module docstring):
    the agent id of the account it came from, or ``operator`` for a request from within
    :data:`ACCOUNT` (no import crossed, so no header; only the operator logs in there). A header
    that names no agent account is ``unknown``: a service answers that caller nothing."""
    if request_info is None:
        return OPERATOR_ID
    try:
        account = json.loads(request_info).get("acc")
    except (ValueError, AttributeError):
        return "unknown"
    if isinstance(account, str) and account.startswith(AGENT_ACCOUNT_PREFIX):
        return account.removeprefix(AGENT_ACCOUNT_PREFIX) or "unknown"
    return "unknown"


def login_for(agent_id: str, seed: bytes, trust_level: str = "internal") -> Login:
    """The NATS login of ``agent_id`` (or the operator) derived from its 32-byte Ed25519 seed.
    ``trust_level`` is the credential's; every agent reaches the API where its account imports
    it."""
    raw = hashlib.sha256(LOGIN_DOMAIN + seed).digest()
    encoded = nkeys.encode_seed(raw, nkeys.PREFIX_BYTE_USER)
    pair = nkeys.from_seed(bytearray(encoded))
    return Login(
        seed=bytes(encoded).decode(),
        public_key=bytes(pair.public_key).decode(),
        inbox_prefix=inbox_prefix(agent_id),
        api_prefix=None if agent_id == OPERATOR_ID else AGENT_API,
    )


@dataclass(frozen=True)
class Permissions:
    """Subjects a connection may publish to and subscribe to (``None``: everything)."""

    publish: tuple[str, ...] | None
    subscribe: tuple[str, ...] | None

    def as_config(self) -> dict[str, object]:
        out: dict[str, object] = {}
        if self.publish is not None:
            out["publish"] = {"allow": list(self.publish)}
        if self.subscribe is not None:
            out["subscribe"] = {"allow": list(self.subscribe)}
        return out


OPERATOR = Permissions(publish=None, subscribe=None)


@dataclass(frozen=True)
class User:
    """One login the server accepts."""

    name: str
    """For people reading the config (the agent id, or ``operator``)."""
    nkey: str
    permissions: Permissions = field(default=OPERATOR)
    account: str = ACCOUNT
    admitted: bool = True
    """Whether the server accepts this login now. A user not admitted (killed, expired, revoked,
    or not yet: see :func:`swarmlog.control.broker.refresh_broker`) keeps its account, with
    nothing in it that can log in."""


def _reading(stream: str) -> list[str]:
    """Stream info and single-message reads of ``stream`` (chain heads, claims, KV gets)."""
    return [
        js_api("STREAM", "INFO", stream),
        js_api("STREAM", "MSG", "GET", stream),
        js_api("DIRECT", "GET", stream),
        js_api("DIRECT", "GET", stream, ">"),
    ]


def agent_permissions(
    namespaces: Sequence[str], agent_id: str, role: str, trust_level: str = "internal"
) -> Permissions:
    """What ``agent_id`` of ``role`` may do on the broker, in each of ``namespaces`` (the
    namespaces of one server; see the module docstring)."""
    publish: list[str] = []
    subscribe: list[str] = [inbox_prefix(agent_id) + ".>"]
    for namespace in namespaces:
        more_publish, more_subscribe = _in_namespace(namespace, agent_id, role, trust_level)
        publish += more_publish
        subscribe += more_subscribe
    return Permissions(publish=tuple(publish), subscribe=tuple(subscribe))


def _in_namespace(
    namespace: str, agent_id: str, role: str, trust_level: str
) -> tuple[list[str], list[str]]:
    stream = stream_name(namespace)
    if role == AUDITOR_ROLE:
        # Reading the stream is all an auditor does; its replies come back to its inbox.
        return [js_api("STREAM", "INFO", stream), js_api("DIRECT", "GET", stream)], []
    flags = kv_bucket(namespace, "flags")
    cache = kv_bucket(namespace, "cache")
    presence = kv_bucket(namespace, "presence")
    external = trust_level == "external"
    system = role in SYSTEM_ROLES and not external
    publish = [
        sender_filter(namespace, agent_id),  # its own events, under its own prefix only
        live_filter(namespace, agent_id=agent_id),  # its calls' partial text, as its own only
        kv_key(presence, agent_id),  # its own presence only (put and delete)
        *_reading(stream),
        *_reading(kv_stream(flags)),
        *_reading(kv_stream(cache)),
    ]
    for queue in queue_names(namespace, role, agent_id):
        publish += [
            js_api("CONSUMER", "INFO", stream, queue),
            js_api("CONSUMER", "MSG", "NEXT", stream, queue),
            ack_filter(stream, queue),
        ]
    # Doorbells hear events on their bell subjects (bell_of), the stream's republish of each
    # event's headers: the events' own subjects carry nothing to another account.
    subscribe = [
        kv_filter(flags),  # kill switches, as they are pulled
        bell_of(namespace, role_work_filter(namespace, role)),
        bell_of(namespace, inbox_filter(namespace, agent_id)),
    ]
    if not external:
        publish += [
            *_reading(kv_stream(presence)),  # others' liveness and load (routing, the views)
            kv_filter(cache, cache_keys(role)),  # its own role's entries only
            rpc_subject(namespace, "query"),
            rpc_subject(namespace, "wait"),
        ]
        subscribe.append(bell_of(namespace, kind_filter(namespace, "task")))  # what it asked for
    if system:
        publish += [js_api("CONSUMER", "INFO", stream, "*"), rpc_subject(namespace, "*")]
        subscribe += [bell_of(namespace, s) for s in stream_subjects(namespace)]
    return publish, subscribe


def authorization_config(users: Iterable[User]) -> str:
    """The nats-server ``accounts`` block admitting exactly ``users``.

    The operator's logins live in :data:`ACCOUNT`, with the streams. Every other user lives in
    the account it names (one per agent, :func:`account_of`), which sees nothing but what
    :data:`ACCOUNT` exports to it: exactly the subjects that user's permissions allow, imported
    one by one (JetStream API calls under :data:`AGENT_API`).

    JSON is valid nats-server configuration syntax, and quoting every subject keeps ``$`` and
    ``>`` from being read as variables or operators.
    """
    owners: list[tuple[str, dict[str, object]]] = []
    accounts: dict[str, tuple[list[tuple[str, dict[str, object]]], list[dict[str, object]]]] = {}
    exports: dict[tuple[str, str], dict[str, object]] = {}
    for user in sorted(users, key=lambda u: u.name):
        permissions = user.permissions
        imports: list[dict[str, object]] = []
        if user.account != ACCOUNT:
            permissions = _imported(user.account, permissions, exports, imports)
        entry: dict[str, object] = {"nkey": user.nkey}
        if config := permissions.as_config():
            entry["permissions"] = config
        if user.account == ACCOUNT:
            if user.admitted:
                owners.append((user.name, entry))
            continue
        logins, imported = accounts.setdefault(user.account, ([], []))
        if user.admitted:
            logins.append((user.name, entry))
        imported += imports
    lines = [
        "# Written by swarmlog from the key store: edits are overwritten.",
        "accounts {",
        f"  {ACCOUNT}: {{",
        "    jetstream: enabled",
        *_entries("users", owners, "    "),
        *_entries("exports", [("", e) for e in exports.values()], "    "),
        "  }",
    ]
    for account, (logins, imported) in sorted(accounts.items()):
        lines += [
            f"  {json.dumps(account)}: {{",
            *_entries("users", logins, "    "),
            *_entries("imports", [("", i) for i in imported], "    "),
            "  }",
        ]
    return "\n".join([*lines, "}", ""])


def _entries(key: str, entries: list[tuple[str, dict[str, object]]], indent: str) -> list[str]:
    lines = [f"{indent}{key} = ["]
    for name, entry in entries:
        if name:
            lines.append(f"{indent}  # {name}")
        block = json.dumps(entry, indent=2).splitlines()
        lines += [f"{indent}  {line}" for line in block[:-1]] + [f"{indent}  {block[-1]},"]
    return [*lines, f"{indent}]"]


def _imported(
    account: str,
    permissions: Permissions,
    exports: dict[tuple[str, str], dict[str, object]],
    imports: list[dict[str, object]],
) -> Permissions:
    """Export from :data:`ACCOUNT` to ``account`` (and no other) and import there each subject
    a login of it may use; its permissions, as seen from inside its account."""
    publish: list[str] = []
    for subject in _widest(permissions.publish or ()):
        local = subject
        if subject.startswith(JS_API + "."):
            local = AGENT_API + subject.removeprefix(JS_API)
        export = exports.setdefault(("service", subject), {"service": subject, "accounts": []})
        _grant(export, account)
        if ".CONSUMER.MSG.NEXT." in subject or ".DIRECT.GET." in subject:
            export["response_type"] = "stream"  # a pull or a batch: many messages answer it
        service: dict[str, object] = {"service": {"account": ACCOUNT, "subject": subject}}
        if local != subject:
            service["to"] = local
        imports.append(service)
        publish.append(local)
    subscribe: list[str] = []
    for subject in _widest(permissions.subscribe or ()):
        subscribe.append(subject)
        if subject.startswith("_INBOX_"):
            continue  # replies come back through the imports; nothing of ACCOUNT is sent here
        export = exports.setdefault(("stream", subject), {"stream": subject, "accounts": []})
        _grant(export, account)
        imports.append({"stream": {"account": ACCOUNT, "subject": subject}})
    return Permissions(publish=tuple(publish), subscribe=tuple(subscribe))


def _widest(subjects: Iterable[str]) -> list[str]:
    """``subjects`` without those another of them covers. Two imports that both match a subject
    each carry the message across: a request would be answered twice, an event heard twice."""
    unique = list(dict.fromkeys(subjects))
    return [s for s in unique if not any(o != s and covers(o, s) for o in unique)]


def covers(wide: str, narrow: str) -> bool:
    """Whether every subject ``narrow`` matches is matched by ``wide`` (NATS wildcards: ``*`` is
    one token, a final ``>`` one or more)."""
    a, b = wide.split("."), narrow.split(".")
    for i, token in enumerate(a):
        if token == ">":
            return len(b) > i
        if i >= len(b) or b[i] == ">" or (token != "*" and (b[i] == "*" or token != b[i])):
            return False
    return len(a) == len(b)


def _grant(export: dict[str, object], account: str) -> None:
    granted = export["accounts"]
    assert isinstance(granted, list)
    if account not in granted:
        granted.append(account)


def accounts_in(config: str) -> set[str]:
    """The agent accounts an :func:`authorization_config` text declares."""
    found = set()
    for line in config.splitlines():
        # An account opens at an indent of two: `  "AGENT_<id>": {`.
        if line.startswith(f'  "{AGENT_ACCOUNT_PREFIX}') and line.endswith('": {'):
            found.add(json.loads(line.strip().removesuffix(": {")))
    return found


def users_for(
    namespaces: Sequence[str],
    operator: Login,
    agents: Iterable[tuple[str, str, str, str, bool]],
) -> list[User]:
    """The operator and each ``(agent_id, role, trust_level, login_key, admitted)`` as server
    users (``login_key``: the public nkey it logs in with), each agent in its own account."""
    users = [User(OPERATOR_ID, operator.public_key)]
    for agent_id, role, trust, login_key, admitted in agents:
        permissions = agent_permissions(namespaces, agent_id, role, trust)
        account = account_of(agent_id)
        users.append(User(agent_id, login_key, permissions, account, admitted))
    return users
