"""Internal-only work stays inside when it moves on (issue 11, item 9).

A task handed over to a ``fallback_role`` used to be rebuilt without ``internal_only`` and
without the router's trust check: the external replica of the fallback role ran it, and the
subtasks an internal fallback delegated went to an external role. Here, with real daemons on
the real server, neither the task nor its subtasks reach an external replica: the hand-over to a
role with an external replica is escalated instead, and the subtask goes to the internal role
although the external one is cheaper.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from clikit import Cli

from swarmlog.schemas.payloads import TaskAssignment
from waiting import wait_until

pytestmark = pytest.mark.e2e

ROLES = "tests.adversarial.insiders"
SECRET = {"ledger": "the insiders' own figures"}


def start(cli: Cli, name: str, *options: str) -> None:
    out = cli("agent", "start", f"{ROLES}:{name}", "--detach", *options)
    assert out.returncode == 0, out.stderr


def task_events(cli: Cli, *task_ids: str) -> list[dict[str, Any]]:
    listed = ", ".join(f"'{t}'" for t in task_ids)
    return cli.rows(
        "SELECT seq, type, sender, payload FROM events"
        f" WHERE json_extract_string(payload, '$.task_id') IN ({listed}) ORDER BY seq"
    )


def reaching_web(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events that took work to the external role ``web``, or that ``web`` wrote about it."""
    return [
        e
        for e in events
        if e["sender"].startswith("web")
        or (e["type"] == "task_assignment" and json.loads(e["payload"])["role"] == "web")
    ]


def test_internal_work_handed_over_never_reaches_an_external_replica(cli: Cli) -> None:
    internal = ("Keeper", "Vault", "Inner", "Library")
    with ThreadPoolExecutor(5) as starting:  # concurrent starts, as `swarmlog demo` does
        started = [starting.submit(start, cli, name) for name in internal]
        started.append(starting.submit(start, cli, "Web", "--trust", "external"))
        for done in started:
            done.result()
    cli.submit_payloads(
        [
            TaskAssignment(
                task_id=t, role=role, capability="ledger", input=SECRET, internal_only=True
            )
            for t, role in (("kept", "keeper"), ("vaulted", "vault"))
        ],
        workflow_id="insiders",
    )

    def settled() -> bool:
        kinds = {
            (e["type"], json.loads(e["payload"])["task_id"])
            for e in task_events(cli, "kept", "vaulted", "vaulted-d1")
        }
        kept = ("task_escalated", "kept") in kinds or ("result", "kept") in kinds
        return kept and ("result", "vaulted") in kinds

    wait_until(settled, 60)
    kept = task_events(cli, "kept")
    # keeper's fallback has an external replica: a human decides, web never gets it.
    assert reaching_web(kept) == []
    roles = [json.loads(e["payload"])["role"] for e in kept if e["type"] == "task_assignment"]
    assert roles == ["keeper"]
    (escalated,) = [json.loads(e["payload"]) for e in kept if e["type"] == "task_escalated"]
    assert "role web has an external replica" in escalated["reason"]

    # vault's fallback is internal: it gets the task, still internal-only, and so is its subtask.
    vaulted = task_events(cli, "vaulted", "vaulted-d1")
    assert reaching_web(vaulted) == []
    handed = [
        json.loads(e["payload"])
        for e in vaulted
        if e["type"] == "task_assignment" and e["sender"].startswith("vault")
    ]
    assert [(a["role"], a.get("internal_only")) for a in handed] == [("inner", True)]
    (offer,) = [json.loads(e["payload"]) for e in vaulted if e["type"] == "task_offered"]
    assert offer.get("internal_only") is True
    (result,) = [
        json.loads(e["payload"])
        for e in vaulted
        if e["type"] == "result" and json.loads(e["payload"])["task_id"] == "vaulted"
    ]
    assert result["output"]["lookup"]["by"] == "library-1"

    # The escalation desk applies the same rule, and its follow-up stays internal-only too.
    (desk,) = cli.rows("SELECT escalation_id FROM escalations WHERE task_id = 'kept'")
    refused = cli("escalations", "resolve", desk["escalation_id"], "--reassign", "web")
    assert refused.returncode == 2
    assert "role web has an external replica" in refused.stderr
    again = cli("escalations", "resolve", desk["escalation_id"], "--reassign", "inner")
    assert again.returncode == 0, again.stderr

    def kept_done() -> bool:
        return any(e["type"] == "result" for e in task_events(cli, "kept"))

    wait_until(kept_done, 60)
    kept = task_events(cli, "kept", "kept-d1")
    assert reaching_web(kept) == []
    (resolved,) = [
        json.loads(e["payload"])
        for e in kept
        if e["type"] == "task_assignment"
        and e["sender"] == "operator"
        and json.loads(e["payload"])["role"] == "inner"
    ]
    assert (resolved.get("internal_only"), resolved["capability"]) == (True, "ledger")
    (result,) = [
        json.loads(e["payload"])
        for e in kept
        if e["type"] == "result" and json.loads(e["payload"])["task_id"] == "kept"
    ]
    assert result["output"]["lookup"]["by"] == "library-1"
