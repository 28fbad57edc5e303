"""Presence as processes keep it (the shell around :mod:`swarmlog.schemas.presence`): a replica
puts its signed presence into the namespace's presence bucket (:class:`Beacon`), readers take
from the bucket what verifies against the projection's keys (:class:`PresenceReader`), and a
built-in role announces itself, stays present while it works and says when it stops
(:class:`RolePresence`).

Nothing here writes a heartbeat to the log: liveness and load are not history. A replica that
stops on purpose says so on the log (``agent_stopped``) and takes its presence away; one that
dies just stops putting it, and the watchdog reports it ``agent_lost``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import KW_ONLY, dataclass, field

from swarmlog.agents.flagwatch import FlagWatch
from swarmlog.agents.policy.routing import AgentView
from swarmlog.agents.publisher import Publisher, Speaker
from swarmlog.bus.ports import EventLog, FlagStore
from swarmlog.errors import ConfigError
from swarmlog.schemas.payloads import AgentRegistered, AgentStopped
from swarmlog.schemas.presence import (
    PRESENCE_EVERY,
    STALE_AFTER,
    Presence,
    Refused,
    open_presence,
    seal_presence,
)

__all__ = ["Beacon", "PresenceReader", "RolePresence", "liveness_from_env", "say_stopped"]

log = logging.getLogger(__name__)

_MAX_TASKS = 1024


@dataclass(eq=False)
class Beacon:
    """One replica's presence in the bucket: :meth:`put` it every beat, :meth:`clear` it on a
    graceful stop. A put that fails is logged and skipped (the next beat tries again): a
    missed beat is not worth dying for."""

    log: EventLog
    publisher: Publisher
    role: str
    _: KW_ONLY
    every: float = PRESENCE_EVERY
    """Seconds between puts (the value says so, for readers)."""
    clock: Callable[[], int] = time.time_ns
    run: str = field(default_factory=lambda: os.urandom(8).hex())
    """This process's run id (see :attr:`~swarmlog.schemas.presence.Presence.run`)."""
    _seq: int = field(default=0, init=False)
    _store: FlagStore | None = field(default=None, init=False)
    _failing: bool = field(default=False, init=False)

    async def _bucket(self) -> FlagStore:
        if self._store is None:
            self._store = await self.log.presence()
        return self._store

    async def put(self, *, load: int = 0, capacity: int = 1, tasks: Iterable[str] = ()) -> None:
        """Say this replica is live now, with ``load`` tasks in hand (``tasks``) of
        ``capacity``."""
        identity = self.publisher.identity
        self._seq += 1
        value = Presence(
            namespace=self.publisher.namespace,
            agent_id=identity.agent_id,
            role=self.role,
            signer=identity.public_key,
            at=self.clock(),
            seq=self._seq,
            run=self.run,
            load=load,
            capacity=capacity,
            tasks=sorted(tasks)[:_MAX_TASKS],
            every=self.every,
        )
        try:
            await (await self._bucket()).put(identity.agent_id, seal_presence(identity, value))
        except Exception as exc:
            if not self._failing:  # once per outage, not every beat
                log.warning("presence not put: %s", exc)
            self._failing = True
            return
        if self._failing:
            log.warning("presence put again")
        self._failing = False

    async def clear(self) -> None:
        """Take this replica's presence away (it stopped on purpose)."""
        try:
            await (await self._bucket()).delete(self.publisher.identity.agent_id)
        except Exception as exc:  # it expires on its own
            log.warning("presence not cleared: %s", exc)


def liveness_from_env(env: Mapping[str, str] | None = None) -> tuple[float, float]:
    """``(every, stale_after)``: the seconds between a replica's presence puts
    (``SWARMLOG_PRESENCE_EVERY``, default 5) and after which a replica not heard from is not
    live (``SWARMLOG_STALE_AFTER``, default 15: the router routes nothing to it, the watchdog
    reports it lost). Every process of a system should agree on them."""
    env = os.environ if env is None else env
    try:
        every = float(env.get("SWARMLOG_PRESENCE_EVERY", str(PRESENCE_EVERY)))
        stale_after = float(env.get("SWARMLOG_STALE_AFTER", str(STALE_AFTER)))
    except ValueError:
        every = stale_after = -1.0  # refused just below
    if not (0.05 <= every <= 600 and every < stale_after <= 3600):
        raise ConfigError(
            "SWARMLOG_PRESENCE_EVERY is 0.05-600 seconds and SWARMLOG_STALE_AFTER more than it"
            " (up to 3600; three times it is a good choice)"
        )
    return every, stale_after


async def say_stopped(publisher: Publisher, reason: str) -> None:
    """Publish ``agent_stopped`` for this replica; a log that is gone already is not an error
    on the way out (the watchdog then reports the replica lost)."""
    try:
        stopped = AgentStopped(agent_id=publisher.identity.agent_id, reason=reason)
        await publisher.publish(stopped)
    except Exception as exc:
        log.warning("agent_stopped not published: %s", exc)


class PresenceReader:
    """Reads the presence bucket and keeps the values that verify (see
    :func:`~swarmlog.schemas.presence.open_presence`) against the agents' keys as the
    projection knows them. What does not verify is ignored: counted by reason in
    :attr:`refused`, the last read's in :attr:`refusals`, and logged once per agent and
    reason. A value older than one already accepted from the same run of the same agent is
    ``replayed`` (a new run, a restarted replica, starts its count again)."""

    def __init__(
        self,
        log: EventLog,
        namespace: str,
        *,
        clock: Callable[[], int] = time.time_ns,
        stale_after: float = STALE_AFTER,
    ) -> None:
        self.stale_after = stale_after
        """Seconds after which a value, however authentic, no longer makes its agent live (for
        the views; a decision is given its own limit)."""
        self._log = log
        self._namespace = namespace
        self._clock = clock
        self._store: FlagStore | None = None
        self._accepted: dict[str, tuple[str, int, int]] = {}
        """The last value accepted from each agent: its run, seq and time."""
        self._authentic: dict[str, tuple[bytes, str, Presence]] = {}
        """The last authentic value under each key, with the key it verified against: the same
        bytes checked against the same key are authentic again (time only moves on, so it
        cannot have become a value from the future), and a reader that looks every second
        need not verify every agent's signature every second."""
        self._warned: set[tuple[str, str]] = set()
        self.refused: Counter[str] = Counter()
        """Values ignored since this reader started, by reason."""
        self.refusals: dict[str, Refused] = {}
        """The last read's ignored values, by the key they were found under."""

    async def read(self, agents: Iterable[AgentView]) -> dict[str, Presence]:
        """The authentic presence of ``agents`` (each checked against its ``public_key``), by
        agent id. Raises what the bus raises when the bucket cannot be read."""
        return await self.read_keys({a.agent_id: a.public_key for a in agents})

    async def read_keys(self, keys: Mapping[str, str | None]) -> dict[str, Presence]:
        """The authentic presence by agent id, each checked against its key in ``keys`` (agent
        id to public key; ``None`` or missing: it has none, so its presence is refused)."""
        if self._store is None:
            self._store = await self._log.presence()
        stored = await self._store.items()
        now = self._clock()
        found: dict[str, Presence] = {}
        self.refusals = {}
        for key, raw in sorted(stored.items()):
            public_key = keys.get(key)
            known = self._authentic.get(key)
            got: Presence | Refused
            if known is not None and public_key is not None and known[:2] == (raw, public_key):
                got = known[2]
            else:
                got = open_presence(
                    raw, key=key, namespace=self._namespace, public_key=public_key, now=now
                )
                if isinstance(got, Presence) and public_key is not None:
                    self._authentic[key] = (raw, public_key, got)
            if isinstance(got, Presence) and self._replayed(key, got):
                got = Refused("replayed", f"put {got.seq} after {self._accepted[key][1]}")
            if isinstance(got, Refused):
                self._refuse(key, got)
                continue
            self._accepted[key] = (got.run, got.seq, got.at)
            found[key] = got
        return found

    def _replayed(self, key: str, presence: Presence) -> bool:
        """Whether ``presence`` is older than a value of the same run accepted before."""
        last = self._accepted.get(key)
        return (
            last is not None and presence.run == last[0] and (presence.seq, presence.at) < last[1:]
        )

    def _refuse(self, key: str, refused: Refused) -> None:
        self.refused[refused.reason] += 1
        self.refusals[key] = refused
        if (key, refused.reason) not in self._warned:
            self._warned.add((key, refused.reason))
            log.warning("ignored the presence under %s: %s %s", key, refused.reason, refused.detail)


@dataclass(eq=False, repr=False)  # compared and shown as an object, as before
class RolePresence(Speaker):
    """A built-in role's registration, presence and kill-switch state. Its presence is put
    every ``heartbeat`` seconds by a task of its own, beside the role's loop: a role busy
    waiting for the projection is still live (while killed, it puts none)."""

    log: EventLog
    publisher: Publisher
    role: str
    _: KW_ONLY
    heartbeat: float = PRESENCE_EVERY
    """Seconds between presence puts."""
    clock: Callable[[], int] = time.time_ns
    watch: FlagWatch = field(default_factory=FlagWatch, init=False)
    _beacon: Beacon = field(init=False)
    _beats: asyncio.Task[None] | None = field(default=None, init=False)
    _registered: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self._beacon = Beacon(
            self.log, self.publisher, self.role, every=self.heartbeat, clock=self.clock
        )

    @property
    def killed(self) -> bool:
        return self.watch.stops(self.agent_id, self.role) is not None

    async def start(self) -> None:
        """Read the kill switches; unless killed, put this replica's presence and announce it
        (present first, so no reader sees it registered and absent); then keep putting it."""
        await self.watch.start(await self.log.flags())
        if not self.killed:
            await self._beacon.put()
            await self.publisher.publish(
                AgentRegistered(agent_id=self.agent_id, role=self.role, replica=self.agent_id)
            )
            self._registered = True
        self._beats = asyncio.create_task(self._beat())

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)  # a period, not a synchronisation
            if not self.killed:
                await self._beacon.put()

    async def stop(self, reason: str = "stopped") -> None:
        """Stop following the kill switches and putting presence; say this replica stopped
        and take its presence away (not when killed: the kill switch said it all)."""
        if self._beats is not None:
            self._beats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beats
            self._beats = None
        await self.watch.stop()
        if self._registered and not self.killed:
            self._registered = False
            await say_stopped(self.publisher, reason)
            await self._beacon.clear()
