"""Keeping the broker's logins in step with the key store and the kill switches (the shell around
:mod:`swarmlog.bus.permissions`).

The embedded server enforces ``<data dir>/nats/authorization.conf``; swarmlog rewrites it and has
the server reload it whenever who may connect changes: ``keys issue`` (a new agent), ``kill`` (the
agent's connection is cut at once and refused after), ``revive``, ``up``. An agent is left out
while a kill switch stops it in any namespace of the data dir, or once its credential expired.

With a server of your own (``--nats-url``), ``swarmlog keys authorization --out FILE`` writes the
same block for you to include in its configuration.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace

from swarmlog.agents.policy.killflags import killed_by
from swarmlog.bus.permissions import ACCOUNT, User, accounts_in, authorization_config, users_for
from swarmlog.bus.queues import QueueSpec
from swarmlog.bus.server import AUTHORIZATION_FILE, EmbeddedServer
from swarmlog.config import Settings
from swarmlog.control.keystore import KeyStore
from swarmlog.control.system import open_log, open_projections
from swarmlog.errors import BusError, SwarmlogError
from swarmlog.files import write_atomic, write_private

__all__ = [
    "authorization_text",
    "known_namespaces",
    "provision_queues",
    "refresh_broker",
    "remember_namespace",
    "revoked_agents",
    "write_authorization",
]

_NAMESPACES_FILE = "namespaces"
_FLAGS_FILE = "kill-flags.json"
_LOCK_FILE = ".authorization.lock"
_REVOKED_FILE = "revoked-keys.json"
_REVOKED_SQL = "SELECT public_key FROM credentials WHERE revoked"

logger = logging.getLogger(__name__)

Flags = Mapping[str, Mapping[str, bytes]]
"""The kill-switch flags of each namespace."""


def known_namespaces(settings: Settings) -> list[str]:
    """Every namespace ``up`` has provisioned from this data dir, and the current one."""
    try:
        found = (settings.data_dir / _NAMESPACES_FILE).read_text().split()
    except OSError:
        found = []
    return sorted({*found, settings.namespace})


def remember_namespace(settings: Settings) -> None:
    """Record the current namespace: agents get permissions in every one of the data dir."""
    namespaces = known_namespaces(settings)
    write_atomic(settings.data_dir / _NAMESPACES_FILE, "\n".join(namespaces) + "\n", mode=0o644)


def server_users(
    settings: Settings,
    flags: Flags,
    revoked: frozenset[str] = frozenset(),
    now_ns: int | None = None,
) -> list[User]:
    """The operator and every agent of the key store; admitted are those that no kill switch
    stops, whose credential has not expired and whose key (hex public key) is not ``revoked``."""
    store = KeyStore(settings.keys_dir)
    now = time.time_ns() if now_ns is None else now_ns
    agents = []
    for credential in store.agents():
        expired = credential.expires_at is not None and credential.expires_at <= now
        killed = any(
            killed_by(f, credential.agent_id, credential.role) is not None for f in flags.values()
        )
        admitted = not (expired or killed or credential.public_key in revoked)
        login = store.login_key(credential.agent_id)
        agent = (credential.agent_id, credential.role, credential.trust_level, login, admitted)
        agents.append(agent)
    return users_for(known_namespaces(settings), store.login(), agents)


def authorization_text(settings: Settings, flags: Flags | None = None) -> str:
    """The ``accounts`` block for this data dir (with the last flags and revocations seen)."""
    users = server_users(settings, _cached_flags(settings, flags), _cached_revocations(settings))
    return authorization_config(users)


@contextlib.contextmanager
def _exclusive(settings: Settings) -> Iterator[None]:
    """One writer at a time: concurrent `agent start`s each add logins, and a writer that read
    the key store before another's key was saved must not write over it."""
    settings.server_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(settings.server_dir / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def write_authorization(settings: Settings, flags: Flags | None = None) -> bool:
    """Write the embedded server's authorization file (mode 0600: it lists every login);
    whether it changed. ``flags`` default to the last ones seen."""
    with _exclusive(settings):
        users = server_users(
            settings, _cached_flags(settings, flags), _cached_revocations(settings)
        )
        return _write_authorization(settings, authorization_config(users))


def _write_authorization(settings: Settings, text: str) -> bool:
    folder = settings.server_dir
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / AUTHORIZATION_FILE
    with contextlib.suppress(OSError):
        if path.read_text() == text:
            return False
    write_private(path, text)
    return True


def _cached_flags(settings: Settings, flags: Flags | None) -> Flags:
    """``flags``, remembered for the next start of the server (which is written before the
    buckets can be read); the remembered ones when ``flags`` is None."""
    path = settings.server_dir / _FLAGS_FILE
    if flags is None:
        try:
            raw = json.loads(path.read_text())
            return {ns: {k: v.encode() for k, v in f.items()} for ns, f in raw.items()}
        except (OSError, ValueError, AttributeError):
            return {}
    settings.server_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    plain = {ns: {k: v.decode(errors="replace") for k, v in f.items()} for ns, f in flags.items()}
    write_private(path, json.dumps(plain, sort_keys=True))
    return flags


async def current_flags(settings: Settings) -> dict[str, dict[str, bytes]]:
    """The kill-switch flags of every namespace of the data dir, read from the buckets."""
    found: dict[str, dict[str, bytes]] = {}
    for namespace in known_namespaces(settings):
        try:
            async with open_log(replace(settings, namespace=namespace)) as log:
                found[namespace] = await (await log.flags()).items()
        except BusError:
            continue  # a namespace not provisioned (yet): nothing can be killed in it
    return found


async def refresh_broker(settings: Settings) -> bool:
    """Bring the embedded server's logins up to date and reload it; whether anything changed.
    A no-op with a server of your own (``--nats-url``), or one started without authorization."""
    if settings.nats_url is not None:
        return False
    running = EmbeddedServer.running(settings.server_dir)
    flags = await current_flags(settings) if running is not None else None
    revoked = _cached_revocations(settings, await current_revocations(settings))
    with _exclusive(settings):
        users = server_users(settings, _cached_flags(settings, flags), revoked)
        live = running if running is not None and running.authorization else None
        new = {u.account for u in users} - _accounts_now(settings) - {ACCOUNT}
        if live is not None and new:
            # nats-server (2.15) wires the imports of an account a reload introduces only at the
            # next reload, and a client that logs in between the two stays unwired. So a new
            # account first arrives with nobody admitted to it, and its logins a reload later.
            staged = [replace(u, admitted=False) if u.account in new else u for u in users]
            if _write_authorization(settings, authorization_config(staged)):
                await asyncio.to_thread(live.reload)
        changed = _write_authorization(settings, authorization_config(users))
        if changed and live is not None:
            await asyncio.to_thread(live.reload)
    return changed


def _accounts_now(settings: Settings) -> set[str]:
    try:
        return accounts_in((settings.server_dir / AUTHORIZATION_FILE).read_text())
    except OSError:
        return set()


def _cached_revocations(
    settings: Settings, revoked: frozenset[str] | None = None
) -> frozenset[str]:
    """Every revoked key seen from this data dir, with ``revoked`` added: remembered for the
    next start of the server. A revocation is final, so the list only ever grows."""
    path = settings.server_dir / _REVOKED_FILE
    try:
        known = frozenset(str(k) for k in json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        known = frozenset()
    if revoked is None or revoked <= known:
        return known
    every = known | revoked
    write_private(path, json.dumps(sorted(every)))
    return every


async def revoked_agents(settings: Settings) -> list[str]:
    """The agents of the key store whose key is revoked (as last seen)."""
    revoked = _cached_revocations(settings)
    return [c.agent_id for c in KeyStore(settings.keys_dir).agents() if c.public_key in revoked]


async def current_revocations(settings: Settings) -> frozenset[str]:
    """The revoked agent keys in the projection, once it has folded the whole stream (so a
    revocation just published counts); empty when there is no projection to ask."""
    if not settings.projection_path.exists():
        return frozenset()
    async with open_projections(settings) as projections:
        with contextlib.suppress(BusError):
            async with open_log(settings) as log:
                last = await log.last_seq()
            await projections.wait(last)
        try:
            rows = await projections.rows(_REVOKED_SQL)
        except SwarmlogError as exc:  # the ones seen before still count (remembered on disk)
            logger.warning("could not read revoked keys from the projection: %s", exc)
            return frozenset()
    return frozenset(str(row[0]) for row in rows.rows)


async def provision_queues(settings: Settings, specs: list[QueueSpec]) -> None:
    """Create the durable consumers ``specs`` name, as the operator (agents may not)."""
    async with open_log(settings) as log:
        await log.ensure_queues(specs)
