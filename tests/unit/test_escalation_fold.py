"""Escalations in the fold: one failure opens one escalation (a task escalated again while one
is open opens no second), and a workflow that ends closes its open escalations, saying why; on
the reference fold and on the DuckDB projector, whose batches read those rows by task and by
workflow (``touches_where``), however the log is batched."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_verify import NS, OPERATOR, Projection

from swarmlog.bus.memory import MemoryLog
from swarmlog.bus.ports import StoredMessage
from swarmlog.bus.subjects import stream_name
from swarmlog.projections.fold import fold_checked
from swarmlog.projections.projector import Projector
from swarmlog.projections.statehash import state_hash
from swarmlog.projections.store import ProjectionStore
from swarmlog.projections.verify import check
from swarmlog.schemas.payloads import (
    EscalationResolved,
    Payload,
    TaskEscalated,
    WorkflowCompleted,
    WorkflowSubmitted,
)


def history() -> tuple[Projection, list[StoredMessage], list[str]]:
    p = Projection()
    ids: list[str] = []
    messages: list[StoredMessage] = []

    def emit(payload: Payload, workflow_id: str | None = None) -> None:
        sealed = p.seal(OPERATOR, payload, workflow_id=workflow_id)
        ids.append(sealed.envelope.id)
        messages.append(p.message(sealed))

    emit(WorkflowSubmitted(pattern="pipeline"), "wf1")  # 0
    emit(TaskEscalated(task_id="t1", reason="ValueError is not retryable"), "wf1")  # 1: opened
    emit(TaskEscalated(task_id="t1", reason="stalled"), "wf1")  # 2: the same failure again
    emit(TaskEscalated(task_id="t2", reason="no live agent"))  # 3: no workflow: stays open
    emit(TaskEscalated(task_id="t3", reason="x"), "wf2")  # 4: another workflow's
    emit(EscalationResolved(escalation_id=ids[4], task_id="t3", action="retry"), "wf2")  # 5
    emit(TaskEscalated(task_id="t3", reason="failed again"), "wf2")  # 6: after a resolution
    emit(WorkflowCompleted(status="succeeded"), "wf1")  # 7: closes wf1's
    emit(TaskEscalated(task_id="t4", reason="late"), "wf1")  # 8: after wf1 ended: closed
    return p, messages, ids


def expected(ids: list[str]) -> dict[str, tuple[str, str | None, str, str | None]]:
    return {
        ids[1]: ("t1", "wf1", "closed", "workflow succeeded"),
        ids[3]: ("t2", None, "open", None),
        ids[4]: ("t3", "wf2", "resolved", "retry"),
        ids[6]: ("t3", "wf2", "open", None),
        ids[8]: ("t4", "wf1", "closed", "workflow succeeded"),
    }


def test_the_reference_fold_opens_one_per_failure_and_closes_them_with_the_workflow() -> None:
    p, messages, ids = history()
    fold_checked(p.state, [check(m, NS) for m in messages], OPERATOR.public_key)
    rows = {
        eid: (r["task_id"], r["workflow_id"], r["status"], r["resolution"])
        for (eid,), r in p.state.rows["escalations"].items()
    }
    assert rows == expected(ids)
    closed = p.state.rows["escalations"][(ids[1],)]
    assert closed["resolved_at"] is not None  # when the workflow ended


@pytest.mark.parametrize("size", [1, 2, 3, 9])
def test_the_projector_agrees_however_the_log_is_batched(tmp_path: Path, size: int) -> None:
    p, messages, ids = history()
    fold_checked(p.state, [check(m, NS) for m in messages], OPERATOR.public_key)
    with ProjectionStore(tmp_path / "p.duckdb") as store:
        projector = Projector(
            MemoryLog(stream_name(NS)), store, namespace=NS, operator_key=OPERATOR.public_key
        )
        try:
            for i in range(0, len(messages), size):
                projector.process(messages[i : i + size])
        finally:
            projector.close()
        rows = {
            eid: (task, wf, status, resolution)
            for eid, task, wf, status, resolution in store.rows(
                "SELECT escalation_id, task_id, workflow_id, status, resolution FROM escalations"
            )
        }
        assert rows == expected(ids)
        assert store.state_hash() == state_hash(p.state)
