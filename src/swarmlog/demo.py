"""``swarmlog demo``: the signed log end to end on the embedded server, offline, in a temp dir.

It starts a nats-server, issues credentials to three agents, plays a small research workflow as
signed events, slips in a forged event, lets the projector fold everything into DuckDB, prints
query results, then audits the log and checks that a replay reproduces the live state hash.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import nats
from rich.console import Console

from swarmlog.bus.jetstream import JetStreamLog
from swarmlog.bus.server import EmbeddedServer
from swarmlog.bus.subjects import subject_for
from swarmlog.projections.projector import BatchResult, Projector
from swarmlog.projections.query import run_query
from swarmlog.projections.store import ProjectionStore
from swarmlog.publisher import Publisher
from swarmlog.render import print_table
from swarmlog.schemas.credentials import Credential
from swarmlog.schemas.payloads import (
    AgentRegistered,
    ClarificationRequest,
    ClarificationResponse,
    Payload,
    Result,
    TaskAssignment,
    TaskStarted,
    TokenUsage,
    WorkflowCompleted,
    WorkflowPlanned,
    WorkflowSubmitted,
)
from swarmlog.schemas.signing import ChainHead, Identity, issue_credential, seal

__all__ = ["run_demo"]

NAMESPACE = "demo"
_AGENTS = {
    "planner": ("planner", ["plan"]),
    "researcher": ("researcher", ["search", "summarise"]),
    "writer": ("writer", ["write"]),
}
_QUERIES = {
    "tasks": "SELECT task_id, role, status, completed_by, output FROM tasks ORDER BY task_id",
    "workflows": "SELECT workflow_id, pattern, status, plan_version, result FROM workflows",
    "token budgets": "SELECT scope, scope_id, used_tokens FROM budgets ORDER BY scope, scope_id",
    "quarantine": "SELECT seq, reason, sender, detail FROM quarantine",
}


async def _workflow(publishers: dict[str, Publisher]) -> None:
    ops = publishers["operator"]
    wf: dict[str, Any] = {"workflow_id": "wf-report"}
    question = "Which projection tables does swarmlog keep?"
    await ops.publish(WorkflowSubmitted(pattern="custom", input={"question": question}), **wf)
    plan = {"nodes": ["t-research", "t-write"], "edges": [["t-research", "t-write"]]}
    await publishers["planner"].publish(WorkflowPlanned(version=1, plan=plan), **wf)
    for task, role in (("t-research", "researcher"), ("t-write", "writer")):
        await publishers["planner"].publish(
            TaskAssignment(task_id=task, role=role, input={"question": question}), **wf
        )
    steps: list[tuple[str, Payload]] = [
        ("researcher", TaskStarted(task_id="t-research")),
        (
            "researcher",
            ClarificationRequest(
                request_id="q1", to="planner", question="Include snapshots?", task_id="t-research"
            ),
        ),
        (
            "planner",
            ClarificationResponse(
                request_id="q1", to="researcher", answer="No", task_id="t-research"
            ),
        ),
        (
            "researcher",
            Result(
                task_id="t-research",
                output=["events", "agents", "tasks", "workflows", "quarantine"],
                usage=TokenUsage(model="offline", prompt_tokens=120, completion_tokens=40),
            ),
        ),
        ("writer", TaskStarted(task_id="t-write")),
        (
            "writer",
            Result(
                task_id="t-write",
                output="swarmlog projects events, agents, tasks, workflows and quarantine.",
                usage=TokenUsage(model="offline", prompt_tokens=80, completion_tokens=30),
            ),
        ),
    ]
    for who, payload in steps:
        await publishers[who].publish(payload, **wf)
    await ops.publish(WorkflowCompleted(status="succeeded", result="report written"), **wf)


async def _forge(url: str) -> None:
    """An attacker with raw stream access and no key claims to be the writer."""
    mallory = Identity.from_seed("writer", os.urandom(32))
    forged = seal(
        mallory,
        ChainHead(9, "0" * 64),
        Result(task_id="t-write", output="all your base"),
        now_ns=time.time_ns(),
        entropy=os.urandom(10),
        workflow_id="wf-report",
    )
    nc = await nats.connect(url)
    try:
        await nc.jetstream().publish(subject_for(NAMESPACE, forged.envelope), forged.data)
    finally:
        await nc.close()


async def _run(root: Path, console: Console) -> int:
    server = EmbeddedServer(root / "nats")
    url = server.start()
    console.print(f"[bold]1.[/] nats-server with JetStream at {url} (store {root / 'nats'})")
    try:
        log = await JetStreamLog.open(url, NAMESPACE, provision=True)
        try:
            return await _play(log, url, root, console)
        finally:
            await log.close()
    finally:
        server.stop()
        console.print("[bold]7.[/] stopped the server; everything was in", root)


async def _play(log: JetStreamLog, url: str, root: Path, console: Console) -> int:
    operator = Identity.from_seed("operator", os.urandom(32))
    store = ProjectionStore(root / "projection.duckdb")
    projector = Projector(log, store, namespace=NAMESPACE, operator_key=operator.public_key)
    stop = asyncio.Event()
    caught_up = asyncio.Event()
    folded = 0
    target = 0

    def on_batch(result: BatchResult) -> None:
        nonlocal folded
        folded = result.last_seq
        if target and folded >= target:
            caught_up.set()

    runner = asyncio.create_task(projector.run(follow=True, stop=stop, on_batch=on_batch))
    publishers = {"operator": Publisher(log, operator, NAMESPACE)}
    for agent_id, (role, caps) in _AGENTS.items():
        identity = Identity.from_seed(agent_id, os.urandom(32))
        credential = Credential(
            agent_id=agent_id,
            role=role,
            public_key=identity.public_key,
            issuer=operator.public_key,
            issued_at=time.time_ns(),
            capabilities=caps,
        )
        await publishers["operator"].publish(issue_credential(operator, credential))
        publishers[agent_id] = Publisher(log, identity, NAMESPACE)
        await publishers[agent_id].publish(
            AgentRegistered(agent_id=agent_id, role=role, capabilities=caps, tier="offline")
        )
    console.print("[bold]2.[/] operator key created; credentials issued to", ", ".join(_AGENTS))
    await _workflow(publishers)
    await _forge(url)
    last = target = await log.last_seq()
    console.print(f"[bold]3.[/] {last} signed events on stream {log.stream} (one of them forged)")
    if folded < last:
        await asyncio.wait_for(caught_up.wait(), timeout=60)
    stop.set()
    await runner
    console.print(f"[bold]4.[/] the projector folded them into DuckDB up to seq {folded}")
    cursor = store.cursor()
    for title, sql in _QUERIES.items():
        result = run_query(cursor, sql)
        print_table(console, title, result.columns, result.rows)
    cursor.close()
    live_hash = store.state_hash()
    projector.close()
    store.close()
    audit_store = ProjectionStore(root / "audit.duckdb")
    auditor = Projector(log, audit_store, namespace=NAMESPACE, operator_key=operator.public_key)
    await auditor.run(follow=False)
    auditor.close()
    rejected = audit_store.rows("SELECT seq, reason FROM quarantine")
    replay_hash = audit_store.state_hash()
    audit_store.close()
    console.print(
        f"[bold]5.[/] audit: {last - len(rejected)} valid, rejected {rejected}"
        " (the forgery, never applied)"
    )
    matches = replay_hash == live_hash
    console.print(
        f"[bold]6.[/] replay from the stream gives state hash {replay_hash[:16]}…,"
        f" {'the same as' if matches else 'DIFFERENT from'} the live projection"
    )
    return 0 if matches and len(rejected) == 1 else 1


def run_demo(console: Console, keep: Path | None = None) -> int:
    """Run the demo; returns the exit code (0 when everything checked out)."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        return asyncio.run(_run(keep, console))
    with tempfile.TemporaryDirectory(prefix="swarmlog-demo-") as tmp:
        return asyncio.run(_run(Path(tmp), console))
