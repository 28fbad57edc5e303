"""The result cache as a replica uses it (the shell around
:mod:`swarmlog.agents.policy.resultcache`).

An entry names the stream sequence of a signed ``result`` and the credential of the replica that
wrote it; a replica serves it only when :func:`~swarmlog.agents.policy.resultcache.verify_entry`
says
it checks out (and its writer is not stopped by a kill switch). A cache (or log) that is down is
a miss: the task is computed for real.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import msgspec

from swarmlog.agents.api import Agent
from swarmlog.agents.flagwatch import FlagWatch
from swarmlog.agents.policy.resultcache import CacheEntry, Hit, Refused, decode_entry, verify_entry
from swarmlog.agents.publisher import Published
from swarmlog.bus.ports import EventLog, FlagStore
from swarmlog.schemas.codec import decode_credential
from swarmlog.schemas.payloads import CredentialIssued

__all__ = ["ResultCache"]

log = logging.getLogger(__name__)


class ResultCache:
    """One replica's reads and writes of the result cache."""

    def __init__(
        self,
        agent: Agent,
        log: EventLog,
        *,
        namespace: str,
        credential: CredentialIssued | None,
        watch: FlagWatch,
        clock: Callable[[], int],
    ) -> None:
        self.agent = agent
        self.log = log
        self.namespace = namespace
        # The replica's own operator-signed credential: its entries show it, and the operator
        # that issued it is the one whose credentials it trusts in others' entries. Without it
        # the replica neither serves nor writes cached answers.
        self.credential = credential
        self._operator_key = decode_credential(credential.credential).issuer if credential else ""
        self._watch = watch
        self._clock = clock
        self._store: FlagStore | None = None

    @property
    def enabled(self) -> bool:
        return self.agent.cache_ttl > 0 and self.credential is not None

    async def _bucket(self) -> FlagStore:
        # Looked up once: on JetStream, finding the bucket is a round trip of its own.
        if self._store is None:
            self._store = await self.log.cache()
        return self._store

    async def point_at(self, keys: list[str], published: list[Published]) -> None:
        """Point the cache at the results just stored (after the publish: an entry names the
        signed event's stream sequence, never the output itself)."""
        for key, event in zip(keys, published, strict=True):
            if not key or self.credential is None:
                continue
            entry = CacheEntry(event.seq, self.credential)
            with contextlib.suppress(Exception):  # a cache that is down costs a recomputation
                await (await self._bucket()).put(key, msgspec.json.encode(entry))

    async def lookup(self, key: str) -> Hit | None:
        """The answer the cache holds for ``key`` if it checks out, else ``None`` (a miss, or
        an entry that does not verify: logged, and the task is run for real)."""
        try:
            raw = await (await self._bucket()).get(key)
            if raw is None:
                return None
            entry = decode_entry(raw)
            at = await self.log.message_at(entry.seq) if isinstance(entry, CacheEntry) else None
        except Exception as exc:  # a cache (or log) that is down is a miss
            log.warning("result cache unavailable: %s", exc)
            return None
        role = self.agent.role
        verdict = (
            entry
            if isinstance(entry, Refused)
            else verify_entry(
                entry,
                at,
                key=key,
                role=role,
                namespace=self.namespace,
                operator_key=self._operator_key,
                now=self._clock(),
                ttl=self.agent.cache_ttl,
            )
        )
        if isinstance(verdict, Hit) and self._watch.stops(verdict.sender, role) is not None:
            verdict = Refused(f"{verdict.sender}, who computed it, is stopped by a kill switch")
        if isinstance(verdict, Hit):
            return verdict
        log.warning("ignored cache entry %s: %s", key, verdict.reason)
        return None
