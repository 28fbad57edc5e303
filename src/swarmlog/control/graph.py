"""A workflow's graph (pure): every task the workflow has, with what each came from.

``show WF`` (its table, ``--mermaid``, ``--svg``), :meth:`Client.show` and the web console draw
this one list. A node is a row of the ``tasks`` table of the workflow (or a step of its plan that
has no task yet, ``pending``); its id is the task id, which says what the task is (the
conductor names every task after its role in the workflow, see
:mod:`swarmlog.agents.policy.supervision`):

============  ===========================================  =====================================
kind          task id                                      edges into it
============  ===========================================  =====================================
``plan``      ``<wf>--plan<k>``                            from the request before it
``step``      ``<wf>-<step>`` (``…--v<n>`` under plan v n)  from the steps it depends on (their
                                                           last attempt), from the planner
                                                           request whose plan it is, from the
                                                           same step's last try under the plan
                                                           version before
``retry``     ``<attempt>--r<k>``                          from the attempt before it
``review``    ``<attempt>--review``                        from the attempt it reviews
``synthesis`` ``<wf>--synthesis``                          from the last attempt of every step
                                                           nothing depends on
``subtask``   any, with a ``parent_task_id`` in the         from its parent (``ctx.delegate``,
              workflow                                     work posted by a swarm task)
``task``      anything else                                none
============  ===========================================  =====================================

A fallback role's hand-over keeps its task id, so it is the same node (its row's role changes).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

from swarmlog.agents.policy.planning import Plan
from swarmlog.agents.policy.supervision import step_task_id
from swarmlog.control.records import GraphNode

__all__ = ["workflow_graph"]

_RETRY = re.compile(r"(?P<base>.+)--r(?P<k>[0-9]+)")
_STEP = re.compile(r"(?P<step>.+?)(?:--v[0-9]+)?(?:--r[0-9]+)?")
_REVIEW = "--review"


def _step_of(wf: str, task_id: str) -> str | None:
    """The plan step a task id runs (an attempt of it, under any plan version), if it is one."""
    if not task_id.startswith(f"{wf}-"):
        return None
    found = _STEP.fullmatch(task_id[len(wf) + 1 :])
    step = found["step"] if found else ""
    # Step ids never hold "--" (the planner is refused one) nor start with "-".
    return step if step and "--" not in step and not step.startswith("-") else None


def _classify(
    wf: str, task_id: str, parent: Any, known: Mapping[str, Any]
) -> tuple[str, str | None, str | None]:
    """``(kind, step, origin)``: what the task is, the plan step it belongs to and the task it
    follows from (the source of its one edge from its own id)."""
    if isinstance(parent, str) and parent in known and parent != task_id:
        return "subtask", None, parent
    if task_id == f"{wf}--synthesis":
        return "synthesis", None, None
    if task_id.startswith(f"{wf}--plan") and task_id[len(wf) + 6 :].isdigit():
        k = int(task_id[len(wf) + 6 :])
        return "plan", None, f"{wf}--plan{k - 1}" if k > 1 else None
    if task_id.endswith(_REVIEW):
        attempt = task_id[: -len(_REVIEW)]
        return "review", _step_of(wf, attempt), attempt
    retry = _RETRY.fullmatch(task_id)
    if retry is not None:
        base, k = retry["base"], int(retry["k"])
        before = f"{base}--r{k - 1}" if k > 2 else base  # the first retry is --r2
        return "retry", _step_of(wf, base), before if before in known else base
    step = _step_of(wf, task_id)
    return ("step", step, None) if step is not None else ("task", None, None)


def workflow_graph(
    workflow_id: str, plan: Plan | None, tasks: Sequence[Mapping[str, Any]]
) -> tuple[list[GraphNode], list[tuple[str, str]]]:
    """The nodes and ``(from, to)`` edges of a workflow: every one of its ``tasks`` (rows with
    ``task_id``, ``capability``, ``status``, ``parent_task_id``, in the order to draw them) and
    the steps of its current ``plan`` not yet run; see the module's table."""
    wf = workflow_id
    known = {str(t["task_id"]): t for t in tasks}
    nodes: list[GraphNode] = []
    origins: list[tuple[str, str]] = []
    for task_id, row in known.items():
        kind, step, origin = _classify(wf, task_id, row.get("parent_task_id"), known)
        status = row.get("status") or "pending"
        node = GraphNode(
            id=task_id, capability=row.get("capability"), status=status, kind=kind, step=step
        )
        nodes.append(node)
        if origin is not None:
            origins.append((origin, task_id))
    ids = set(known)
    edges: list[tuple[str, str]] = []

    def edge(a: str | None, b: str) -> None:
        if a is not None and a in ids and b in ids and a != b and (a, b) not in edges:
            edges.append((a, b))

    if plan is not None:
        heads: dict[str, str] = {}  # a step: its first attempt under the latest version run
        for s in plan.steps:
            tries = [step_task_id(wf, s.id, v) for v in range(1, plan.version + 1)]
            run = [t for t in tries if t in known]
            for earlier, later in pairwise(run):  # revised: tried again
                origins.append((_last_attempt(earlier, known), later))
            heads[s.id] = run[-1] if run else tries[-1]
            if not run:
                ids.add(tries[-1])
                pending = GraphNode(
                    id=tries[-1], capability=s.capability, status="pending", kind="step", step=s.id
                )
                nodes.append(pending)
        needed = {d for s in plan.steps for d in s.depends_on}
        for s in plan.steps:
            head = heads[s.id]
            for d in s.depends_on:
                if d in heads:
                    edge(_last_attempt(heads[d], known), head)
            if not s.depends_on and head == step_task_id(wf, s.id, plan.version):
                edge(plan.planned_by or None, head)  # planned in this version, by that request
        for s in plan.steps:
            if s.id not in needed:
                edge(_last_attempt(heads[s.id], known), f"{wf}--synthesis")
    for a, b in origins:
        edge(a, b)
    return nodes, edges


def _last_attempt(first: str, known: Mapping[str, Any]) -> str:
    """The last retry of an attempt that exists (``first--r2``, ``--r3``, ...), else ``first``."""
    last, k = first, 2
    while f"{first}--r{k}" in known:
        last, k = f"{first}--r{k}", k + 1
    return last
