"""The broker enforces least privilege: every issued credential may publish, subscribe and call
the JetStream API only where its role needs to; everything else is refused by nats-server itself
and stores nothing. A killed agent is cut off at the broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import nats
import nats.errors
import nats.js.errors
import pytest
from clikit import Cli, running

from swarmlog.agents.publisher import Publisher
from swarmlog.bus.jetstream import connect
from swarmlog.bus.permissions import Login
from swarmlog.bus.subjects import bell_prefix, inbox_filter
from swarmlog.control.keystore import KeyStore
from swarmlog.control.system import open_log, resolve_url
from swarmlog.errors import BusError
from swarmlog.schemas.payloads import ClarificationRequest
from waiting import until

pytestmark = pytest.mark.e2e

STREAM = "SWARMLOG_DEFAULT"
FLAGS = "KV_SWARMLOG_DEFAULT_FLAGS"
CACHE = "KV_SWARMLOG_DEFAULT_CACHE"
PRESENCE = "KV_SWARMLOG_DEFAULT_PRESENCE"

# Every JetStream API call that creates, changes or deletes something, on the namespace's stream,
# its buckets and stream-wide listings: the operator's alone.
MANAGEMENT = [
    "$JS.API.STREAM.CREATE.EVIL",
    f"$JS.API.STREAM.CREATE.{STREAM}",
    f"$JS.API.STREAM.UPDATE.{STREAM}",
    f"$JS.API.STREAM.DELETE.{STREAM}",
    f"$JS.API.STREAM.PURGE.{STREAM}",
    f"$JS.API.STREAM.MSG.DELETE.{STREAM}",
    f"$JS.API.STREAM.SNAPSHOT.{STREAM}",
    f"$JS.API.STREAM.RESTORE.{STREAM}",
    f"$JS.API.STREAM.LEADER.STEPDOWN.{STREAM}",
    f"$JS.API.STREAM.PEER.REMOVE.{STREAM}",
    "$JS.API.STREAM.NAMES",
    "$JS.API.STREAM.LIST",
    f"$JS.API.STREAM.UPDATE.{FLAGS}",
    f"$JS.API.STREAM.PURGE.{FLAGS}",
    f"$JS.API.STREAM.DELETE.{CACHE}",
    f"$JS.API.STREAM.MSG.DELETE.{FLAGS}",
    f"$JS.API.CONSUMER.CREATE.{STREAM}",
    f"$JS.API.CONSUMER.CREATE.{STREAM}.spy.swarmlog.default.>",
    f"$JS.API.CONSUMER.DURABLE.CREATE.{STREAM}.spy",
    f"$JS.API.CONSUMER.DELETE.{STREAM}.default-router",
    f"$JS.API.CONSUMER.DELETE.{STREAM}.default-worker-normal",
    f"$JS.API.CONSUMER.PAUSE.{STREAM}.default-worker-normal",
    f"$JS.API.CONSUMER.LEADER.STEPDOWN.{STREAM}.default-worker-normal",
    f"$JS.API.CONSUMER.NAMES.{STREAM}",
    f"$JS.API.CONSUMER.LIST.{STREAM}",
    f"$JS.API.CONSUMER.CREATE.{CACHE}",
    "$JS.API.ACCOUNT.PURGE",
    "$JS.API.META.LEADER.STEPDOWN",
    "$JS.API.SERVER.REMOVE",
]


@dataclass(frozen=True)
class Holder:
    """An issued credential and what its role may not touch."""

    agent_id: str
    role: str
    other_role: str
    other_agent: str
    system: bool = False
    external: bool = False
    refused_subscriptions: list[str] = field(default_factory=list)

    def refused_publishes(self) -> list[str]:
        subjects = self._refused_publishes()
        # An agent reaches the API calls it may make under the prefix its account imports them
        # at: every other call is refused there too.
        api = [s.removeprefix("$JS.API.") for s in subjects if s.startswith("$JS.API.")]
        return subjects + ["$JS.EXT.API." + s for s in api]

    def _refused_publishes(self) -> list[str]:
        return [
            "swarmlog.default.operator.ctl.credential_issued",
            f"swarmlog.default.{self.other_agent}.task.t1.result",
            "swarmlog.default.task.t1.result",  # no sender prefix at all
            "$KV.SWARMLOG_DEFAULT_FLAGS.all",  # lift or pull a kill switch
            f"$JS.ACK.{STREAM}.default-{self.other_role}-normal.1.1.1.1.1",  # ack others' work
            f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.default-{self.other_role}-normal",
            f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.default-inbox-{self.other_agent}",
            f"$KV.SWARMLOG_DEFAULT_CACHE.result.{self.other_role}.k",  # another role's cache
            f"_swarmlog.default.live.{self.other_agent}.t1",  # another's partial text
            f"$KV.SWARMLOG_DEFAULT_PRESENCE.{self.other_agent}",  # pass for another replica
            "$KV.SWARMLOG_DEFAULT_PRESENCE.nobody-yet",  # or for one that does not exist
            *(
                [
                    "$KV.SWARMLOG_DEFAULT_CACHE.k",
                    "_swarmlog.default.rpc.query",
                    # others' liveness and load are none of an external agent's business
                    "$JS.API.STREAM.MSG.GET.KV_SWARMLOG_DEFAULT_PRESENCE",
                    "$JS.API.DIRECT.GET.KV_SWARMLOG_DEFAULT_PRESENCE",
                ]
                if self.external
                else []
            ),
            *MANAGEMENT,
        ]


HOLDERS = [
    Holder(
        "worker-1",
        "worker",
        other_role="router",
        other_agent="router-1",
        refused_subscriptions=[
            "swarmlog.default.>",
            "swarmlog.default.*.work.router.>",
            "swarmlog.default.*.msg.router-1.>",
            "_INBOX.>",
            "_INBOX_router-1.>",
            "_INBOX_operator.>",
            "$KV.SWARMLOG_DEFAULT_CACHE.>",
            "_swarmlog.default.live.>",  # the partial text of others' calls is the operator's
        ],
    ),
    Holder(
        "scout-1",
        "scout",
        other_role="worker",
        other_agent="worker-1",
        external=True,
        refused_subscriptions=[
            "swarmlog.default.>",
            "swarmlog.default.*.task.>",  # an external agent hears only its own work
            "swarmlog.default.*.work.worker.>",
            "_INBOX.>",
            "_INBOX_worker-1.>",
            "_swarmlog.default.live.>",
        ],
    ),
    *(
        Holder(
            f"{role}-1",
            role,
            other_role="worker",
            other_agent="worker-1",
            system=True,
            refused_subscriptions=[
                "_INBOX.>",
                "_INBOX_worker-1.>",
                "_INBOX_operator.>",
                "_swarmlog.default.live.>",
            ],
        )
        for role in ("router", "conductor", "watchdog")
    ),
]


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    """One running system for the whole module (each `up` costs seconds), with an internal and
    an external agent issued."""
    with running(tmp_path_factory.mktemp("broker") / "data") as cli:
        for args in (("worker", "--agent-id", "worker-1"), ("scout", "--agent-id", "scout-1")):
            extra = ("--trust", "external") if args[0] == "scout" else ()
            out = cli("keys", "issue", *args, *extra)
            assert out.returncode == 0, out.stderr
        yield cli


class Session:
    """A raw nats-py connection logged in as one agent, recording what the broker says."""

    def __init__(self, nc: nats.NATS, errors: list[str]) -> None:
        self.nc = nc
        self.errors = errors

    @classmethod
    async def open(cls, url: str, login: Login) -> Session:
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc).lower())

        async def on_event() -> None:
            errors.append("disconnected")

        nc = await nats.connect(
            url,
            nkeys_seed_str=login.seed,
            inbox_prefix=login.inbox_prefix,
            error_cb=on_error,
            disconnected_cb=on_event,
            reconnect_time_wait=0.25,
        )
        return cls(nc, errors)

    async def refused(self, verb: str, subject: str) -> None:
        expected = f'permissions violation for {verb} to "{subject.lower()}"'
        await until(lambda: any(expected in e for e in self.errors), timeout=5)


async def _stream_state(url: str, login: Login) -> tuple[int, list[str], list[str], object]:
    """The stream's last sequence, its consumers, the streams and the stream's configuration."""
    nc = await nats.connect(url, nkeys_seed_str=login.seed)
    try:
        js = nc.jsm()
        info = await js.stream_info(STREAM)
        consumers = sorted(c.name for c in await js.consumers_info(STREAM))
        streams = sorted(s.config.name for s in await js.streams_info())
        return int(info.state.last_seq), consumers, streams, info.config.as_dict()
    finally:
        await nc.close()


async def _presence(url: str, login: Login) -> dict[str, bytes]:
    """What the presence bucket holds, by key (read as the operator)."""
    nc = await nats.connect(url, nkeys_seed_str=login.seed)
    try:
        js = nc.jetstream()
        info = await js.stream_info(PRESENCE, subjects_filter="$KV.SWARMLOG_DEFAULT_PRESENCE.>")
        kv = await js.key_value("SWARMLOG_DEFAULT_PRESENCE")
        found = {}
        for subject in info.state.subjects or {}:
            key = subject.removeprefix("$KV.SWARMLOG_DEFAULT_PRESENCE.")
            with contextlib.suppress(nats.js.errors.KeyNotFoundError):
                found[key] = bytes((await kv.get(key)).value or b"")
        return found
    finally:
        await nc.close()


async def _subjects_after(url: str, login: Login, seq: int) -> list[str]:
    """The subject of every message stored after ``seq``."""
    nc = await nats.connect(url, nkeys_seed_str=login.seed)
    try:
        js = nc.jsm()
        last = int((await js.stream_info(STREAM)).state.last_seq)
        return [str((await js.get_msg(STREAM, n)).subject) for n in range(seq + 1, last + 1)]
    finally:
        await nc.close()


@pytest.mark.parametrize("holder", HOLDERS, ids=[h.agent_id for h in HOLDERS])
def test_every_credential_is_refused_outside_its_permissions(issued: Cli, holder: Holder) -> None:
    settings = issued.settings()
    url = resolve_url(settings)
    keys = KeyStore(settings.keys_dir)
    operator = keys.login()

    async def go() -> None:
        before = await _stream_state(url, operator)
        session = await Session.open(url, keys.login(holder.agent_id))
        try:
            # Requests, as a client of the API would make them: refused, so never answered.
            refused = holder.refused_publishes()
            answers = await asyncio.gather(
                *(session.nc.request(s, b"{}", timeout=1.0) for s in refused),
                return_exceptions=True,
            )
            assert all(isinstance(a, nats.errors.TimeoutError) for a in answers), answers
            for subject in refused:
                await session.refused("publish", subject)
            for subject in holder.refused_subscriptions:
                await session.nc.subscribe(subject)
                await session.refused("subscription", subject)
            # What the role needs still works: it reads the stream's state through the API as
            # its account has it. (Nothing is written under its prefix: for a system role that
            # is the running daemon's own chain.)
            login = keys.login(holder.agent_id)
            options = {"prefix": login.api_prefix} if login.api_prefix else {}
            info = await session.nc.jetstream(**options).stream_info(STREAM)
            assert info.config.name == STREAM
        finally:
            await session.nc.close()
        after = await _stream_state(url, operator)
        # Nothing the refused calls tried is there: the same consumers, streams and stream
        # configuration, and of the messages stored meanwhile none is under a refused subject.
        assert after[1:] == before[1:]
        stored = await _subjects_after(url, operator, before[0])
        own = [s for s in stored if s.startswith(f"swarmlog.default.{holder.agent_id}.")]
        # (a system role's login is also its running daemon's, which beats off the log now)
        assert own == [], own
        assert not set(stored) & set(holder.refused_publishes())
        presence = await _presence(url, operator)
        assert "nobody-yet" not in presence  # no key was made for anyone by anyone else
        assert presence.get(holder.other_agent) != b"{}"  # nor overwritten
        system = ("router-1", "conductor-1", "watchdog-1")
        assert all(s.split(".")[2] in (holder.agent_id, *system) for s in stored), stored

    asyncio.run(go())


def test_a_killed_agent_is_cut_off_at_the_broker(issued: Cli) -> None:
    settings = issued.settings()
    url = resolve_url(settings)
    login = KeyStore(settings.keys_dir).login("worker-1")

    async def connected() -> Session:
        return await Session.open(url, login)

    async def go() -> None:
        session = await connected()
        try:
            out = issued("kill", "worker-1", "--reason", "compromised")
            assert out.returncode == 0, out.stderr
            # The connection it had is closed by the server the moment the kill returns...
            await until(lambda: "disconnected" in session.errors, timeout=5)
            await until(lambda: any("authorization violation" in e for e in session.errors), 5)
            assert not session.nc.is_connected
        finally:
            await session.nc.close()
        # ...and a new one is refused, with a clear reason.
        with pytest.raises(BusError, match="refused the login of worker-1"):
            await connect(url, login=login, timeout=3)
        # Other logins are untouched.
        other = await connect(url, login=KeyStore(settings.keys_dir).login("scout-1"))
        await other.close()

        out = issued("revive", "worker-1")
        assert out.returncode == 0, out.stderr
        revived = await connect(url, login=login)
        await revived.close()

    asyncio.run(go())


def test_agents_issued_at_the_same_time_may_all_log_in(issued: Cli) -> None:
    """Concurrent `keys issue` processes each rewrite the authorization: none loses another's."""
    from concurrent.futures import ThreadPoolExecutor

    names = [f"crowd-{i}" for i in range(6)]
    with ThreadPoolExecutor(len(names)) as pool:
        outs = list(pool.map(lambda n: issued("keys", "issue", "crowd", "--agent-id", n), names))
    assert all(o.returncode == 0 for o in outs), [o.stderr for o in outs]
    settings = issued.settings()
    url = resolve_url(settings)

    async def each_logs_in() -> None:
        for name in names:
            nc = await connect(url, login=KeyStore(settings.keys_dir).login(name), timeout=3)
            await nc.close()

    asyncio.run(each_logs_in())


def test_an_unknown_key_is_refused(issued: Cli) -> None:
    settings = issued.settings()
    url = resolve_url(settings)
    from swarmlog.bus.permissions import login_for

    with pytest.raises(BusError, match="refused the login"):
        asyncio.run(connect(url, login=login_for("stranger", bytes(32)), timeout=3))
    # No login at all is refused too: the server admits only the logins it was given.
    with pytest.raises(BusError, match="refused the login"):
        asyncio.run(connect(url, timeout=3))


def test_an_external_agent_works_from_its_own_account(issued: Cli) -> None:
    """An external agent logs in to an account of its own, which holds no stream and sees only
    what is exported to it, yet takes its work, answers it and follows the kill switches."""
    out = issued(
        "agent",
        "start",
        "examples.echo:Echo",
        "--name",
        "outside",
        "--trust",
        "external",
        "--detach",
    )
    assert out.returncode == 0, out.stderr
    authorization = (issued.data / "nats" / "authorization.conf").read_text()
    own = authorization[authorization.index('"AGENT_outside-1": {') :]
    assert "# outside-1" in own.split("\n  }")[0]
    assert "# outside-1" not in authorization[: authorization.index('"AGENT_outside-1": {')]

    done = issued("submit", "pipeline", "--stage", "text", "--data", "hi", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "succeeded"
    assert result["result"] == {"echo": "HI", "by": "outside-1"}
    # Its events are applied, not quarantined: signed, permitted, in order.
    rows = issued.rows("SELECT count(*) AS n FROM quarantine WHERE sender = 'outside-1'")
    assert rows == [{"n": 0}]

    # Its login cannot reach the streams' account directly: the stream API it would use there
    # does not exist in its own account.
    settings = issued.settings()
    login = KeyStore(settings.keys_dir).login("outside-1")

    async def probe() -> None:
        session = await Session.open(resolve_url(settings), login)
        try:
            with pytest.raises(nats.errors.Error):
                await session.nc.request(f"$JS.API.STREAM.INFO.{STREAM}", b"", timeout=1.0)
        finally:
            await session.nc.close()

    asyncio.run(probe())

    out = issued("kill", "outside-1", "--reason", "compromised")
    assert out.returncode == 0, out.stderr
    assert "# outside-1" not in (issued.data / "nats" / "authorization.conf").read_text()


def test_no_agent_logs_in_to_the_streams_account(issued: Cli) -> None:
    """The account that owns the streams has one login, the operator's; each agent has its own
    account (so no reply subject of an agent's can reach the streams' JetStream API)."""
    authorization = (issued.data / "nats" / "authorization.conf").read_text()
    owner = authorization[authorization.index("SWARMLOG: {") :].split("\n  }")[0]
    logins = [line.strip() for line in owner.splitlines() if line.strip().startswith("# ")]
    assert logins == ["# operator"]
    for agent in ("worker-1", "scout-1", "router-1", "conductor-1", "watchdog-1"):
        assert f'"AGENT_{agent}": {{' in authorization


def test_one_agents_event_rings_the_doorbell_of_another_and_no_agent_can_ring_one(
    issued: Cli,
) -> None:
    """An agent's event reaches another agent's doorbell (nats-server hands nothing that came in
    through one account's import on to another's, so the bells ring on the stream's republish,
    after the store); and no agent may publish on a bell subject itself (a forged ring)."""
    settings = issued.settings()
    out = issued("keys", "issue", "asker", "--agent-id", "asker-1")
    assert out.returncode == 0, out.stderr
    keys = KeyStore(settings.keys_dir)

    async def go() -> list[str]:
        async with (
            open_log(settings, agent_id="worker-1") as worker,
            open_log(settings, agent_id="asker-1") as asker,
        ):
            bell = await worker.doorbell(inbox_filter(settings.namespace, "worker-1"))
            await worker.client.flush()
            question = ClarificationRequest(request_id="q-bell", to="worker-1", question="?")
            sent = await Publisher(asker, keys.agent_identity("asker-1"), "default").publish(
                question
            )
            heard: list[str] = []
            deadline = asyncio.get_running_loop().time() + 10
            while sent.subject not in heard:
                assert asyncio.get_running_loop().time() < deadline, heard
                heard += await bell.wait(1.0)
            await bell.close()

            session = await Session.open(resolve_url(settings), keys.login("worker-1"))
            try:
                forged = f"{bell_prefix('default')}.asker-1.work.worker.critical.t-forged"
                await session.nc.publish(forged, b"")
                await session.refused("publish", forged)
            finally:
                await session.nc.close()
            return heard

    assert asyncio.run(go())
