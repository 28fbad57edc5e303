"""Attack: pass for another replica, or fake one's own liveness, in the presence bucket.

Readers (the router, the watchdog, ``swarmlog agents``) judge who is live and how loaded from
the presence bucket, so a hostile agent would like to write there for others. ``mallory-1``, an
internal writer with a key of its own, run as a separate process against the real server:

1. puts a value under ``router-1``'s key: the broker refuses it (no such import for mallory),
   and router-1's own value is untouched;
2. copies router-1's genuine, signed value (internal agents may read the bucket) under its own
   key: readers refuse it (``wrong_key``), router-1 still counts as itself only;
3. puts a value naming itself, signed by a key the operator never issued: ``wrong_signer``;
4. puts a genuine value of its own, then an older genuine one again: the reader that saw the
   newer one refuses the older (``replayed``); to a reader that did not, one dated an hour ago
   is authentic but stale, so it never makes mallory live.
"""

from __future__ import annotations

import asyncio

from clikit import Cli
from hostile import Running

from swarmlog.control.client import Client
from swarmlog.control.records import AgentRow
from waiting import eventually

_ATTACK = """
import time
from nacl.signing import SigningKey
from swarmlog.schemas.presence import Presence, seal_presence
from swarmlog.schemas.signing import Identity

BUCKET = "$KV.SWARMLOG_" + "{ns}".upper() + "_PRESENCE."

def value(me, *, at, signer=None):
    return Presence(namespace=me.namespace, agent_id=me.agent_id, role="writer",
                    signer=signer or me.identity.public_key, at=at, seq=1)

async def put(nc, key, data):
    try:
        ack = await nc.request(BUCKET + key, data, timeout=2)
        return b"error" not in ack.data
    except Exception:  # refused by the broker: no answer
        return False

async def main(me):
    nc = await me.connect()
    js = nc.jetstream(prefix="$JS.EXT.API")
    said = {{}}
    # 1. another replica's key
    said["others_key"] = await put(nc, "router-1", b"I am router-1, and idle")
    # 2. another replica's genuine value, under its own key
    genuine = await js.get_msg("KV_SWARMLOG_" + "{ns}".upper() + "_PRESENCE",
                               subject=BUCKET + "router-1")
    said["copied"] = await put(nc, me.agent_id, genuine.data)
    print(json.dumps({{"step": "copied"}}), flush=True)
    await heard()
    # 3. its own name, a key nobody issued
    stranger = Identity(me.agent_id, SigningKey.generate())
    forged = seal_presence(stranger, value(me, at=time.time_ns(), signer=stranger.public_key))
    said["stranger"] = await put(nc, me.agent_id, forged)
    print(json.dumps({{"step": "stranger"}}), flush=True)
    await heard()
    # 4. its own genuine values: a fresh one, then an older one put again, then a stale one
    now = time.time_ns()
    said["fresh"] = await put(nc, me.agent_id, seal_presence(me.identity, value(me, at=now)))
    print(json.dumps({{"step": "fresh"}}), flush=True)
    await heard()
    older = seal_presence(me.identity, value(me, at=now - 5 * 10**9))
    said["older"] = await put(nc, me.agent_id, older)
    print(json.dumps({{"step": "older"}}), flush=True)
    await heard()
    stale = seal_presence(me.identity, value(me, at=now - 3600 * 10**9))
    said["stale"] = await put(nc, me.agent_id, stale)
    await nc.close()
    return {{"stored": said, "errors": me.errors}}
"""


def test_presence_cannot_be_put_for_another_nor_forged_nor_replayed(cli: Cli) -> None:
    issued = cli("keys", "issue", "writer", "--agent-id", "mallory-1")
    assert issued.returncode == 0, issued.stderr

    async def go() -> dict[str, object]:
        async with await Client.connect(cli.settings()) as client:

            async def rows() -> dict[str, AgentRow]:
                return {r.agent_id: r for r in await client.agents()}

            async def shows(presence: str) -> bool:
                found = await rows()
                # router-1 counts as itself only, whatever mallory put
                assert found["router-1"].presence == "fresh", found["router-1"]
                return found["mallory-1"].presence == presence

            async def started() -> bool:  # router-1 is up and present (it may take a while)
                found = await rows()
                return found["router-1"].presence == "fresh" and found["mallory-1"].presence == ""

            await eventually(started, 30)
            attack = Running(cli, "mallory-1", _ATTACK.format(ns=cli.settings().namespace))
            for step, presence in (
                ("copied", "refused: wrong_key"),
                ("stranger", "refused: wrong_signer"),
                ("fresh", "fresh"),
                ("older", "refused: replayed"),
            ):
                assert await asyncio.to_thread(attack.said, "step") == step
                await eventually(lambda p=presence: shows(p), 10)
                attack.tell("go on")
            result: dict[str, object] = await asyncio.to_thread(attack.result)
        # A reader that never saw the newer value: the hour-old one is authentic, and stale.
        async with await Client.connect(cli.settings()) as client:
            mallory = {r.agent_id: r for r in await client.agents()}["mallory-1"]
            assert mallory.presence == "stale"
            assert mallory.status == "issued"  # never registered: presence made it nothing more
        return result

    result = asyncio.run(go())
    stored = result["stored"]
    assert isinstance(stored, dict)
    assert stored["others_key"] is False  # refused at the broker
    # Its own key it may write, whatever it puts there: what the readers make of it is above.
    assert all(stored[k] for k in ("copied", "stranger", "fresh", "older", "stale")), stored
    errors = result["errors"]
    assert isinstance(errors, list)
    assert any('publish to "$kv.swarmlog_default_presence.router-1"' in e for e in errors), errors
