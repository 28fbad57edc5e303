"""Unit tests of presence: the signed value a replica puts in the presence bucket (what a reader
accepts and what it ignores), and the lifecycle the log keeps instead of heartbeats (stopped,
lost, seen again: who may say so, and what the projection's ``agents.status`` becomes)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import msgspec
import pytest
from test_authority import ECHO_1, ECHO_2, NOW, ROUTER, WATCHDOG, swarm
from test_verify import OPERATOR, Projection

from swarmlog.agents.liveness import presence_beats
from swarmlog.agents.policy.liveness import Change, Lost, Seen, changes, held_tasks, with_presence
from swarmlog.agents.policy.routing import AgentView
from swarmlog.agents.presence import Beacon, PresenceReader
from swarmlog.bus.memory import MemoryLog
from swarmlog.schemas.payloads import (
    AgentKilled,
    AgentLost,
    AgentRegistered,
    AgentRevived,
    AgentSeen,
    AgentStopped,
)
from swarmlog.schemas.presence import (
    MAX_AHEAD_NS,
    REFUSALS,
    Presence,
    Refused,
    SignedPresence,
    fresh,
    open_presence,
    seal_presence,
)
from swarmlog.schemas.signing import EVENT_DOMAIN, Identity

NS = "default"
S = 10**9


def value(who: Identity = ECHO_1, **changes: object) -> Presence:
    fields: dict[str, object] = {
        "namespace": NS,
        "agent_id": who.agent_id,
        "role": "echo",
        "signer": who.public_key,
        "at": NOW,
        "seq": 1,
        "load": 2,
        "capacity": 4,
        "tasks": ["t1", "t2"],
    }
    return Presence(**(fields | changes))  # type: ignore[arg-type]


def read(raw: bytes, key: str = "echo-1", public_key: str | None = ECHO_1.public_key) -> object:
    return open_presence(raw, key=key, namespace=NS, public_key=public_key, now=NOW)


def test_an_honest_value_reads_back_as_it_was_put() -> None:
    put = value()
    assert read(seal_presence(ECHO_1, put)) == put


def reason(raw: bytes, **kwargs: object) -> str:
    got = read(raw, **kwargs)  # type: ignore[arg-type]
    assert isinstance(got, Refused), got
    assert got.reason in REFUSALS
    return got.reason


def test_garbage_and_oversized_values_are_malformed() -> None:
    assert reason(b"\x00\xffnot a presence") == "malformed"
    assert reason(b"\x00" * 200_000) == "malformed"
    body = msgspec.msgpack.encode({"agent_id": "echo-1"})
    assert reason(msgspec.msgpack.encode(SignedPresence(body, b"\x00" * 64))) == "malformed"


def test_a_copy_of_another_agents_value_under_ones_own_key_is_refused() -> None:
    theirs = seal_presence(ECHO_2, value(ECHO_2))
    # echo-1 (who may put only its own key) stores echo-2's genuine value there.
    assert reason(theirs, key="echo-1") == "wrong_key"
    elsewhere = seal_presence(ECHO_1, value(namespace="other"))
    assert reason(elsewhere) == "wrong_key"  # from another namespace's bucket


def test_a_value_signed_by_any_key_but_the_agents_own_is_refused() -> None:
    impostor = Identity("echo-1", ROUTER.signing_key)  # a key the projection does not give it
    assert reason(seal_presence(impostor, value(signer=ROUTER.public_key))) == "wrong_signer"
    # Naming the right key does not help without it: the signature does not check out.
    signed = msgspec.msgpack.decode(seal_presence(impostor, value(signer=ROUTER.public_key)))
    body = msgspec.msgpack.encode(value())
    forged = msgspec.msgpack.encode(SignedPresence(body, bytes(signed[1])))
    assert reason(forged) == "bad_signature"
    # Nor does an event signature of the same bytes: the domains differ.
    as_event = ECHO_1.sign(EVENT_DOMAIN, body)
    assert reason(msgspec.msgpack.encode(SignedPresence(body, as_event))) == "bad_signature"


def test_an_agent_without_a_valid_credential_has_no_presence() -> None:
    assert reason(seal_presence(ECHO_1, value()), public_key=None) == "unknown_agent"


def test_a_value_from_the_future_is_refused_and_an_old_one_is_authentic_but_stale() -> None:
    assert reason(seal_presence(ECHO_1, value(at=NOW + MAX_AHEAD_NS + 1))) == "future"
    old = read(seal_presence(ECHO_1, value(at=NOW - 3600 * S)))
    assert isinstance(old, Presence)  # an old value put again: it says when, never "live"
    assert not fresh(old, now=NOW, stale_after=15)
    assert fresh(value(at=NOW - 15 * S), now=NOW, stale_after=15)
    assert not fresh(value(at=NOW - 15 * S - 1), now=NOW, stale_after=15)


def test_sealing_another_agents_presence_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="signed by the agent it names"):
        seal_presence(ECHO_1, value(ECHO_2))


# --- the lifecycle on the log ---------------------------------------------------------------------


class _NotPermitted:
    """Equal to any rejection for ``not_permitted`` (whatever its detail)."""

    def __eq__(self, other: object) -> bool:
        return getattr(other, "reason", None) == "not_permitted"


NOT_PERMITTED = _NotPermitted()


def status(p: Projection, agent_id: str = "echo-1") -> str:
    row = p.state.get("agents", agent_id)
    assert row is not None
    return str(row["status"])


def registered() -> Projection:
    p = swarm()
    assert p.emit(ECHO_1, AgentRegistered(agent_id="echo-1", role="echo"), now=NOW) is None
    return p


def test_a_replica_says_it_stopped_and_only_for_itself() -> None:
    p = registered()
    assert p.emit(ECHO_2, AgentStopped(agent_id="echo-1")) == NOT_PERMITTED
    assert status(p) == "registered"
    assert p.emit(ECHO_1, AgentStopped(agent_id="echo-1", reason="SIGTERM")) is None
    assert status(p) == "stopped"
    assert p.emit(ECHO_1, AgentRegistered(agent_id="echo-1", role="echo")) is None
    assert status(p) == "registered"  # started again


def test_only_the_watchdog_says_who_is_lost_or_back() -> None:
    p = registered()
    for who in (ECHO_2, ROUTER):
        assert p.emit(who, AgentLost(agent_id="echo-1")) == NOT_PERMITTED
    assert status(p) == "registered"
    assert p.emit(WATCHDOG, AgentLost(agent_id="echo-1", last_seen_at=NOW)) is None
    assert status(p) == "lost"
    assert p.emit(ECHO_1, AgentSeen(agent_id="echo-1", seen_at=NOW)) == NOT_PERMITTED
    assert p.emit(WATCHDOG, AgentSeen(agent_id="echo-1", seen_at=NOW + S)) is None
    assert status(p) == "registered"


def test_a_lost_about_an_earlier_run_or_a_replica_not_live_changes_nothing() -> None:
    p = registered()
    # Judged on a presence from before the replica registered again: about its earlier run.
    assert p.emit(WATCHDOG, AgentLost(agent_id="echo-1", last_seen_at=NOW - S)) is None
    assert status(p) == "registered"
    assert p.emit(ECHO_1, AgentStopped(agent_id="echo-1")) is None
    assert p.emit(WATCHDOG, AgentLost(agent_id="echo-1")) is None
    assert status(p) == "stopped"  # it said it stopped: not lost
    assert p.emit(WATCHDOG, AgentSeen(agent_id="echo-1", seen_at=NOW)) is None
    assert status(p) == "stopped"  # only a lost replica is seen again


def test_a_killed_replica_stays_killed_whatever_its_presence_does() -> None:
    p = registered()
    assert p.emit(OPERATOR, AgentKilled(agent_id="echo-1", reason="x")) is None
    for event in (AgentLost(agent_id="echo-1"), AgentSeen(agent_id="echo-1", seen_at=NOW)):
        assert p.emit(WATCHDOG, event) is None
        assert status(p) == "killed"
    assert p.emit(OPERATOR, AgentRevived(agent_id="echo-1")) is None
    assert status(p) == "registered"


# --- who is lost, who is back (the watchdog's decision) -------------------------------------------


def agent(agent_id: str, status: str = "registered", heard: int | None = NOW) -> AgentView:
    return AgentView(agent_id, "echo", frozenset(), status, heard)


def decide(
    views: list[AgentView],
    seen: dict[str, Presence],
    now: int,
    watched: dict[str, int] | None = None,
    exempt: tuple[str, ...] = (),
) -> tuple[list[Change], dict[str, int]]:
    return changes(views, seen, now=now, stale_after=15, watched=watched or {}, exempt=exempt)


def test_a_registered_replica_silent_past_the_limit_is_lost() -> None:
    views = [agent("echo-1"), agent("echo-2")]
    seen = {"echo-1": value(at=NOW + 20 * S)}  # echo-2 registered at NOW and said nothing since
    found, watched = decide(views, seen, NOW + 30 * S, watched={"echo-1": NOW, "echo-2": NOW})
    assert found == [Lost("echo-2", NOW)]
    assert watched == {"echo-1": NOW, "echo-2": NOW}
    # Within the limit, or heard from lately: nobody.
    assert decide(views, seen, NOW + 15 * S, watched=watched)[0] == []


def test_a_replica_first_watched_now_gets_a_full_period_to_be_heard() -> None:
    # The watcher just started (or the replica was just revived): its old registration alone
    # does not make it lost at once.
    views = [agent("echo-1", heard=NOW - 3600 * S)]
    found, watched = decide(views, {}, NOW)
    assert (found, watched) == ([], {"echo-1": NOW})
    assert decide(views, {}, NOW + 15 * S, watched)[0] == []
    assert decide(views, {}, NOW + 16 * S, watched)[0] == [Lost("echo-1", NOW - 3600 * S)]


def test_only_registered_replicas_are_watched_and_the_exempt_never() -> None:
    views = [
        agent("echo-1", "stopped", NOW - 3600 * S),
        agent("echo-2", "killed", NOW - 3600 * S),
        agent("echo-3", "issued", None),
        agent("watchdog-1", heard=NOW - 3600 * S),
    ]
    old = {a.agent_id: NOW - 3600 * S for a in views}
    assert decide(views, {}, NOW, watched=old, exempt=("watchdog-1",)) == ([], {})


def test_a_lost_replica_with_fresh_presence_is_seen_again() -> None:
    views = [agent("echo-1", "lost", NOW - 3600 * S), agent("echo-2", "lost", NOW - 3600 * S)]
    seen = {"echo-1": value(at=NOW - 2 * S), "echo-2": value(ECHO_2, at=NOW - 20 * S)}
    found, watched = decide(views, seen, NOW)
    assert found == [Seen("echo-1", NOW - 2 * S)]  # echo-2's is stale: still lost
    assert watched == {}


def test_presence_sets_liveness_and_load_and_lists_the_work_in_hand() -> None:
    views = [agent("echo-1", heard=NOW - 60 * S), agent("echo-2", heard=NOW - 60 * S)]
    seen = {"echo-1": value(at=NOW - S, load=2), "echo-2": value(ECHO_2, at=NOW - 90 * S)}
    merged = with_presence(views, seen)
    assert [(v.last_heartbeat_at, v.in_flight) for v in merged] == [
        (NOW - S, 2),
        (NOW - 60 * S, 2),  # an older presence never moves "last heard" back
    ]
    assert held_tasks(seen.values(), now=NOW, stale_after=15) == {"t1", "t2"}
    assert held_tasks(seen.values(), now=NOW + 20 * S, stale_after=15) == frozenset()


async def test_a_reader_refuses_an_older_value_of_the_same_run_not_a_new_run() -> None:
    log = MemoryLog("SWARMLOG_DEFAULT")
    bucket = await log.presence()
    reader = PresenceReader(log, NS, clock=lambda: NOW)
    keys = {"echo-1": ECHO_1.public_key}

    async def put_and_read(**changes: object) -> str:
        await bucket.put("echo-1", seal_presence(ECHO_1, value(**changes)))
        seen = await reader.read_keys(keys)
        refused = reader.refusals.get("echo-1")
        return "accepted" if "echo-1" in seen else f"refused: {refused and refused.reason}"

    assert await put_and_read(run="aa", seq=5) == "accepted"
    assert await put_and_read(run="aa", seq=4, at=NOW - S) == "refused: replayed"
    assert await put_and_read(run="aa", seq=5) == "accepted"  # the same value again: no news
    # Restarted, on a host whose clock is a little behind: a new run, counting from 1.
    assert await put_and_read(run="bb", seq=1, at=NOW - 2 * S) == "accepted"
    assert reader.refused == {"replayed": 1}


async def test_a_value_read_again_is_authentic_only_against_the_key_it_verified_with() -> None:
    """The reader does not verify the same bytes twice against the same key; a key that has
    changed (reissued) or gone (revoked) is asked again, and refuses the value."""
    log = MemoryLog("SWARMLOG_DEFAULT")
    bucket = await log.presence()
    reader = PresenceReader(log, NS, clock=lambda: NOW)
    await bucket.put("echo-1", seal_presence(ECHO_1, value()))
    assert "echo-1" in await reader.read_keys({"echo-1": ECHO_1.public_key})
    assert "echo-1" in await reader.read_keys({"echo-1": ECHO_1.public_key})
    assert await reader.read_keys({"echo-1": ECHO_2.public_key}) == {}
    assert reader.refusals["echo-1"].reason == "wrong_signer"
    assert await reader.read_keys({"echo-1": None}) == {}
    assert reader.refusals["echo-1"].reason == "unknown_agent"
    # And bytes put under the key since are checked afresh.
    forged = seal_presence(ECHO_2, value(ECHO_2))
    await bucket.put("echo-1", forged)
    assert await reader.read_keys({"echo-1": ECHO_1.public_key}) == {}


async def test_a_change_in_hand_is_put_at_once_not_at_the_next_beat() -> None:
    """The router routes by the load presence says: a replica that finished a task must not
    look full until its next beat (a whole period later)."""
    puts: list[tuple[int, list[str]]] = []
    put_seen = asyncio.Event()

    class Recorder:
        async def put(self, *, load: int = 0, capacity: int = 1, tasks: Any = ()) -> None:
            puts.append((load, list(tasks)))
            put_seen.set()

    held: list[str] = ["t1"]
    changed = asyncio.Event()
    closing = False
    beats = asyncio.create_task(
        presence_beats(
            cast(Beacon, Recorder()),
            3600.0,  # no beat comes within the test: only the changes are put
            tasks=lambda: held,
            capacity=1,
            quiet=lambda: False,
            closing=lambda: closing,
            changed=changed,
        )
    )
    try:
        changed.set()
        await asyncio.wait_for(put_seen.wait(), 10)
        put_seen.clear()
        held.clear()  # the task is done
        changed.set()
        await asyncio.wait_for(put_seen.wait(), 10)
    finally:
        closing = True
        beats.cancel()
    assert puts == [(1, ["t1"]), (0, [])]
