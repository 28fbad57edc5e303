"""A model call's answer that names no workflow. Its call holds tokens of its workflow's
budget; the answer gives them back. The projector preloaded only the budget of the workflow
the envelope names (the sender's say), so after a restart (nothing kept from earlier batches)
it folded the call's workflow's budget as a fresh row and wrote it over the stored one: what
the workflow had spent was gone, and its budget with it.

Run as a hostile process holding a task in a budgeted workflow, across a real restart: the
workflow's budget keeps what it spent, and a replay agrees."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from clikit import Cli, running
from hostile import attack

from swarmlog.schemas.payloads import TaskAssignment, WorkflowSubmitted
from waiting import wait_until

pytestmark = pytest.mark.e2e

CALLS = """
async def main(me):
    import json, os
    from swarmlog.agents.publisher import Publisher
    from swarmlog.bus.jetstream import JetStreamLog
    from swarmlog.schemas.payloads import (
        ModelCallCompleted, ModelCallRequested, TokenUsage, model_call_id,
    )

    log = await JetStreamLog.open(me.url, me.namespace, login=me.login)
    try:
        publisher = Publisher(log, me.identity, me.namespace)
        seqs = []
        for step in json.loads(os.environ["ATTACK_PLAN"]):
            call = {"task_id": "t1", "call_index": step["index"], "model": "offline",
                    "call_id": model_call_id("t1", step["index"])}
            if step["kind"] == "request":
                payload = ModelCallRequested(**call, digest="a1" * 32,
                                             reserved_tokens=step["reserved"])
            else:
                usage = TokenUsage(model="offline", prompt_tokens=12, completion_tokens=3)
                payload = ModelCallCompleted(**call, status="ok", usage=usage)
            fields = {"workflow_id": step["workflow"]} if step.get("workflow") else {}
            seqs.append((await publisher.publish(payload, **fields)).seq)
        return seqs
    finally:
        await log.close()
"""


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    with running(tmp_path_factory.mktemp("budgetwipe") / "data") as cli:
        assert cli("keys", "issue", "writer", "--agent-id", "mallory-1").returncode == 0
        yield cli


def _calls(cli: Cli, monkeypatch: pytest.MonkeyPatch, *steps: dict[str, object]) -> list[int]:
    monkeypatch.setenv("ATTACK_PLAN", json.dumps(steps))
    seqs: list[int] = attack(cli, "mallory-1", CALLS)
    return seqs


def _judged(cli: Cli, seq: int) -> bool:
    return (
        cli.rows(
            f"SELECT seq FROM events WHERE seq = {seq}"
            f" UNION ALL SELECT seq FROM quarantine WHERE seq = {seq}"
        )
        != []
    )


def _budget(cli: Cli) -> list[dict[str, object]]:
    return cli.rows(
        "SELECT used_tokens, reserved_tokens FROM budgets"
        " WHERE scope = 'workflow' AND scope_id = 'wf1'"
    )


def test_an_answer_naming_no_workflow_leaves_its_workflows_budget_whole(
    system: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = system
    wf = {"workflow_id": "wf1"}
    cli.submit_payloads([WorkflowSubmitted(pattern="custom", budget_tokens=1_000)], **wf)
    cli.submit_payloads([TaskAssignment(task_id="t1", role="writer")], **wf)  # mallory holds t1
    wait_until(lambda: cli.rows("SELECT 1 FROM tasks WHERE task_id = 't1'") != [], 20)
    seqs = _calls(
        cli,
        monkeypatch,
        {"kind": "request", "index": 1, "reserved": 0, "workflow": "wf1"},
        {"kind": "answer", "index": 1, "workflow": "wf1"},  # the workflow spends 15
        {"kind": "request", "index": 2, "reserved": 100, "workflow": "wf1"},  # holds 100
    )
    wait_until(lambda: _judged(cli, seqs[-1]), 20)
    assert cli.rows("SELECT count(*) AS n FROM quarantine") == [{"n": 0}]
    assert _budget(cli) == [{"used_tokens": 15, "reserved_tokens": 100}]
    # A new projector: it starts with nothing kept from the batches before.
    assert cli("down").returncode == 0
    assert cli("up", "--detach").returncode == 0
    (answer,) = _calls(cli, monkeypatch, {"kind": "answer", "index": 2})  # no workflow named
    wait_until(lambda: _judged(cli, answer), 20)
    # Its 100 given back, what the workflow spent kept (the answer charged only its agent).
    assert _budget(cli) == [{"used_tokens": 15, "reserved_tokens": 0}]
    check = json.loads(cli("replay", "--check", "--json").stdout)
    assert check["matches"] is True
