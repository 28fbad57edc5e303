"""What an agent process holds: its own key, credential and login, and the way to its server.

An agent process (``agent run``: a worker replica or a built-in role) is built from an
:class:`AgentSession` and nothing else. The session is read from the agent's own two key files
before the process is confined (:mod:`swarmlog.agents.host.sandbox`); it has no operator key, no way
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
from swarmlog.config import Settings
from swarmlog.control.keystore import KeyStore
from swarmlog.control.system import resolve_url
from swarmlog.errors import BusError, BusyError, ProjectorDown, QueryError, QueryTimeout
from swarmlog.projections.client import ProjectionClient, records
from swarmlog.schemas.credentials import Credential
from swarmlog.schemas.payloads import CredentialIssued
from swarmlog.schemas.signing import Identity

__all__ = [
    "QUERY_WAIT",
    "AgentSession",
    "agent_projections",
    "agent_query",
    "open_agent_log",
]

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


def agent_projections(session: AgentSession, log: JetStreamLog) -> ProjectionClient:
    """The live projector's services, asked over the agent's own connection (no file to fall
    back on: an agent never opens it)."""
    return ProjectionClient(log.client, session.namespace)


async def agent_query(
    projections: ProjectionClient, sql: str, *, timeout: float = QUERY_WAIT
) -> list[dict[str, Any]]:
    """Read-only SQL on the live projector, for an agent: the whole answer or an error a task
    can act on. A busy or slow projector is no fault of the query (:class:`BusyError`: ask
    again later); a query the service refuses fails the task for good (``bad_query``)."""
    try:
        result = await projections.rows(sql, timeout=timeout)
    except (BusError, QueryTimeout) as exc:  # busy, slow, or no answer in time
        raise BusyError(exc.message) from None
    except ProjectorDown:
        raise  # none answers now: a restarting projector, so not the query's fault either
    except QueryError as exc:
        raise TaskError("bad_query", exc.message, retryable=False) from None
    if result.truncated:
        # Deciding on part of the rows would be wrong, not just incomplete.
        raise QueryError(f"more than {len(result.rows)} rows; narrow the query: {sql[:80]}")
    return records(result.columns, result.rows)
