"""What each connection may publish and subscribe to on the broker (pure).

Signatures say who wrote an event; these permissions make sure an agent can only *say* and
*hear* what its role needs, enforced by nats-server itself, so a compromised agent process cannot
write under another sender's prefix, take another role's work, delete or reconfigure the stream,
or flip a kill switch. swarmlog writes them into the server's ``authorization`` block from the
credentials in the key store (:func:`authorization_config`).

Who logs in as what:

- the **operator** (the CLI and the projector it starts): every permission.
- a **system** role (router, conductor, watchdog): an agent that also hears every event of the
  namespace and reads every role's queue depth.
- an **agent** (``internal``): its own prefix, its own role's queues and inbox, the task events
  it waits on, projection queries.
- an **external** agent: as an agent, minus what lets it see or steer others: no projection
  queries, no result-cache writes, no waiting on other tasks.

Only the operator may create, change or delete streams and consumers: every durable consumer an
agent reads (:mod:`swarmlog.bus.queues` names them) is created by the operator (``swarmlog up``,
``swarmlog agent start``) before the agent starts. The one exception is read-only: the ephemeral
watcher an agent opens on the kill-switch bucket, so that it stops within a second of a kill.

Each login key is an nkey derived from the agent's Ed25519 seed under its own domain
(:data:`LOGIN_DOMAIN`): a different key from the one that signs events, so a signature over a
server's login nonce can never be taken for an event signature or the other way round.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import nkeys

from swarmlog.bus.queues import queue_names
from swarmlog.bus.subjects import kv_bucket, rpc_subject, stream_name

__all__ = [
    "ACCOUNT",
    "EXTERNAL_ACCOUNT",
    "EXTERNAL_API",
    "LOGIN_DOMAIN",
    "Login",
    "Permissions",
    "User",
    "agent_permissions",
    "authorization_config",
    "inbox_prefix",
    "login_for",
    "users_for",
]

LOGIN_DOMAIN = b"swarmlog/nats-login/v1\x00"

ACCOUNT = "SWARMLOG"
"""The NATS account holding the streams: the operator, system roles and internal agents."""
EXTERNAL_ACCOUNT = "EXTERNAL"
"""The account of external agents: it has no streams and sees only what is exported to it."""
EXTERNAL_API = "$JS.EXT.API"
"""Where an external agent reaches the JetStream API calls imported from :data:`ACCOUNT`."""

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
    """Where this login reaches the JetStream API: ``None`` for the default (``$JS.API``), the
    imported :data:`EXTERNAL_API` for an external agent."""

    def __repr__(self) -> str:  # the seed must not reach a log through a repr
        return f"Login(public_key={self.public_key!r}, inbox_prefix={self.inbox_prefix!r})"


def inbox_prefix(agent_id: str) -> str:
    """The reply-subject prefix of ``agent_id``'s connection: replies to it, and no one else's."""
    return f"_INBOX_{agent_id}"


def login_for(agent_id: str, seed: bytes, trust_level: str = "internal") -> Login:
    """The NATS login of ``agent_id`` (or the operator) derived from its 32-byte Ed25519 seed."""
    raw = hashlib.sha256(LOGIN_DOMAIN + seed).digest()
    encoded = nkeys.encode_seed(raw, nkeys.PREFIX_BYTE_USER)
    pair = nkeys.from_seed(bytearray(encoded))
    return Login(
        seed=bytes(encoded).decode(),
        public_key=bytes(pair.public_key).decode(),
        inbox_prefix=inbox_prefix(agent_id),
        api_prefix=EXTERNAL_API if trust_level == "external" else None,
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


def _reading(stream: str) -> list[str]:
    """Stream info and single-message reads of ``stream`` (chain heads, claims, KV gets)."""
    api = "$JS.API"
    return [
        f"{api}.STREAM.INFO.{stream}",
        f"{api}.STREAM.MSG.GET.{stream}",
        f"{api}.DIRECT.GET.{stream}",
        f"{api}.DIRECT.GET.{stream}.>",
    ]


def agent_permissions(
    namespaces: Sequence[str], agent_id: str, role: str, trust_level: str = "internal"
) -> Permissions:
    """What ``agent_id`` of ``role`` may do on the broker, in each of ``namespaces`` (the
    namespaces of one server; see the module docstring)."""
    publish: list[str] = ["$JS.API.INFO"]
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
    flags = "KV_" + kv_bucket(namespace, "flags")
    cache = kv_bucket(namespace, "cache")
    external = trust_level == "external"
    system = role in SYSTEM_ROLES and not external
    publish = [
        f"swarmlog.{namespace}.{agent_id}.>",  # its own events, under its own prefix only
        *_reading(stream),
        *_reading(flags),
        *_reading("KV_" + cache),
        # The kill-switch watcher: an ephemeral, read-only consumer of the flags bucket.
        f"$JS.API.CONSUMER.CREATE.{flags}",
        f"$JS.API.CONSUMER.CREATE.{flags}.>",
        f"$JS.API.CONSUMER.DELETE.{flags}.>",
        f"$JS.API.CONSUMER.INFO.{flags}.>",
        f"$JS.FC.{flags}.>",
    ]
    for queue in queue_names(namespace, role, agent_id):
        publish += [
            f"$JS.API.CONSUMER.INFO.{stream}.{queue}",
            f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{queue}",
            f"$JS.ACK.{stream}.{queue}.>",
        ]
    subscribe = [
        f"swarmlog.{namespace}.*.work.{role}.>",
        f"swarmlog.{namespace}.*.msg.{agent_id}.>",
    ]
    if not external:
        publish += [
            f"$KV.{cache}.>",
            rpc_subject(namespace, "query"),
            rpc_subject(namespace, "wait"),
        ]
        subscribe.append(f"swarmlog.{namespace}.*.task.>")  # results of what it asked for
    if system:
        publish += [f"$JS.API.CONSUMER.INFO.{stream}.*", rpc_subject(namespace, "*")]
        subscribe.append(f"swarmlog.{namespace}.>")
    return publish, subscribe


def authorization_config(users: Iterable[User]) -> str:
    """The nats-server ``accounts`` block admitting exactly ``users``.

    Internal logins share :data:`ACCOUNT`, where the streams are. External agents log in to
    :data:`EXTERNAL_ACCOUNT`, which sees nothing but what :data:`ACCOUNT` exports to it: for each
    external agent exactly the subjects its permissions allow, imported one by one (JetStream API
    calls under :data:`EXTERNAL_API`, since an account without streams answers ``$JS.API`` itself).

    JSON is valid nats-server configuration syntax, and quoting every subject keeps ``$`` and
    ``>`` from being read as variables or operators.
    """
    internal: list[tuple[str, dict[str, object]]] = []
    external: list[tuple[str, dict[str, object]]] = []
    exports: dict[tuple[str, str], dict[str, object]] = {}
    imports: dict[tuple[str, str], dict[str, object]] = {}
    for user in sorted(users, key=lambda u: u.name):
        permissions = user.permissions
        if user.account == EXTERNAL_ACCOUNT:
            permissions = _imported(permissions, exports, imports)
        entry: dict[str, object] = {"nkey": user.nkey}
        if config := permissions.as_config():
            entry["permissions"] = config
        (external if user.account == EXTERNAL_ACCOUNT else internal).append((user.name, entry))
    lines = [
        "# Written by swarmlog from the key store: edits are overwritten.",
        "accounts {",
        f"  {ACCOUNT}: {{",
        "    jetstream: enabled",
        *_entries("users", internal, "    "),
        *_entries("exports", [("", e) for e in exports.values()], "    "),
        "  }",
        f"  {EXTERNAL_ACCOUNT}: {{",
        *_entries("users", external, "    "),
        *_entries("imports", [("", i) for i in imports.values()], "    "),
        "  }",
        "}",
        "",
    ]
    return "\n".join(lines)


def _entries(key: str, entries: list[tuple[str, dict[str, object]]], indent: str) -> list[str]:
    lines = [f"{indent}{key} = ["]
    for name, entry in entries:
        if name:
            lines.append(f"{indent}  # {name}")
        block = json.dumps(entry, indent=2).splitlines()
        lines += [f"{indent}  {line}" for line in block[:-1]] + [f"{indent}  {block[-1]},"]
    return [*lines, f"{indent}]"]


def _imported(
    permissions: Permissions,
    exports: dict[tuple[str, str], dict[str, object]],
    imports: dict[tuple[str, str], dict[str, object]],
) -> Permissions:
    """Export from :data:`ACCOUNT` and import into :data:`EXTERNAL_ACCOUNT` each subject an
    external login may use; its permissions, as seen from inside its account."""
    publish: list[str] = []
    for subject in permissions.publish or ():
        if subject == "$JS.API.INFO":
            continue  # the streams account's usage is none of its business
        local = subject
        if subject.startswith("$JS.API."):
            local = EXTERNAL_API + subject.removeprefix("$JS.API")
        export: dict[str, object] = {"service": subject, "accounts": [EXTERNAL_ACCOUNT]}
        if ".CONSUMER.MSG.NEXT." in subject:
            export["response_type"] = "stream"  # a pull is answered with many messages
        exports[("service", subject)] = export
        service: dict[str, object] = {"service": {"account": ACCOUNT, "subject": subject}}
        if local != subject:
            service["to"] = local
        imports[("service", local)] = service
        publish.append(local)
    for subject in permissions.subscribe or ():
        exports[("stream", subject)] = {"stream": subject, "accounts": [EXTERNAL_ACCOUNT]}
        imports[("stream", subject)] = {"stream": {"account": ACCOUNT, "subject": subject}}
    return Permissions(publish=tuple(publish), subscribe=permissions.subscribe)


def users_for(
    namespaces: Sequence[str],
    operator: Login,
    agents: Iterable[tuple[str, str, str, Login]],
) -> list[User]:
    """The operator and each ``(agent_id, role, trust_level, login)`` as server users."""
    users = [User("operator", operator.public_key)]
    for agent_id, role, trust, login in agents:
        permissions = agent_permissions(namespaces, agent_id, role, trust)
        account = EXTERNAL_ACCOUNT if trust == "external" else ACCOUNT
        users.append(User(agent_id, login.public_key, permissions, account))
    return users
