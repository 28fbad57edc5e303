"""``deadlocks``: current cycles in the wait-for graph, and the past ones the watchdog reported."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import click

from swarmlog.agents.roles.watchdog import OPEN_WAITS_SQL, deadlocks_in
from swarmlog.cli.app import (
    CliContext,
    emit_json,
    pass_ctx,
    print_table,
    projection_rows,
)
from swarmlog.cli.options import json_option

__all__ = ["deadlocks"]

_PAST_SQL = (
    "SELECT seq, occurred_at, sender, payload FROM events"
    " WHERE type = 'deadlock_detected' ORDER BY seq"
)


def _current(ctx: CliContext) -> list[dict[str, Any]]:
    return [
        {
            "cycle": list(d.cycle),
            "waits": [dataclasses.asdict(w) for w in d.waits],
            "victim": d.victim.ref,
        }
        for d in deadlocks_in(projection_rows(ctx.settings, OPEN_WAITS_SQL))
    ]


def _past(ctx: CliContext) -> list[dict[str, Any]]:
    out = []
    for r in projection_rows(ctx.settings, _PAST_SQL):
        payload = json.loads(r["payload"]) if isinstance(r["payload"], str) else r["payload"]
        out.append(
            {
                "seq": r["seq"],
                "occurred_at": r["occurred_at"],
                "reported_by": r["sender"],
                "cycle": payload.get("cycle", []),
                "victim": payload.get("victim"),
                "victim_agent": payload.get("to"),
                "task_id": payload.get("task_id"),
                "action": "broken" if payload.get("victim") else "escalated",
            }
        )
    return out


@click.command()
@json_option
@pass_ctx
def deadlocks(ctx: CliContext, as_json: bool) -> None:
    """Deadlocks: cycles in the wait-for graph now, and those the watchdog reported (broken by
    making the youngest wait give up, or escalated)."""
    current, past = _current(ctx), _past(ctx)
    if as_json:
        emit_json({"current": current, "past": past})
        return
    print_table(
        ctx.console,
        "current deadlocks",
        ["cycle", "waits", "victim"],
        [[" -> ".join(d["cycle"]), len(d["waits"]), d["victim"]] for d in current],
    )
    print_table(
        ctx.console,
        "reported by the watchdog",
        ["seq", "cycle", "action", "victim", "agent", "task"],
        [
            [
                p["seq"],
                " -> ".join(p["cycle"]),
                p["action"],
                p["victim"],
                p["victim_agent"],
                p["task_id"],
            ]
            for p in past
        ],
    )
