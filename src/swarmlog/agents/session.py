"""What an agent process holds: its own key, credential and login, and the way to its server.

An agent process (``agent run``: a worker replica or a built-in role) is built from an
:class:`AgentSession` and nothing else. The session is read from the agent's own two key files
before the process is confined (:mod:`swarmlog.agents.sandbox`); it has no operator key, no way
to load one, and no login but the agent's own. Reads of the projections go to the live query
service over that login; with no projector answering they fail with a clear error: an agent
never opens the projection file, nor logs in as anyone else to ask.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from swarmlog.agents.api import TaskError
from swarmlog.bus.jetstream import JetStreamLog
from swarmlog.bus.permissions import Login, login_for
from swarmlog.bus.rpc import request
from swarmlog.bus.subjects import rpc_subject
from swarmlog.config import Settings
from swarmlog.errors import BusError, BusyError, QueryError, QueryTimeout
from swarmlog.keystore import KeyStore
from swarmlog.schemas.credentials import Credential
from swarmlog.schemas.payloads import CredentialIssued
from swarmlog.schemas.signing import Identity
from swarmlog.system import resolve_url

__all__ = ["QUERY_WAIT", "AgentSession", "open_agent_log", "projection_rows"]

QUERY_WAIT = 15.0
"""Seconds an agent waits for the query service's answer."""


@dataclass(frozen=True)
class AgentSession:
    """One agent's identity, credential and server: all an agent process may use."""

    agent_id: str
    identity: Identity = field(repr=False)
    """The agent's signing key (its seed: keep it out of logs and reprs)."""
    credential: Credential = field(repr=False)
    issued: CredentialIssued = field(repr=False)
    """The credential as the operator signed it (public: its result-cache entries show it)."""
    url: str
    """The NATS server (or cluster) to log in to."""
    namespace: str

    @classmethod
    def load(cls, settings: Settings, agent_id: str) -> AgentSession:
        """Read ``agent_id``'s own seed and credential (and where the server is) from the data
        dir: the only files of it the process reads."""
        store = KeyStore(settings.keys_dir)
        identity, credential = store.agent(agent_id)
        issued = store.issued(agent_id)
        return cls(
            agent_id, identity, credential, issued, resolve_url(settings), settings.namespace
        )

    @property
    def login(self) -> Login:
        """The agent's own NATS login."""
        return login_for(self.agent_id, self.identity.seed, self.credential.trust_level)


@contextlib.asynccontextmanager
async def open_agent_log(session: AgentSession) -> AsyncIterator[JetStreamLog]:
    """The namespace's stream, logged in as the agent."""
    log = await JetStreamLog.open(session.url, session.namespace, login=session.login)
    try:
        yield log
    finally:
        await log.close()


async def projection_rows(
    session: AgentSession, log: JetStreamLog, sql: str, *, timeout: float = QUERY_WAIT
) -> tuple[list[str], list[list[Any]]]:
    """Read-only SQL on the live projector, asked over the agent's own connection."""
    subject = rpc_subject(session.namespace, "query")
    reply = await request(log.client, subject, {"sql": sql}, timeout)
    if reply is None:
        raise QueryError(
            f"no projector answers queries on {subject}; start it with `swarmlog up --detach`"
            " (an agent reads the projections only through it)"
        )
    if isinstance(reply, dict) and "rows" in reply:
        if reply.get("truncated"):
            # Deciding on part of the rows would be wrong, not just incomplete.
            raise QueryError(f"more than {len(reply['rows'])} rows; narrow the query: {sql[:80]}")
        return list(reply["columns"]), list(reply["rows"])
    error = reply.get("error", reply) if isinstance(reply, dict) else reply
    message = error.get("message", error) if isinstance(error, dict) else error
    if isinstance(error, dict) and error.get("code") in _TRANSIENT_CODES:
        # A busy or slow projector is no fault of the query: the caller asks again later.
        raise BusyError(str(message).removeprefix(f"[{error['code']}] "))
    raise TaskError("bad_query", str(message), retryable=False)


_TRANSIENT_CODES = frozenset({BusError.code, BusyError.code, QueryTimeout.code})
"""Errors of the query service after which the same query may well succeed."""
