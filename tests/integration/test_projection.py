"""Publish -> project -> query on a real nats-server and a real DuckDB file."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import pytest
from swarmkit import Swarm

from swarmlog.bus.jetstream import JetStreamLog
from swarmlog.bus.ports import Append
from swarmlog.bus.rpc import request
from swarmlog.bus.subjects import (
    aggregate_filter,
    kv_bucket,
    object_bucket,
    rpc_subject,
    subject_for,
)
from swarmlog.errors import ConcurrencyConflict, StoreError
from swarmlog.projections.projector import Projector
from swarmlog.projections.query import run_query
from swarmlog.projections.service import QueryService
from swarmlog.projections.store import ProjectionStore
from swarmlog.schemas.payloads import (
    Result,
    TaskAssignment,
    TaskClaimed,
    TaskOffered,
    TokenUsage,
    WorkflowSubmitted,
)

pytestmark = pytest.mark.integration


async def project(swarm: Swarm, path: Path) -> ProjectionStore:
    store = ProjectionStore(path)
    projector = Projector(
        swarm.log, store, namespace=swarm.namespace, operator_key=swarm.operator.public_key
    )
    try:
        await projector.run(follow=False)
    finally:
        projector.close()
    return store


def select(store: ProjectionStore, sql: str) -> list[list[object]]:
    return run_query(store.cursor(), sql).rows


async def test_publish_project_query(swarm: Swarm, tmp_path: Path) -> None:
    ops = swarm.publisher(swarm.operator)
    await ops.publish(WorkflowSubmitted(pattern="custom", input={"q": 1}), workflow_id="wf1")
    await ops.publish(TaskAssignment(task_id="t1", role="worker", input="x"), workflow_id="wf1")
    usage = TokenUsage(model="m", prompt_tokens=3, completion_tokens=4)
    await swarm.publisher(swarm.alice).publish(
        Result(task_id="t1", output={"answer": 42}, usage=usage), workflow_id="wf1"
    )
    store = await project(swarm, tmp_path / "p.duckdb")
    assert select(store, "SELECT task_id, status, output, completed_by FROM tasks") == [
        ["t1", "succeeded", '{"answer":42}', "alice"]
    ]
    assert select(store, "SELECT workflow_id, status, pattern FROM workflows") == [
        ["wf1", "running", "custom"]
    ]
    assert select(store, "SELECT scope, scope_id, used_tokens FROM budgets ORDER BY 1, 2") == [
        ["agent", "alice", 7],
        ["workflow", "wf1", 7],
    ]
    assert select(store, "SELECT count(*) FROM quarantine") == [[0]]
    assert store.position() == await swarm.log.last_seq()
    # The same rows through the query service, as the CLI reads them while a projector runs.
    service = QueryService(swarm.log.client, store, swarm.namespace)
    await service.start()
    try:
        reply = await request(
            swarm.log.client,
            rpc_subject(swarm.namespace, "query"),
            {"sql": "SELECT status FROM tasks"},
            5.0,
        )
        assert reply == {"columns": ["status"], "rows": [["succeeded"]], "truncated": False}
        refused = await request(
            swarm.log.client,
            rpc_subject(swarm.namespace, "query"),
            {"sql": "DELETE FROM tasks"},
            5.0,
        )
        assert "only read-only SELECT" in refused["error"]["message"]
        state = await request(swarm.log.client, rpc_subject(swarm.namespace, "state"), {}, 5.0)
        assert state["state_hash"] == store.state_hash()
    finally:
        await service.stop()
        store.close()


async def test_a_question_asked_again_is_answered_from_the_projection_as_it_is_now(
    swarm: Swarm, tmp_path: Path
) -> None:
    """The service keeps answers only while the projection stays where it was: once it folds
    more, the same question gets the new answer; a question about the time is never kept."""
    ops = swarm.publisher(swarm.operator)
    await ops.publish(TaskAssignment(task_id="k1", role="worker"))
    store = await project(swarm, tmp_path / "p.duckdb")
    service = QueryService(swarm.log.client, store, swarm.namespace)
    await service.start()
    subject = rpc_subject(swarm.namespace, "query")

    async def ask(sql: str) -> list[list[object]]:
        reply = await request(swarm.log.client, subject, {"sql": sql}, 5.0)
        rows: list[list[object]] = reply["rows"]
        return rows

    try:
        count = "SELECT count(*) FROM tasks"
        assert await ask(count) == [[1]]
        assert await ask(count) == [[1]]
        await ops.publish(TaskAssignment(task_id="k2", role="worker"))
        projector = Projector(
            swarm.log, store, namespace=swarm.namespace, operator_key=swarm.operator.public_key
        )
        service.advanced(await projector.run(follow=False))
        projector.close()
        assert await ask(count) == [[2]]
        clock = "SELECT epoch_us(now()) AS t"
        first = await ask(clock)
        assert await ask(clock) != first  # a round trip takes more than DuckDB's microsecond
    finally:
        await service.stop()
        store.close()


async def held_query(swarm: Swarm, sql: str) -> asyncio.Future[Any]:
    """Ask the query service ``sql``; its answer, still to come a second later (held)."""
    asked = asyncio.ensure_future(
        request(swarm.log.client, rpc_subject(swarm.namespace, "query"), {"sql": sql}, 25.0)
    )
    done, _ = await asyncio.wait({asked}, timeout=1.0)
    assert not done, "the query was answered while it should have been held"
    return asked


async def test_wait_answers_while_the_commit_runs_and_a_read_after_it_sees_the_commit(
    swarm: Swarm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``wait`` answers once the batch is folded, before DuckDB has committed it; a query asked
    after the answer waits for that commit, so it never sees less than it was told."""
    import threading

    store = ProjectionStore(tmp_path / "p.duckdb")
    service = QueryService(swarm.log.client, store, swarm.namespace)
    projector = Projector(
        swarm.log, store, namespace=swarm.namespace, operator_key=swarm.operator.public_key
    )
    await projector.run(follow=False)  # what the swarm holds already (its credentials)
    committing, release = threading.Event(), threading.Event()
    flush = store.flush

    def held_flush(*args: object, **kwargs: object) -> None:
        committing.set()
        assert release.wait(30), "the test never let the commit go"
        flush(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "flush", held_flush)
    stop = asyncio.Event()
    await service.start()
    running = asyncio.create_task(
        projector.run(
            follow=True,
            stop=stop,
            on_batch=lambda r: service.advanced(r.last_seq),
            on_folded=service.folded,
        )
    )
    try:
        ack = await swarm.publisher(swarm.operator).publish(
            TaskAssignment(task_id="w1", role="worker")
        )
        waited = await request(
            swarm.log.client,
            rpc_subject(swarm.namespace, "wait"),
            {"seq": ack.seq, "timeout": 20},
            25.0,
        )
        assert waited == {"position": ack.seq}
        # Told while the commit cannot have landed: it is held until release, below.
        assert await asyncio.to_thread(committing.wait, 20)
        # However long the query is given, it does not answer while the commit is held.
        asked = await held_query(swarm, "SELECT task_id FROM tasks")
        release.set()
        assert (await asked)["rows"] == [["w1"]]
    finally:
        release.set()
        stop.set()
        await running
        await service.stop()
        projector.close()
        store.close()


async def test_after_a_restart_reads_wait_for_what_the_projector_before_may_have_told(
    swarm: Swarm, tmp_path: Path
) -> None:
    """A projector that died during a commit told a position the file does not hold: the next
    one's reads wait until it has committed that far again, never showing less."""
    ops = swarm.publisher(swarm.operator)
    await ops.publish(TaskAssignment(task_id="r1", role="worker"))
    store = await project(swarm, tmp_path / "p.duckdb")
    told = store.position() + 1  # the batch the one before told and never committed
    service = QueryService(swarm.log.client, store, swarm.namespace, told_before=told)
    await service.start()
    try:
        position = await request(
            swarm.log.client, rpc_subject(swarm.namespace, "position"), {}, 5.0
        )
        assert position == {"position": told - 1}  # not folded by this one: not claimed
        asked = await held_query(swarm, "SELECT count(*) FROM tasks")  # less than was told
        service.advanced(told)
        assert (await asked)["rows"] == [[1]]
    finally:
        await service.stop()
        store.close()


async def test_duplicate_publish_is_stored_once(swarm: Swarm, tmp_path: Path) -> None:
    await swarm.publisher(swarm.operator).publish(TaskAssignment(task_id="t9", role="worker"))
    publisher = swarm.publisher(swarm.alice)
    await publisher.recover()
    sealed = publisher.seal(Result(task_id="t9", output=1))
    subject = subject_for(swarm.namespace, sealed.envelope)
    first = await swarm.log.append(Append(subject, sealed.data, msg_id=sealed.id))
    again = await swarm.log.append(Append(subject, sealed.data, msg_id=sealed.id))
    assert again.duplicate
    assert again.seq == first.seq
    assert await swarm.log.last_seq() == first.seq
    store = await project(swarm, tmp_path / "p.duckdb")
    assert select(store, f"SELECT count(*) FROM events WHERE id = '{sealed.id}'") == [[1]]
    store.close()


async def test_occ_conflict_on_an_aggregate(swarm: Swarm) -> None:
    task = aggregate_filter(swarm.namespace, "task", "t7")
    last = await swarm.log.last_message(task)
    expected = last.seq if last else 0
    claims = [
        swarm.publisher(who).publish(
            TaskClaimed(task_id="t7", agent_id=who.agent_id), expect=(task, expected)
        )
        for who in (swarm.alice, swarm.bob)
    ]
    outcomes = await asyncio.gather(*claims, return_exceptions=True)
    conflicts = [o for o in outcomes if isinstance(o, ConcurrencyConflict)]
    assert len(conflicts) == 1, outcomes
    winner = await swarm.log.last_message(task)
    assert winner is not None


async def test_replay_equals_live_projection(swarm: Swarm, tmp_path: Path) -> None:
    ops = swarm.publisher(swarm.operator)
    payloads = [TaskAssignment(task_id=f"t{i}", role="worker", input=i) for i in range(300)]
    await ops.publish_many(payloads, workflow_id="wfx")
    live = await project(swarm, tmp_path / "live.duckdb")
    more = [Result(task_id=f"t{i}", output=i * 2) for i in range(0, 300, 3)]
    await swarm.publisher(swarm.alice).publish_many(more, workflow_id="wfx")
    projector = Projector(
        swarm.log, live, namespace=swarm.namespace, operator_key=swarm.operator.public_key
    )
    await projector.run(follow=False)  # catches up incrementally from its stored position
    projector.close()
    replayed = await project(swarm, tmp_path / "replay.duckdb")
    assert live.position() == replayed.position() == await swarm.log.last_seq()
    assert live.state_hash() == replayed.state_hash()
    assert select(replayed, "SELECT count(*) FROM tasks WHERE status = 'succeeded'") == [[100]]
    rows = select(live, "SELECT payload FROM events WHERE type = 'result' ORDER BY seq LIMIT 1")
    assert msgspec.json.decode(str(rows[0][0]))["output"] == 0
    live.close()
    replayed.close()


async def test_runaway_query_is_stopped(
    swarm: Swarm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import swarmlog.projections.service as service_module

    monkeypatch.setattr(service_module, "QUERY_TIMEOUT", 0.5)
    store = await project(swarm, tmp_path / "p.duckdb")
    service = QueryService(swarm.log.client, store, swarm.namespace)
    await service.start()
    try:
        subject = rpc_subject(swarm.namespace, "query")
        heavy = "SELECT count(*) FROM range(1000000000) a, range(1000000) b WHERE a.range = b.range"
        reply = await request(swarm.log.client, subject, {"sql": heavy}, 10.0)
        assert "stopped" in reply["error"]["message"]
        # The service still answers afterwards.
        ok = await request(swarm.log.client, subject, {"sql": "SELECT 1 AS one"}, 5.0)
        assert ok["rows"] == [[1]]
    finally:
        await service.stop()
        store.close()


async def test_provisioning_creates_buckets_and_is_idempotent(swarm: Swarm) -> None:
    await swarm.log.provision()  # a second time: no error, nothing changes
    js = swarm.log.client.jetstream()
    flags = await js.key_value(kv_bucket(swarm.namespace, "flags"))
    await flags.put("kill.demo", b"1")
    assert (await flags.get("kill.demo")).value == b"1"
    await js.key_value(kv_bucket(swarm.namespace, "cache"))
    snapshots = await js.object_store(object_bucket(swarm.namespace))
    await snapshots.put("probe", b"snapshot bytes")
    assert (await snapshots.get("probe")).data == b"snapshot bytes"
    info = await js.stream_info(swarm.log.stream)
    assert info.config.deny_delete
    assert info.config.deny_purge
    assert not info.config.allow_rollup_hdrs


async def test_a_projection_of_a_stream_made_again_is_refused(
    swarm: Swarm, tmp_path: Path, nats_server: str
) -> None:
    """The stream a projection was folded from is lost and made again (a server whose disk lost
    it). Whether it now holds fewer messages, or the very same bytes at the same sequences (all
    a publisher chooses), the projector refuses to go on from it: only the server's storage time
    tells the copy from the original, so this runs against the real stream API."""
    ops = swarm.publisher(swarm.operator)
    for i in range(3):
        await ops.publish(TaskOffered(task_id=f"t{i}", capability="c"))
    path = tmp_path / "p.duckdb"
    store = await project(swarm, path)
    folded = store.position()
    original = [await swarm.log.message_at(seq) for seq in range(1, folded + 1)]
    store.close()

    await swarm.log.client.jetstream().delete_stream(swarm.log.stream)
    again = await JetStreamLog.open(nats_server, swarm.namespace, provision=True)
    try:

        async def refused(said: str) -> None:
            store = ProjectionStore(path)
            projector = Projector(
                again, store, namespace=swarm.namespace, operator_key=swarm.operator.public_key
            )
            try:
                with pytest.raises(StoreError, match=said):
                    await projector.run(follow=False)
                assert store.position() == folded  # nothing written
            finally:
                projector.close()
                store.close()

        copies = [m for m in original if m is not None]
        assert len(copies) == folded
        for message in copies[:-1]:
            await again.append(Append(message.subject, message.data, msg_id=f"copy-{message.seq}"))
        await refused("holds no message there")
        last = copies[-1]
        stored = await again.append(Append(last.subject, last.data, msg_id=f"copy-{last.seq}"))
        assert stored.seq == folded
        copy = await again.message_at(folded)
        assert copy is not None
        assert (copy.subject, copy.data) == (last.subject, last.data)
        await refused("holds another message there")
    finally:
        await again.close()
