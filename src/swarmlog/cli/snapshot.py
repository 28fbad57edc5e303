"""``snapshot create|list|restore``: projection snapshots in the namespace's object store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from swarmlog.agents.publisher import Publisher
from swarmlog.cli.app import CliContext, emit_json, pass_ctx, print_table, run
from swarmlog.cli.options import file_option, json_option
from swarmlog.config import Settings
from swarmlog.control.keystore import KeyStore
from swarmlog.control.snapshots import restore_snapshot
from swarmlog.control.system import open_log, open_projections
from swarmlog.errors import ServerError, VerificationError
from swarmlog.schemas.payloads import SnapshotTaken

__all__ = ["snapshot"]


@click.group()
def snapshot() -> None:
    """Projection snapshots: the projection at a stream sequence, with its state hash."""


async def _record(settings: Settings, taken: dict[str, Any]) -> None:
    """The operator signs the snapshot into the log (the audit trail of what was taken)."""
    async with open_log(settings) as log:
        publisher = Publisher(log, KeyStore(settings.keys_dir).operator(), settings.namespace)
        await publisher.publish(
            SnapshotTaken(seq=taken["seq"], state_hash=taken["state_hash"], name=taken["name"])
        )


@snapshot.command("create")
@json_option
@pass_ctx
def snapshot_create(ctx: CliContext, as_json: bool) -> None:
    """Ask the live projector for a snapshot of the projection now."""
    settings = ctx.settings

    async def take() -> dict[str, Any] | None:
        async with open_projections(settings) as projections:
            return await projections.snapshot()

    taken = run(take())
    if taken is None:
        raise ServerError("no projector answers; start one with `swarmlog up --detach`")
    run(_record(settings, taken))
    if as_json:
        emit_json(taken)
        return
    ctx.say(
        f"snapshot {taken['name']} at seq {taken['seq']}, state hash"
        f" {taken['state_hash'][:16]}…, {taken['size']:,} bytes"
    )


async def _list(settings: Settings) -> list[dict[str, Any]]:
    async with open_log(settings) as log:
        return await (await log.snapshot_store()).catalog()


@snapshot.command("list")
@json_option
@pass_ctx
def snapshot_list(ctx: CliContext, as_json: bool) -> None:
    """The stored snapshots, oldest first."""
    found = run(_list(ctx.settings))
    if as_json:
        emit_json({"snapshots": found})
        return
    print_table(
        ctx.console,
        "snapshots",
        ["name", "seq", "state hash", "bytes", "created"],
        [_row(s) for s in found],
    )
    if not found:
        ctx.warn("no snapshots yet; `swarmlog snapshot create` takes one")


def _row(s: dict[str, Any]) -> list[Any]:
    return [
        s["name"],
        s.get("seq"),
        str(s.get("state_hash", ""))[:16],
        s["size"],
        s.get("created_at"),
    ]


async def _restore(settings: Settings, name: str, to: Path) -> dict[str, Any]:
    async with open_log(settings) as log:
        return await restore_snapshot(log, settings, name, to)


@snapshot.command("restore")
@click.argument("name")
@file_option("--to", "The new projection file (default: restored-<name>.duckdb in the data dir).")
@json_option
@pass_ctx
def snapshot_restore(ctx: CliContext, name: str, to: Path | None, as_json: bool) -> None:
    """Load snapshot NAME, check it against its recorded state hash (a mismatch is refused,
    exit 1), and catch it up from the stream into a new projection file."""
    settings = ctx.settings
    target = to or settings.data_dir / f"restored-{name}.duckdb"
    try:
        restored = run(_restore(settings, name, target))
    except VerificationError as exc:
        ctx.warn(f"error: {exc}")
        raise SystemExit(1) from None
    if as_json:
        emit_json(restored)
        return
    ctx.say(
        f"restored {name} (seq {restored['snapshot_seq']}) + {restored['caught_up']} events"
        f" → seq {restored['position']}, state hash {restored['state_hash'][:16]}…,"
        f" in {restored['path']}"
    )
