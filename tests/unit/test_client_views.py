"""The client's views, its "why is it still running" reasons and its submissions, against the
projection's own tables (in an in-memory DuckDB), with no system running."""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pytest

from swarmlog.agents.presence import Beacon, PresenceReader
from swarmlog.agents.publisher import Publisher
from swarmlog.bus.memory import MemoryLog
from swarmlog.config import Settings
from swarmlog.control import records, views
from swarmlog.control.client import Client
from swarmlog.control.submitting import task_offer, workflow_submission
from swarmlog.control.waiting import blocked, look, stalled
from swarmlog.errors import ConfigError
from swarmlog.projections.tables import TABLES
from swarmlog.schemas.payloads import TaskOffered
from swarmlog.schemas.signing import Identity
from swarmlog.schemas.types import Json

S = 1_000_000_000
NOW = 1_000 * S


class Projection:
    """The projection's tables, empty, and a :data:`Query` over them."""

    def __init__(self) -> None:
        self.db = duckdb.connect(":memory:")
        for table in TABLES:
            self.db.execute(table.ddl())

    def add(self, table: str, **row: Any) -> None:
        names = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self.db.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", list(row.values()))

    async def query(self, sql: str) -> list[dict[str, Any]]:
        cursor = self.db.execute(sql)
        columns = [d[0] for d in cursor.description]
        return [dict(zip(columns, r, strict=True)) for r in cursor.fetchall()]

    def agent(self, agent_id: str, role: str, *caps: str, heard: int = NOW) -> None:
        self.add(
            "agents",
            agent_id=agent_id,
            role=role,
            capabilities=json.dumps(list(caps)),
            status="registered",
            last_heartbeat_at=heard,
            in_flight=0,
        )


@pytest.fixture
def p() -> Iterator[Projection]:
    projection = Projection()
    yield projection
    projection.db.close()


def _workflow(p: Projection, wf: str = "wf1", plan_version: int | None = 1) -> None:
    plan = {"steps": [{"id": "a", "capability": "text"}, {"id": "b", "capability": "text",
                                                          "depends_on": ["a"]}]}  # fmt: skip
    p.add(
        "workflows",
        workflow_id=wf,
        pattern="custom",
        status="running",
        input=json.dumps({"plan": plan}),
        plan=json.dumps(plan),
        plan_version=plan_version,
        submitted_at=1,
    )


async def test_records_decode_json_columns_and_show_builds_the_graph(p: Projection) -> None:
    _workflow(p)
    p.add("tasks", task_id="wf1-a", workflow_id="wf1", capability="text", status="succeeded",
          output=json.dumps({"x": 1}), created_at=1, updated_seq=5)  # fmt: skip
    found = await views.show(p.query, "wf1")
    assert isinstance(found, records.WorkflowDetail)
    assert found.workflow.input == {"plan": found.workflow.plan}
    # Nodes are tasks: a step not yet run is the task it will be, pending.
    assert [(n.id, n.kind, n.step, n.status) for n in found.nodes] == [
        ("wf1-a", "step", "a", "succeeded"),
        ("wf1-b", "step", "b", "pending"),
    ]
    assert found.edges == [("wf1-a", "wf1-b")]
    task = await views.task(p.query, "wf1-a")
    assert task is not None
    assert task.output == {"x": 1}
    p.agent("echo-1", "echo", "text")
    (agent,) = await views.agents(p.query)
    assert agent.capabilities == ["text"]
    assert list(msgspec.to_builtins(agent)) == [
        "agent_id", "role", "capabilities", "tier", "trust_level", "status", "in_flight",
        "last_heartbeat_at", "capacity", "presence",
    ]  # fmt: skip
    with pytest.raises(ConfigError, match="no workflow or task nope"):
        await views.show(p.query, "nope")
    with pytest.raises(ConfigError, match="not a task state"):
        await views.tasks(p.query, status="done")


async def test_no_live_agent_for_a_capability_and_no_router_are_named(p: Projection) -> None:
    _workflow(p)
    p.agent("conductor-1", "conductor")
    p.agent("echo-1", "echo", "text", heard=NOW - 60 * S)  # not heard from for a minute
    p.add("tasks", task_id="wf1-a", workflow_id="wf1", capability="text", status="offered",
          mode="routed", attempt=1, created_at=1)  # fmt: skip
    reasons = await stalled(p.query, workflow_id="wf1", now=NOW)
    assert reasons[0].startswith("no live router assigns offered tasks")
    assert "task wf1-a needs capability 'text' and no live agent has it" in reasons[1]
    assert len(reasons) == 2

    p.agent("router-1", "router")
    p.agent("echo-2", "echo", "text")  # a live one: the offer is just not assigned yet
    assert await stalled(p.query, workflow_id="wf1", now=NOW) == [
        "task wf1-a (text) is offered, not assigned yet"
    ]


async def test_a_queue_without_replicas_an_escalation_and_a_quiet_conductor(
    p: Projection,
) -> None:
    _workflow(p, plan_version=None)
    p.agent("conductor-1", "conductor", heard=NOW - 9 * S)  # missed a heartbeat, not stale yet
    p.add("tasks", task_id="wf1-a", workflow_id="wf1", role="writer", capability="text",
          status="assigned", attempt=1, created_at=1)  # fmt: skip
    p.add("tasks", task_id="wf1-b", workflow_id="wf1", role="echo", capability="text",
          status="escalated", error="bad: no", attempt=3, created_at=2)  # fmt: skip
    p.add("escalations", escalation_id="01J0000000000000000000000E", task_id="wf1-b",
          workflow_id="wf1", reason="retries exhausted", status="open", created_at=3)  # fmt: skip
    reasons = await stalled(p.query, workflow_id="wf1", now=NOW)
    assert reasons == [
        "the conductor was last heard from 9 s ago (it beats every 5 s): is it running?"
        " (`swarmlog agent ps`)",
        "it has no plan yet (the conductor plans it on its next turn)",
        "task wf1-b is escalated (retries exhausted; last error: bad: no) and waits for a human:"
        " `swarmlog escalations resolve 01J0000000000000000000000E --retry|--reassign ROLE"
        "|--answer TEXT|--cancel`",
        "task wf1-a waits in role writer's queue and no replica of writer is live: start one"
        " (`swarmlog agent start MODULE:CLASS --detach`)",
    ]
    later = await stalled(p.query, workflow_id="wf1", now=NOW + 10 * S)
    assert later[0].startswith("no live conductor runs workflows")


async def test_a_look_reads_kill_switches_and_the_items_last_change(p: Projection) -> None:
    _workflow(p)
    p.agent("conductor-1", "conductor")
    p.agent("router-1", "router")
    p.agent("w-1", "writer", "write")
    p.add("kill_switches", target="w-1", active=True, reason="runaway", updated_seq=9)
    p.add("tasks", task_id="wf1-a", workflow_id="wf1", role="writer", capability="write",
          status="assigned", attempt=1, created_at=1, updated_seq=12)  # fmt: skip
    seen = await look(p.query, workflow_id="wf1", now=NOW)
    assert (seen.progress, seen.trusted) == (12, True)
    assert [(r.kind, r.blocks) for r in seen.reasons] == [("killed", True)]
    assert await blocked(p.query, workflow_id="wf1", now=NOW) == [
        "task wf1-a waits in role writer's queue and writer is killed (runaway):"
        " `swarmlog revive --role writer` brings it back"
    ]
    assert (await look(p.query, task_id="wf1-a", now=NOW)).progress == 12
    # Revived: nothing blocks (it waits for the replica to take it).
    p.db.execute("UPDATE kill_switches SET active = false")
    assert await blocked(p.query, workflow_id="wf1", now=NOW) == []


def _offer(capability: str, input: Json = None, **changes: Any) -> TaskOffered:
    """``task_offer`` with :meth:`Client.submit_task`'s defaults (its keyword arguments but the
    workflow it files the task under), but for ``changes``."""
    options = {
        name: parameter.default
        for name, parameter in inspect.signature(Client.submit_task).parameters.items()
        if parameter.kind is parameter.KEYWORD_ONLY and name != "workflow_id"
    }
    return task_offer(capability, input, **(options | changes))


def test_submissions_are_checked_before_anything_is_published() -> None:
    wf, payload = workflow_submission("pipeline", {"x": 1}, stages=["a", "b"], data="hi",
                                      fail_fast=True, budget_tokens=10)  # fmt: skip
    assert wf.startswith("wf-")
    assert payload.input == {
        "x": 1,
        "stages": ["a", "b"],
        "input": "hi",
        "on_escalation": "fail",
    }
    assert payload.budget_tokens == 10
    with pytest.raises(ConfigError, match="cannot run this custom") as e:
        workflow_submission("custom", {"plan": {"steps": [
            {"id": "a", "capability": "x", "depends_on": ["b"]},
            {"id": "b", "capability": "x", "depends_on": ["a"]}]}})  # fmt: skip
    assert e.value.parameter == "input"
    with pytest.raises(ConfigError, match="budget_tokens 0 is not in") as e:
        workflow_submission("pipeline", stages=["a"], budget_tokens=0)
    with pytest.raises(ConfigError, match="data is not JSON-like"):
        workflow_submission("pipeline", stages=["a"], data=object())
    offer = _offer("text", {"a": 1}, task_id="t1", priority="high", mode="swarm")
    assert (offer.task_id, offer.capability, offer.priority, offer.mode) == (
        "t1",
        "text",
        "high",
        "swarm",
    )
    with pytest.raises(ConfigError, match="capability") as e:
        _offer("No Spaces")
    assert e.value.parameter == "capability"
    with pytest.raises(ConfigError, match="task_id 'T 1' is not valid"):
        _offer("text", task_id="T 1")
    with pytest.raises(ConfigError, match="deadline 0 is not > 0 seconds") as e:
        _offer("text", deadline=0)
    assert e.value.parameter == "deadline"
    assert _offer("text").deadline_at is None
    soon = _offer("text", deadline=60).deadline_at
    assert soon is not None
    assert 0 < soon - time.time_ns() <= 60 * 10**9


async def test_connect_refuses_a_path_for_settings_and_a_missing_data_dir(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"settings must be a swarmlog\.Settings"):
        await Client.connect("./d")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="not both"):
        await Client.connect(Settings(data_dir=tmp_path), namespace="x")
    with pytest.raises(ConfigError, match="does not exist; run `swarmlog up`"):
        await Client.connect(data_dir=tmp_path / "nope")


async def test_the_agents_view_takes_liveness_and_load_from_verified_presence(
    p: Projection,
) -> None:
    log = MemoryLog("SWARMLOG_DEFAULT")
    keys = {name: Identity.from_seed(name, bytes([i + 1]) * 32) for i, name in enumerate("abc")}
    for name, key in keys.items():
        p.agent(name, "echo", "text", heard=NOW - 600 * S)  # registered ten minutes ago
        p.db.execute("UPDATE agents SET public_key = ? WHERE agent_id = ?", [key.public_key, name])
    beacon = Beacon(log, Publisher(log, keys["a"], "default"), "echo", clock=lambda: NOW - S)
    await beacon.put(load=2, capacity=4, tasks=["t1", "t2"])
    presence = await log.presence()
    await presence.put("b", (await presence.get("a")) or b"")  # a's value under b's key
    reader = PresenceReader(log, "default", clock=lambda: NOW)
    rows = {r.agent_id: r for r in await views.agents(p.query, reader, now=NOW)}
    assert (rows["a"].presence, rows["a"].last_heartbeat_at) == ("fresh", NOW - S)
    assert (rows["a"].in_flight, rows["a"].capacity) == (2, 4)
    assert rows["b"].presence == "refused: wrong_key"
    assert rows["b"].last_heartbeat_at == NOW - 600 * S  # the forgery moved nothing
    assert (rows["c"].presence, rows["c"].last_heartbeat_at) == ("", NOW - 600 * S)
    assert reader.refused == {"wrong_key": 1}
    later = {r.agent_id: r for r in await views.agents(p.query, reader, now=NOW + 60 * S)}
    assert later["a"].presence == "stale"


async def test_show_task_has_the_traceback_of_its_last_crash_not_of_a_task_error(
    p: Projection,
) -> None:
    p.add("tasks", task_id="t1", workflow_id="wf1", status="errored", created_at=1, updated_seq=9)

    def event(seq: int, type_: str, **payload: Any) -> None:
        body = json.dumps({"type": type_, "task_id": "t1", **payload})
        subject = f"swarmlog.default.task.t1.{type_}"
        p.add("events", seq=seq, subject=subject, type=type_, occurred_at=seq, payload=body)

    before = await views.show(p.query, "t1")
    assert isinstance(before, records.TaskDetail)
    assert before.crash is None
    event(1, "task_started", attempt=1)
    crashed = "Traceback (most recent call last):\n  ...\nZeroDivisionError: division by zero"
    event(2, "error", code="ZeroDivisionError", message="division by zero", traceback=crashed)
    event(3, "task_started", attempt=2)
    event(4, "error", code="bad_input", message="the traceback is not here", retryable=False)
    found = await views.show(p.query, "t1")
    assert isinstance(found, records.TaskDetail)
    # The later error was the handler's own TaskError: the crash shown is the one before it.
    assert found.crash == records.Crash(
        seq=2,
        attempt=1,
        error="ZeroDivisionError: division by zero",
        traceback=crashed,
    )
    assert msgspec.to_builtins(found)["crash"]["traceback"].endswith("division by zero")
