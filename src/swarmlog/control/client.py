"""``swarmlog.Client``: drive a running system from Python, with the CLI's contract.

::

    async with await swarmlog.Client.connect(data_dir="./.swarmlog") as client:
        wf = await client.submit_workflow("pipeline", stages=["text", "text"], data="hello")
        view = await client.wait(wf.workflow_id, timeout=60)
        async for event in client.events(workflow_id=wf.workflow_id):
            print(event.seq, event.type, event.sender, event.verified)

The client is the operator: it signs what it submits with the operator key of the data dir (as
``swarmlog submit`` does), reads the projections through the live projector (the projection file
when none answers) and reads events straight from the log. What it returns are the records of
:mod:`swarmlog.control.views` and :mod:`swarmlog.control.eventstream`, the same the CLI prints
(its ``--json`` is those records), and the CLI's ``submit``, views and ``events tail`` run
through it. One NATS connection serves everything.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import msgspec

from swarmlog.agents.presence import PresenceReader, liveness_from_env
from swarmlog.agents.publisher import Publisher
from swarmlog.bus.jetstream import JetStreamLog
from swarmlog.bus.ports import EventLog, QueueState, StoredMessage
from swarmlog.bus.subjects import aggregate_filter, live_filter, workflow_event_filter
from swarmlog.config import DEFAULT_NAMESPACE, Settings
from swarmlog.control import views
from swarmlog.control.checks import check_name
from swarmlog.control.escalations import Resolution, resolve
from swarmlog.control.eventstream import Event, read_events
from swarmlog.control.keystore import KeyStore
from swarmlog.control.previews import TextPreview, preview_of
from swarmlog.control.records import (
    AgentRow,
    BudgetRow,
    EscalationDetail,
    EscalationRow,
    QueryRows,
    Submitted,
    TaskDetail,
    TaskRow,
    TaskSubmitted,
    TaskView,
    WorkflowDetail,
    WorkflowRow,
    WorkflowView,
)
from swarmlog.control.submitting import task_offer, workflow_submission
from swarmlog.control.system import login_of, resolve_url
from swarmlog.control.waiting import (
    Blocked,
    blocked,
    look,
    stalled,
    stuck_error,
    timed_out,
    wait_for,
)
from swarmlog.errors import BusError, ConfigError, WaitTimeout
from swarmlog.projections.client import LiveState, ProjectionClient
from swarmlog.schemas.payloads import JOURNAL_TYPES
from swarmlog.schemas.types import Json

__all__ = ["Client", "Event"]

_TASK_ENDS = ("succeeded", "failed", "cancelled")


def _settings(
    settings: Settings | None,
    data_dir: str | Path | None,
    namespace: str | None,
    nats_url: str | None,
) -> Settings:
    if settings is not None and not isinstance(settings, Settings):
        raise ConfigError(
            f"settings must be a swarmlog.Settings, not {type(settings).__name__}; pass a path"
            " as data_dir=...",
            parameter="settings",
        )
    if settings is not None:
        if (data_dir, namespace, nats_url) != (None, None, None):
            raise ConfigError("give either settings or data_dir/namespace/nats_url, not both")
        return settings
    env = os.environ  # the CLI's own variables, with the CLI's defaults
    return Settings(
        data_dir=Path(data_dir or env.get("SWARMLOG_DATA") or ".swarmlog"),
        nats_url=nats_url or env.get("SWARMLOG_NATS_URL") or None,
        namespace=namespace or env.get("SWARMLOG_NAMESPACE") or DEFAULT_NAMESPACE,
    )


class Client:
    """The operator's handle on a running system (see the module docstring); made by
    :meth:`connect`, closed by ``async with`` or :meth:`close`."""

    def __init__(
        self,
        settings: Settings,
        log: JetStreamLog | None,
        projections: ProjectionClient,
        unreachable: BusError | None = None,
    ) -> None:
        self.settings = settings
        self._log = log
        self._projections = projections
        self._unreachable = unreachable
        self._publisher: Publisher | None = None
        # One reader for the client's life: a value older than one it saw is a replay.
        self._presence = (
            None
            if log is None
            else PresenceReader(log, settings.namespace, stale_after=liveness_from_env()[1])
        )

    @classmethod
    async def connect(
        cls,
        settings: Settings | None = None,
        *,
        data_dir: str | Path | None = None,
        namespace: str | None = None,
        nats_url: str | None = None,
        require_server: bool = True,
    ) -> Client:
        """Connect as the operator of ``data_dir`` (or ``settings``; unset values come from
        ``SWARMLOG_DATA``, ``SWARMLOG_NAMESPACE``, ``SWARMLOG_NATS_URL``, as for the CLI).

        Raises :class:`~swarmlog.errors.BusError` when no server runs for it; with
        ``require_server=False`` the client reads the projection file instead, and what needs
        the log (submitting, :meth:`events`, waiting) raises that error when called.
        """
        chosen = _settings(settings, data_dir, namespace, nats_url)
        chosen.require_data_dir()
        try:
            log = await JetStreamLog.open(
                resolve_url(chosen), chosen.namespace, login=login_of(chosen)
            )
        except BusError as exc:
            if require_server:
                raise
            return cls(chosen, None, _reader(chosen, None), exc)
        return cls(chosen, log, _reader(chosen, log))

    async def close(self) -> None:
        """Close the connection (idempotent)."""
        log, self._log = self._log, None
        if log is not None:
            await log.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _need_log(self) -> JetStreamLog:
        if self._log is None:
            raise self._unreachable or BusError("the client is closed; connect again")
        return self._log

    async def _publish(self, payload: Any, **fields: Any) -> int:
        if self._publisher is None:
            operator = KeyStore(self.settings.keys_dir).operator()
            self._publisher = Publisher(self._need_log(), operator, self.settings.namespace)
        return (await self._publisher.publish(payload, **fields)).seq

    # --- submitting ------------------------------------------------------------------------

    async def submit_workflow(
        self,
        pattern: str,
        input: Mapping[str, Any] | None = None,
        *,
        data: Json = None,
        stages: Sequence[str] = (),
        question: str | None = None,
        debaters: int | None = None,
        capability: str | None = None,
        judge: str | None = None,
        rounds: int | None = None,
        goal: str | None = None,
        planner: str | None = None,
        reviewer: str | None = None,
        synthesizer: str | None = None,
        fail_fast: bool = False,
        budget_tokens: int | None = None,
        workflow_id: str | None = None,
    ) -> Submitted:
        """Start a workflow of ``pattern`` (``pipeline``, ``debate``, ``supervisor``, ``swarm``,
        ``custom``), as ``swarmlog submit``: ``input`` is the pattern's settings (``--input``),
        the other arguments are its options (``data`` is ``--data``: what the first step gets).
        It is checked before anything is published (:class:`~swarmlog.errors.ConfigError`)."""
        wf, payload = workflow_submission(
            pattern,
            input,
            data=data,
            stages=stages,
            fail_fast=fail_fast,
            budget_tokens=budget_tokens,
            workflow_id=workflow_id,
            question=question,
            debaters=debaters,
            capability=capability,
            judge=judge,
            rounds=rounds,
            goal=goal,
            planner=planner,
            reviewer=reviewer,
            synthesizer=synthesizer,
        )
        return Submitted(workflow_id=wf, seq=await self._publish(payload, workflow_id=wf))

    async def submit_task(
        self,
        capability: str,
        input: Json = None,
        *,
        task_id: str | None = None,
        priority: str = "normal",
        mode: str = "routed",
        deadline: float | None = None,
        internal_only: bool = False,
        workflow_id: str | None = None,
    ) -> TaskSubmitted:
        """Offer one task to whoever has ``capability`` (what ``swarmlog events publish
        task_offered`` does): the router assigns it (``mode="swarm"``: capable agents claim
        it). ``deadline``: seconds from now it must be done in; ``workflow_id`` files it under a
        workflow (the conductor does not run it: it is no step of a plan)."""
        offer = task_offer(
            capability,
            input,
            task_id=task_id,
            priority=priority,
            mode=mode,
            deadline=deadline,
            internal_only=internal_only,
        )
        fields = {}
        if workflow_id is not None:
            fields["workflow_id"] = check_name(workflow_id, "workflow id", "workflow_id")
        return TaskSubmitted(task_id=offer.task_id, seq=await self._publish(offer, **fields))

    # --- waiting ---------------------------------------------------------------------------

    async def wait(self, workflow_id: str, timeout: float = 300.0) -> WorkflowView:
        """The workflow once it has ended (``status`` ``succeeded``, ``failed`` or
        ``cancelled``); :class:`~swarmlog.errors.WaitTimeout` after ``timeout`` seconds, saying
        what holds it up, or :class:`~swarmlog.errors.Stuck` (one) within seconds once it
        cannot move by itself (an open escalation, a capability no live agent has, no live
        conductor, a killed role...)."""
        check_name(workflow_id, "workflow id", "workflow_id")
        ns = self.settings.namespace

        async def ended() -> WorkflowView | None:
            view = await self.workflow(workflow_id)
            return view if view is not None and view.status != "running" else None

        subjects = [workflow_event_filter(ns, workflow_id, "workflow_completed")]
        found = await wait_for(
            self._need_log(),
            self._projections,
            subjects,
            ended,
            timeout,
            looks=lambda: look(
                self._projections.query, workflow_id=workflow_id, presence=self._presence
            ),
        )
        if found is not None and not isinstance(found, Blocked):
            return found
        view = await self.workflow(workflow_id)
        raise await self._not_ended("workflow", workflow_id, view, found, timeout)

    async def wait_task(self, task_id: str, timeout: float = 300.0) -> TaskView:
        """The task once it has ended (``succeeded``, ``failed``, ``cancelled``; an escalated
        task waits for a human); :class:`~swarmlog.errors.WaitTimeout` after ``timeout``
        seconds, saying what holds it up, or :class:`~swarmlog.errors.Stuck` within seconds
        once it cannot move by itself."""
        check_name(task_id, "task id", "task_id")

        async def ended() -> TaskView | None:
            view = await self.task(task_id)
            return view if view is not None and view.status in _TASK_ENDS else None

        subjects = [aggregate_filter(self.settings.namespace, "task", task_id)]
        found = await wait_for(
            self._need_log(),
            self._projections,
            subjects,
            ended,
            timeout,
            looks=lambda: look(self._projections.query, task_id=task_id, presence=self._presence),
        )
        if found is not None and not isinstance(found, Blocked):
            return found
        view = await self.task(task_id)
        raise await self._not_ended("task", task_id, view, found, timeout)

    async def _not_ended(
        self,
        kind: str,
        item_id: str,
        view: WorkflowView | TaskView | None,
        found: Blocked | None,
        timeout: float,
    ) -> WaitTimeout:
        """Why a wait for ``kind`` ``item_id`` (now ``view``) ends without its end: stuck
        (``found``), or out of time, saying what holds it up."""
        status = view.status if view else None
        if found is not None:
            return stuck_error(kind, item_id, status, found)
        return await timed_out(
            self._need_log(),
            self._projections,
            kind,
            item_id,
            status,
            timeout,
            presence=self._presence,
        )

    async def stalled(
        self, *, workflow_id: str | None = None, task_id: str | None = None
    ) -> list[str]:
        """Why a workflow (or a task) has not ended, as the projections show it; empty when
        nothing holds it up."""
        if (workflow_id is None) == (task_id is None):
            raise ConfigError("give one of workflow_id or task_id")
        return await stalled(
            self._projections.query,
            workflow_id=workflow_id,
            task_id=task_id,
            presence=self._presence,
        )

    # --- events ----------------------------------------------------------------------------

    async def events(
        self,
        *,
        workflow_id: str | None = None,
        task_id: str | None = None,
        after_seq: int | None = None,
        last: int | None = None,
        follow: bool = False,
        verified: bool = True,
    ) -> AsyncIterator[Event]:
        """Events straight from the log, in stream order, each with its checks
        (:class:`~swarmlog.control.eventstream.Event`): those of ``workflow_id`` (from its
        first event) or ``task_id`` when given, from after ``after_seq``, or the ``last`` N
        messages of the stream, else from the start. ``follow`` keeps yielding new ones (for a
        workflow, until its ``workflow_completed``). ``verified=False`` skips asking the
        projector for its verdicts (``verified`` is then ``None``)."""
        log = self._need_log()
        if workflow_id is not None:
            workflow_id = check_name(workflow_id, "workflow id", "workflow_id")
        if task_id is not None:
            task_id = check_name(task_id, "task id", "task_id")
        for name, value, least in (("after_seq", after_seq, 0), ("last", last, 1)):
            if value is not None and (isinstance(value, bool) or value < least):
                raise ConfigError(f"{name} {value!r} is not an integer >= {least}", parameter=name)
        if after_seq is not None:
            start = after_seq + 1
        elif last is not None:
            start = max(1, await log.last_seq() - last + 1)
        else:
            start = await self._first_seq(workflow_id, task_id)
        projections = self._projections if verified else None
        stream = read_events(
            log,
            projections,
            self.settings.namespace,
            start=start,
            follow=follow,
            workflow_id=workflow_id,
            task_id=task_id,
        )
        async for event in stream:
            yield event

    async def last_seq(self) -> int:
        """The stream's last sequence (0 while it is empty)."""
        return await self._need_log().last_seq()

    async def queues(self) -> list[QueueState]:
        """Every durable consumer of the namespace's stream (the roles' work queues, the
        routers', the inboxes) and where it stands: messages waiting, in hand, redelivered."""
        return await self._need_log().queues()

    async def messages(self, start: int = 1) -> AsyncIterator[list[StoredMessage]]:
        """The stream's raw messages from sequence ``start`` to its current end, in batches
        (what the stream chain and an auditor's checks read)."""
        log = self._need_log()
        last = await log.last_seq()
        if start > last:
            return
        async for batch in log.read(start, until_seq=last):
            yield [m for m in batch if m.seq <= last]

    async def folded(self, seq: int, timeout: float = 5.0) -> int | None:
        """Wait up to ``timeout`` seconds for the live projector to fold stream sequence
        ``seq``: its position then (short of ``seq`` when the time ran out), ``None`` when no
        projector answers."""
        return await self._projections.wait(seq, timeout)

    async def projection_state(self) -> LiveState:
        """The projection's position and state hash, read at one point."""
        return await self._projections.state()

    async def journal(self, task_id: str) -> list[dict[str, Any]]:
        """A task's call journal (its model and tool call events, ``seq``, ``type`` and the
        decoded ``payload``, in stream order): what its conversation is read from (see
        :func:`swarmlog.rendering.conversation.conversation`)."""
        task_id = check_name(task_id, "task id")
        types = ", ".join(f"'{t}'" for t in JOURNAL_TYPES)
        rows = await self._projections.query(
            f"SELECT seq, type, payload FROM events WHERE type IN ({types})"
            f" AND subject LIKE '%.task.{task_id}.%'"
            f" AND json_extract_string(payload, '$.task_id') = '{task_id}' ORDER BY seq"
        )
        return [{**row, "payload": json.loads(row["payload"])} for row in rows]

    async def _first_seq(self, workflow_id: str | None, task_id: str | None) -> int:
        """Where a workflow's or task's events start, as the projection knows it (else 1)."""
        if workflow_id is not None:
            where = f"workflow_id = '{workflow_id}'"
        elif task_id is not None:
            where = f"json_extract_string(payload, '$.task_id') = '{task_id}'"
        else:
            return 1
        rows = await self._projections.query(f"SELECT min(seq) AS seq FROM events WHERE {where}")
        return int(rows[0]["seq"]) if rows and rows[0]["seq"] is not None else 1

    @contextlib.asynccontextmanager
    async def previews(self, task_id: str) -> AsyncIterator[AsyncIterator[TextPreview]]:
        """The partial text of ``task_id``'s model calls as it comes (``swarmlog watch``):
        announced by its agent outside the log, kept only from an agent of the task's role
        (:mod:`swarmlog.control.previews`), from the moment the context is entered::

            async with client.previews("t1") as pieces:
                await client.submit_task("summarize", text, task_id="t1")
                async for piece in pieces:
                    print(piece.text, end="")
        """
        log = self._need_log()
        task_id = check_name(task_id, "task id", "task_id")
        roles: dict[str, str | None] = {}

        async def pieces(heard: AsyncIterator[tuple[str, bytes]]) -> AsyncIterator[TextPreview]:
            task_role: str | None = None
            async for subject, data in heard:
                agent_id = subject.split(".")[-2]
                if task_role is None:
                    task_role = await self._task_role(log, task_id)
                if agent_id not in roles:
                    roles[agent_id] = await self._role_of(agent_id)
                piece = preview_of(subject, data, roles[agent_id], task_role)
                if piece is not None:
                    yield piece

        async with log.listen(live_filter(self.settings.namespace, task_id)) as heard:
            yield pieces(heard)

    async def _task_role(self, log: EventLog, task_id: str) -> str | None:
        """The role ``task_id`` is assigned to. An agent announces text only for a task it
        holds, so its assignment is on the log before the first piece: when the projection
        does not show it yet, wait for the projection to reach the log's end and look again
        (the first piece would be dropped otherwise)."""
        task = await self.task(task_id)
        if task is None or task.role is None:
            await self._projections.wait(await log.last_seq(), timeout=5.0)
            task = await self.task(task_id)
        return task.role if task is not None else None

    async def _role_of(self, agent_id: str) -> str | None:
        try:
            agent_id = check_name(agent_id, "agent id")  # from a subject: SQL only once checked
        except ConfigError:
            return None
        rows = await self._projections.query(
            f"SELECT role FROM agents WHERE agent_id = '{agent_id}'"
        )
        return str(rows[0]["role"]) if rows and rows[0]["role"] is not None else None

    # --- views -----------------------------------------------------------------------------

    async def workflows(self) -> list[WorkflowRow]:
        """Workflows, newest first (``swarmlog workflows``)."""
        return await views.workflows(self._projections.query)

    async def workflow(self, workflow_id: str) -> WorkflowView | None:
        """One workflow, ``None`` when there is none of that id (yet)."""
        return await views.workflow(self._projections.query, workflow_id)

    async def tasks(
        self, *, workflow_id: str | None = None, status: str | None = None, limit: int = 50
    ) -> list[TaskRow]:
        """Tasks, most recently changed first (``swarmlog tasks``)."""
        query = self._projections.query
        return await views.tasks(query, workflow_id=workflow_id, status=status, limit=limit)

    async def task(self, task_id: str) -> TaskView | None:
        """One task, ``None`` when there is none of that id (yet)."""
        return await views.task(self._projections.query, task_id)

    async def show(self, item_id: str) -> WorkflowDetail | TaskDetail:
        """A workflow with its graph of steps, or a task with its history (``swarmlog show``);
        while it is open, ``blocked`` says what holds it up that will not clear by itself."""
        query = self._projections.query
        found = await views.show(query, item_id)
        if isinstance(found, WorkflowDetail):
            if found.workflow.status != "running":
                return found
            why = await blocked(
                query, workflow_id=found.workflow.workflow_id, presence=self._presence
            )
            return msgspec.structs.replace(found, blocked=why)
        if found.task.status in _TASK_ENDS:
            return found
        why = await blocked(query, task_id=found.task.task_id, presence=self._presence)
        return msgspec.structs.replace(found, blocked=why)

    async def agents(self) -> list[AgentRow]:
        """Agents: credential, registration, status, and liveness and load from their
        presence (``swarmlog agents``)."""
        return await views.agents(self._projections.query, self._presence)

    async def budgets(self) -> list[BudgetRow]:
        """Token budgets per agent and workflow (``swarmlog budgets``)."""
        return await views.budgets(self._projections.query)

    async def escalations(
        self, *, include_resolved: bool = False, workflow_id: str | None = None
    ) -> list[EscalationRow]:
        """Open escalations, oldest first (``swarmlog escalations list``)."""
        return await views.escalations(
            self._projections.query, include_resolved=include_resolved, workflow_id=workflow_id
        )

    async def escalation(self, escalation_id: str) -> EscalationDetail:
        """One escalation and how it can be resolved (``swarmlog escalations show``)."""
        return await views.escalation(self._projections.query, escalation_id)

    async def resolve_escalation(
        self,
        escalation_id: str,
        *,
        action: str | None = None,
        role: str | None = None,
        answer: str | None = None,
        note: str = "",
    ) -> Resolution:
        """Resolve an open escalation as ``swarmlog escalations resolve`` does: exactly one of
        ``action="retry"`` or ``"cancel"``, ``role`` (reassign the task to it) or ``answer``
        (its result); ``note`` says why, in the signed resolution."""
        return await resolve(
            self._projections.query,
            self._publish,
            escalation_id,
            action=action,
            role=role,
            answer=answer,
            note=note,
        )

    async def query(self, sql: str) -> QueryRows:
        """One read-only SELECT over the projections (``swarmlog query``)."""
        return views.query_rows(await self._projections.rows(sql))


def _reader(settings: Settings, log: JetStreamLog | None) -> ProjectionClient:
    """Reads of the projections over the log's connection, the file when no projector answers."""
    client = log.client if log is not None else None
    return ProjectionClient(client, settings.namespace, fallback=settings.projection_path)
