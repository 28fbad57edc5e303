"""Events straight from the log, each with the checks it passed: what ``swarmlog events tail``
prints and :meth:`Client.events <swarmlog.control.client.Client.events>` yields.

Two verdicts come with each event. ``intact`` is the stateless check anyone can make on the
message alone (it decodes, sits on its own subject, its signature matches the key it names).
``verified`` is the projector's: ``True`` when it applied the event (the key is an
operator-issued credential of the sender, the type is permitted, no kill switch, the chain
holds), ``False`` when it quarantined it (``problem`` then says why), ``None`` while the
projector has not folded it yet (or no projector answers). The projector's verdict is read once
per batch of messages: a wait until it has folded the batch, then its quarantine rows.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import msgspec

from swarmlog.bus.ports import EventLog, StoredMessage
from swarmlog.errors import SwarmlogError
from swarmlog.projections.client import ProjectionClient
from swarmlog.projections.verify import check
from swarmlog.schemas.types import Json

__all__ = ["VERDICT_WAIT", "Event", "describe", "read_events"]

log = logging.getLogger(__name__)

VERDICT_WAIT = 2.0
"""Seconds to wait for the projector to fold a batch before yielding it with ``verified`` left
``None``: a lagging projector must not hold a follower up."""


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """One message of the log with its checks (``events tail --json`` prints these fields)."""

    seq: int
    """Its stream sequence."""
    subject: str
    type: str | None
    """The payload's type; ``None`` when it does not decode."""
    id: str | None
    sender: str | None
    signer: str | None
    """The public key (hex) it is signed with."""
    workflow_id: str | None
    occurred_at: int | None
    """When its sender says it emitted it (ns since the epoch)."""
    intact: bool
    """It decodes, sits on its own subject, and its signature matches the key it names."""
    problem: str | None
    """Why it is not intact, or why the projector quarantined it."""
    verified: bool | None
    """The projector applied it (``True``), quarantined it (``False``), or has not folded it
    yet (``None``)."""
    payload: Json
    """The payload as JSON-like values (``None`` when it does not decode)."""


def describe(message: StoredMessage, namespace: str) -> Event:
    """``message`` with the stateless check; ``verified`` not known yet."""
    checked = check(message, namespace)
    env = checked.envelope
    return Event(
        seq=message.seq,
        subject=message.subject,
        type=env.type if env else None,
        id=env.id if env else None,
        sender=env.sender if env else None,
        signer=env.signer if env else None,
        workflow_id=env.workflow_id if env else None,
        occurred_at=env.occurred_at if env else None,
        intact=checked.rejection is None,
        problem=checked.rejection.reason if checked.rejection else None,
        verified=None,
        payload=msgspec.to_builtins(env.payload) if env else None,
    )


async def _verdicts(projections: ProjectionClient, events: list[Event]) -> list[Event]:
    """``events`` (in stream order) with the projector's verdict on each it has folded."""
    first, last = events[0].seq, events[-1].seq
    try:
        position = await projections.wait(last, timeout=VERDICT_WAIT)
        if position is None:  # no projector: the file's position, if it can be read
            position = (await projections.state()).position
        folded = min(last, position)
        if folded < first:
            return events
        rows = await projections.query(
            f"SELECT seq, reason FROM quarantine WHERE seq BETWEEN {first} AND {folded}"
        )
    except SwarmlogError as exc:  # no verdicts is no reason to stop showing the log
        log.debug("no projector verdicts for %d..%d: %s", first, last, exc)
        return events
    refused = {int(r["seq"]): str(r["reason"]) for r in rows}
    out = []
    for event in events:
        if event.seq > folded:
            out.append(event)
        elif event.seq in refused:
            problem = event.problem or refused[event.seq]
            out.append(msgspec.structs.replace(event, verified=False, problem=problem))
        else:
            out.append(msgspec.structs.replace(event, verified=True))
    return out


def _wanted(event: Event, workflow_id: str | None, task_id: str | None) -> bool:
    if workflow_id is not None and event.workflow_id != workflow_id:
        return False
    if task_id is not None:
        payload = event.payload
        return isinstance(payload, dict) and payload.get("task_id") == task_id
    return True


def _ends(event: Event, workflow_id: str | None) -> bool:
    """Following one workflow ends at its (intact) completion."""
    return (
        workflow_id is not None
        and event.type == "workflow_completed"
        and event.workflow_id == workflow_id
        and event.intact
    )


async def read_events(
    log_: EventLog,
    projections: ProjectionClient | None,
    namespace: str,
    *,
    start: int = 1,
    follow: bool = False,
    workflow_id: str | None = None,
    task_id: str | None = None,
) -> AsyncIterator[Event]:
    """The events of the log from stream sequence ``start`` (to its current end, or on as they
    come with ``follow``), only those of ``workflow_id`` and ``task_id`` when given, with the
    projector's verdicts when ``projections`` is given. Following a workflow ends after its
    ``workflow_completed``."""
    last = None if follow else await log_.last_seq()
    if last is not None and start > last:
        return
    async for batch in log_.read(start, until_seq=last, follow=follow):
        events = [describe(m, namespace) for m in batch]
        events = [e for e in events if _wanted(e, workflow_id, task_id)]
        if not events:
            continue
        if projections is not None:
            events = await _verdicts(projections, events)
        for event in events:
            yield event
            if follow and _ends(event, workflow_id):
                return
