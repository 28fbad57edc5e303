"""Attack: poison another role's result cache.

Cache keys are computable by anyone with the code, and internal agents may write the cache
bucket. A hostile ``writer`` plants entries under the keys of tasks meant for ``summarizer``
(the example summarizer, a real daemon with its cache on): garbage, a pointer to a result the
writer signed itself, the old unsigned form with the text in it, and a pointer to an honest
summarizer result of *another* input. The summarizer must answer each of those tasks with its
own honest output (computed, not cached), log why it ignored the entry, and still answer a
repeated task from its own cache entry.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec
from clikit import Cli
from hostile import attack

from swarmlog.agents.llm import model_from_env
from swarmlog.agents.policy.resultcache import cache_key
from swarmlog.control.keystore import KeyStore
from swarmlog.control.system import open_log
from swarmlog.schemas.payloads import CredentialIssued, TaskAssignment
from waiting import wait_until

PLANTED = "PLANTED BY WRITER"

_PLANT = """
import time
import msgspec
from swarmlog.bus.jetstream import JetStreamLog
from swarmlog.agents.publisher import Publisher
from swarmlog.schemas.payloads import Result

KEYS = {keys!r}
CREDENTIALS = {credentials!r}
HONEST_SEQ = {honest_seq!r}
PLANTED = {planted!r}

def pointer(seq, credential):
    return json.dumps({{"seq": seq, "credential": credential}}).encode()

async def main(me):
    log = await JetStreamLog.open(me.url, me.namespace, login=me.login)
    fields = {{"task_id": "w-forged", "output": {{"summary": PLANTED}}}}
    if "cache_key" in Result.__struct_fields__:  # bind it to the victim's key, as it would
        fields["cache_key"] = KEYS["own_signed"]
    mine = await Publisher(log, me.identity, me.namespace).publish(Result(**fields))
    await log.close()
    nc = await me.connect()
    bucket = "$KV.SWARMLOG_" + me.namespace.upper() + "_CACHE."
    entries = {{
        "garbage": b"\\x00\\xffnot an entry",
        "own_signed": pointer(mine.seq, CREDENTIALS["writer"]),
        "unsigned": json.dumps(
            {{"output": {{"summary": PLANTED}}, "at": time.time_ns(), "model": "small"}}
        ).encode(),
        "other_input": pointer(HONEST_SEQ, CREDENTIALS["summarizer"]),
    }}
    stored = {{}}
    for name, value in entries.items():
        try:
            ack = await nc.request(bucket + KEYS[name], value, timeout=2)
            stored[name] = b"error" not in ack.data
        except Exception:  # refused by the broker: no answer
            stored[name] = False
    await nc.close()
    return {{"stored": stored, "entries": {{k: v.hex() for k, v in entries.items()}},
             "errors": me.errors}}
"""


def document(name: str) -> dict[str, Any]:
    text = f"{name} is about caches. Caches answer again what was asked before. {name} ends."
    return {name: {"title": name, "text": text, "words": len(text.split())}}


def task(task_id: str, name: str) -> TaskAssignment:
    return TaskAssignment(task_id=task_id, role="summarizer", input=document(name))


def results(cli: Cli, ids: list[str]) -> dict[str, dict[str, Any]]:
    listed = ", ".join(f"'{i}'" for i in ids)
    rows = cli.rows(
        f"SELECT task_id, output, cached, completed_by FROM tasks WHERE task_id IN ({listed})"
        " AND status = 'succeeded'"
    )
    return {r["task_id"]: r for r in rows}


def wait_for_results(cli: Cli, ids: list[str]) -> dict[str, dict[str, Any]]:
    wait_until(lambda: len(results(cli, ids)) == len(ids), timeout=30, poll=0.2)
    return results(cli, ids)


def test_a_planted_cache_entry_is_never_served(cli: Cli) -> None:
    issued = cli("keys", "issue", "writer", "--agent-id", "writer-1")
    assert issued.returncode == 0, issued.stderr
    started = cli("agent", "start", "examples.report:Summarizer", "--detach")
    assert started.returncode == 0, started.stderr
    # An honest result first: the hostile agent will point another key at it.
    cli.submit([task("honest", "alpha")])
    wait_for_results(cli, ["honest"])
    (honest,) = cli.rows(
        "SELECT seq FROM events WHERE type = 'result' AND sender = 'summarizer-1'"
        " AND payload LIKE '%\"honest\"%'"
    )
    model = model_from_env("small").name  # the attacker computes keys as swarmlog does
    names = {
        "garbage": "bravo",
        "own_signed": "charlie",
        "unsigned": "delta",
        "other_input": "echo",
    }
    keys = {v: cache_key("summarizer", model, document(n)) for v, n in names.items()}
    store = KeyStore(cli.settings().keys_dir)
    public = {  # public credentials (the .cred files; credential_issued events on the log)
        who: json.loads(msgspec.json.encode(_issued(store.agent_paths(agent)[1].read_bytes())))
        for who, agent in (("writer", "writer-1"), ("summarizer", "summarizer-1"))
    }
    planted = attack(
        cli,
        "writer-1",
        _PLANT.format(keys=keys, credentials=public, honest_seq=honest["seq"], planted=PLANTED),
    )
    # The broker refuses a write under another role's keys...
    assert planted["stored"] == dict.fromkeys(names, False), planted
    assert all("permissions violation" in e.lower() for e in planted["errors"]), planted
    # ...and an entry that got there anyway (a server without swarmlog's permissions, say) is
    # never served: plant the same entries as the operator.
    plant_as_operator(cli, {keys[n]: bytes.fromhex(v) for n, v in planted["entries"].items()})

    cli.submit([task(variant, name) for variant, name in names.items()])
    got = wait_for_results(cli, list(names))
    for variant, name in names.items():
        row = got[variant]
        output = json.loads(row["output"])
        assert PLANTED not in row["output"], (variant, row)
        assert output["title"] == name, (variant, row)  # its own summary of its own input
        assert (row["cached"], row["completed_by"]) == (False, "summarizer-1"), (variant, row)
    logs = cli("agent", "logs", "summarizer-1")
    assert logs.stdout.count("ignored cache entry") == len(names), logs.stdout

    # The honest entries it wrote still answer: the cache works, only forgeries are refused.
    cli.submit([task("again", "delta")])
    again = wait_for_results(cli, ["again"])["again"]
    assert again["cached"] is True
    assert json.loads(again["output"]) == json.loads(got["unsigned"]["output"])


def plant_as_operator(cli: Cli, entries: dict[str, bytes]) -> None:
    async def go() -> None:
        async with open_log(cli.settings()) as log:
            cache = await log.cache()
            for key, value in entries.items():
                await cache.put(key, value)

    asyncio.run(go())


def _issued(cred_file: bytes) -> CredentialIssued:
    return msgspec.msgpack.decode(cred_file, type=CredentialIssued)
