"""An auditor's login: a key made on the auditor's machine, which the operator vouches for
without ever holding its secret, that reads the stream to verify it and may do nothing else.

The auditor's data dir holds its own key and ``operator.pub``, nothing more; it verifies the
live stream as the operator does, and, run as a hostile process against the real server, its
login is refused every publish (its own prefix too), every service and every bucket."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clikit import Cli, running
from hostile import attack

from swarmlog.control.system import resolve_url

pytestmark = pytest.mark.e2e

REFUSED = [
    "swarmlog.default.auditor-1.agent.auditor-1.agent_registered",  # its own prefix
    "swarmlog.default.w1.task.t1.result",  # another agent's
    "swarmlog.default.operator.ctl.agent_killed",
    "_swarmlog.default.rpc.query",
    "_swarmlog.default.rpc.wait",
    "$KV.SWARMLOG_DEFAULT_CACHE.planted",
    "$KV.SWARMLOG_DEFAULT_FLAGS.all",
    "$KV.SWARMLOG_DEFAULT_PRESENCE.auditor-1",
    "$JS.EXT.API.CONSUMER.CREATE.SWARMLOG_DEFAULT",
    "$JS.EXT.API.STREAM.MSG.GET.SWARMLOG_DEFAULT",
    "$JS.EXT.API.STREAM.DELETE.SWARMLOG_DEFAULT",
    "$JS.API.STREAM.INFO.SWARMLOG_DEFAULT",  # the API is reached where its account imports it
]

PROBE = """
async def main(me):
    from swarmlog.bus.jetstream.connection import refusals

    refused = await refusals(me.url, me.login, REFUSED)
    # What it may do: read the stream, a batch at a time, by direct get.
    nc = await me.connect()
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    request = json.dumps({"seq": 1, "batch": 2}).encode()
    await nc.publish("$JS.EXT.API.DIRECT.GET.SWARMLOG_DEFAULT", request, reply=inbox)
    seqs = []
    while True:
        msg = await sub.next_msg(timeout=10)
        if msg.headers.get("Status"):
            break
        seqs.append(int(msg.headers["Nats-Sequence"]))
    # Hearing the live stream is refused too (a subscription's refusal comes as an error).
    await nc.subscribe("swarmlog.default.>")
    await nc.flush()
    for _ in range(50):
        if any("subscription" in e for e in me.errors):
            break
        await asyncio.sleep(0.05)
    await nc.close()
    return {"refused": refused, "read": seqs, "errors": me.errors}
""".replace("REFUSED", repr(REFUSED))


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cli, Cli]]:
    """A running system with a writer's events on it, and an auditor's own data dir (only its
    key and the operator's public key) whose key the operator has issued as ``auditor-1``."""
    base = tmp_path_factory.mktemp("auditor")
    with running(base / "data") as cli:
        assert cli("keys", "issue", "writer", "--agent-id", "w1").returncode == 0
        for task in ("t1", "t2"):
            payload = json.dumps({"task_id": task, "output": "hi"})
            out = cli("events", "publish", "result", "--as", "w1", "--payload", payload)
            assert out.returncode == 0, out.stderr
        auditor = Cli(base / "auditor")
        auditor.env["SWARMLOG_NATS_URL"] = resolve_url(cli.settings())
        made = auditor("keys", "generate", "--agent-id", "auditor-1", "--json")
        assert made.returncode == 0, made.stderr
        keys = json.loads(made.stdout)
        issued = cli(
            "keys", "issue", "--role", "auditor", "--agent-id", "auditor-1",
            "--public-key", keys["public_key"], "--login-key", keys["login_key"],
        )  # fmt: skip
        assert issued.returncode == 0, issued.stderr
        shutil.copy(cli.data / "keys" / "operator.pub", auditor.data / "keys" / "operator.pub")
        yield cli, auditor


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _verdict(out: Any) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(out.stdout)
    return report


def test_an_auditor_verifies_the_stream_with_its_own_key_and_the_operator_key_alone(
    system: tuple[Cli, Cli],
) -> None:
    cli, auditor = system
    assert _files(auditor.data) == ["keys/agents/auditor-1.seed", "keys/operator.pub"]
    assert (auditor.data / "keys/agents/auditor-1.seed").stat().st_mode & 0o777 == 0o600
    # The operator holds the credential and the login's public key, never the secret.
    held = _files(cli.data / "keys" / "agents")
    assert "auditor-1.cred" in held
    assert "auditor-1.login" in held
    assert "auditor-1.seed" not in held

    theirs = auditor("audit", "verify", "--as", "auditor-1", "--json")
    ours = cli("audit", "verify", "--json")
    assert theirs.returncode == ours.returncode, theirs.stderr
    assert _verdict(theirs) == _verdict(ours)
    report = _verdict(theirs)
    assert report["events_checked"] == report["stream_chain"]["position"] > 3
    # The writer's results name tasks never offered: both readers quarantine them alike.
    assert [r["reason"] for r in report["rejected"]] == ["not_permitted", "not_permitted"]

    # A checkpoint the operator signed and handed over is checked with operator.pub alone.
    checkpoint = auditor.data / "checkpoint.json"
    assert cli("audit", "checkpoint", "--out", str(checkpoint)).returncode == 0
    against = auditor(
        "audit", "verify", "--as", "auditor-1", "--against", str(checkpoint), "--json"
    )
    assert _verdict(against)["checkpoint"]["matches"] is True


def test_without_its_key_the_auditor_is_told_what_is_missing(system: tuple[Cli, Cli]) -> None:
    _, auditor = system
    out = auditor("audit", "verify", "--as", "auditor-2", "--json")
    assert out.returncode != 0
    assert "no key for auditor 'auditor-2'" in out.stderr
    assert "swarmlog keys generate --agent-id auditor-2" in out.stderr
    assert out.stdout == ""


def test_the_auditor_login_is_refused_every_publish_service_and_bucket(
    system: tuple[Cli, Cli],
) -> None:
    cli, auditor = system
    before = _verdict(cli("audit", "verify", "--json"))["stream_chain"]["position"]
    seen = attack(cli, "auditor-1", PROBE, keys_dir=auditor.data / "keys")
    assert sorted(seen["refused"]) == sorted(REFUSED)
    assert seen["read"] == [1, 2]
    assert any('subscription to "swarmlog.default.>"' in e for e in seen["errors"])
    # Nothing reached the stream.
    after = _verdict(cli("audit", "verify", "--json"))["stream_chain"]["position"]
    assert after == before
