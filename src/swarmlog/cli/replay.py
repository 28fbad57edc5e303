"""``replay`` and ``audit verify``: re-fold the stream from the start, independently of the live
projection."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import msgspec
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from swarmlog.cli.app import CliContext, emit_json, pass_ctx, print_table, run
from swarmlog.cli.options import file_option, json_option
from swarmlog.config import Settings
from swarmlog.control.keystore import KeyStore
from swarmlog.control.system import open_log, open_projections
from swarmlog.errors import ConfigError, KeyStoreError, VerificationError
from swarmlog.files import write_atomic
from swarmlog.projections.client import LiveState
from swarmlog.projections.projector import BatchResult, Projector
from swarmlog.projections.store import ProjectionStore
from swarmlog.projections.streamchain import (
    MAX_CHECKPOINT_BYTES,
    Checkpoint,
    StreamChain,
    chain_of,
    sign_checkpoint,
    verify_checkpoint,
)

__all__ = ["audit", "replay"]


@dataclass
class ReplayOutcome:
    position: int
    events: int
    applied: int
    quarantined: int
    state_hash: str


async def replay_into(
    settings: Settings,
    path: Path,
    *,
    until_seq: int | None,
    verify: bool,
    progress: Progress | None = None,
    as_agent: str | None = None,
) -> ReplayOutcome:
    """Fold the stream from sequence 1 into a fresh projection file at ``path``; read as the
    operator or, with ``as_agent``, as that read-only login (an auditor)."""
    operator_key = KeyStore(settings.keys_dir).operator_public_key()
    async with open_log(settings, agent_id=as_agent, direct_reads=as_agent is not None) as log_:
        last = await log_.last_seq()
        end = last if until_seq is None else min(until_seq, last)
        store = ProjectionStore(path)
        projector = Projector(
            log_, store, namespace=settings.namespace, operator_key=operator_key, verify=verify
        )
        totals = ReplayOutcome(0, 0, 0, 0, "")
        task = progress.add_task("replay", total=end) if progress is not None else None

        def on_batch(result: BatchResult) -> None:
            totals.applied += result.applied
            totals.quarantined += len(result.rejected)
            if progress is not None and task is not None:
                progress.update(task, completed=result.last_seq)

        try:
            totals.position = await projector.run(follow=False, until_seq=end, on_batch=on_batch)
            totals.events = totals.applied + totals.quarantined
            totals.state_hash = store.state_hash()
        finally:
            projector.close()
            store.close()
    return totals


@contextlib.contextmanager
def _progress(enabled: bool, ctx: CliContext) -> Iterator[Progress | None]:
    if not enabled:
        yield None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=ctx.err,
        transient=True,
    ) as progress:
        yield progress


@contextlib.contextmanager
def _target(to: Path | None) -> Iterator[Path]:
    if to is not None:
        if to.exists():
            raise ConfigError(
                f"{to} exists; replay writes a new projection file: choose a new path"
            )
        to.parent.mkdir(parents=True, exist_ok=True)
        yield to
        return
    with tempfile.TemporaryDirectory(prefix="swarmlog-replay-") as tmp:
        yield Path(tmp) / "replay.duckdb"


@click.command()
@file_option("--to", "Keep the file.")
@click.option("--until-seq", type=click.IntRange(min=1), help="Stop at this stream sequence.")
@click.option("--verify/--no-verify", default=True, show_default=True)
@click.option("--check", is_flag=True, help="Compare the state hash with the live projection.")
@json_option
@pass_ctx
def replay(
    ctx: CliContext,
    to: Path | None,
    until_seq: int | None,
    verify: bool,
    check: bool,
    as_json: bool,
) -> None:
    """Re-fold the stream into a fresh DuckDB file; with --check, compare with the live state."""
    settings = ctx.settings
    settings.require_data_dir()
    live = None
    if check:
        if not verify:
            raise ConfigError("--check compares verified projections; drop --no-verify")

        async def read_live() -> LiveState:
            async with open_projections(settings) as projections:
                return await projections.state()

        live = run(read_live())
        if until_seq is not None and until_seq != live.position:
            raise ConfigError(
                f"--check compares at the live position {live.position}; drop --until-seq"
            )
        until_seq = live.position
    with _target(to) as path, _progress(not as_json, ctx) as progress:
        outcome = run(
            replay_into(settings, path, until_seq=until_seq, verify=verify, progress=progress)
        )
    data: dict[str, Any] = {
        "events": outcome.events,
        "applied": outcome.applied,
        "quarantined": outcome.quarantined,
        "position": outcome.position,
        "state_hash": outcome.state_hash,
    }
    if to is not None:
        data["path"] = str(to)
    if live is not None:
        data["live_position"] = live.position
        data["live_state_hash"] = live.state_hash
        data["matches"] = outcome.state_hash == live.state_hash
    if as_json:
        emit_json(data)
    else:
        print_table(ctx.console, "replay", ["field", "value"], list(data.items()))
    if live is not None and not data["matches"]:
        raise SystemExit(1)


@click.group()
def audit() -> None:
    """Check the log's integrity."""


async def _chain(
    settings: Settings, until_seq: int | None = None, as_agent: str | None = None
) -> StreamChain:
    async with open_log(settings, agent_id=as_agent, direct_reads=as_agent is not None) as log_:
        return await chain_of(log_, until_seq)


def _load_checkpoint(path: Path) -> Checkpoint:
    """The checkpoint in ``path``: a regular file of at most :data:`MAX_CHECKPOINT_BYTES`
    (``/dev/zero`` or a FIFO would otherwise be read until memory runs out, or forever)."""
    try:
        # Non-blocking: opening a FIFO with no writer must not hang before it can be refused.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise ConfigError(
                f"{path} is not a regular file; pass a checkpoint file written by"
                " `swarmlog audit checkpoint`"
            )
        try:
            data = file.read(MAX_CHECKPOINT_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_CHECKPOINT_BYTES:
        raise ConfigError(
            f"{path} is larger than any checkpoint ({MAX_CHECKPOINT_BYTES} bytes at most); pass"
            " a checkpoint file written by `swarmlog audit checkpoint`"
        )
    try:
        return msgspec.json.decode(data, type=Checkpoint)
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{path} is not a swarmlog checkpoint: {exc}") from None


@audit.command("verify")
@click.option(
    "--against",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A checkpoint file (from `audit checkpoint`): the stream must still match it.",
)
@click.option(
    "--as",
    "as_agent",
    metavar="AUDITOR",
    help="Read the stream as this auditor (its key from `keys generate`, in this data dir's"
    " keys/agents), not as the operator: all it takes is that key and keys/operator.pub.",
)
@json_option
@pass_ctx
def audit_verify(
    ctx: CliContext, against: Path | None, as_agent: str | None, as_json: bool
) -> None:
    """Verify every event on the stream and the stream's hash chain; exit 1 if anything is
    rejected, a sender's chain is broken, events are missing, or the stream no longer matches
    the checkpoint given with --against."""
    settings = ctx.settings
    settings.require_data_dir()
    if as_agent is not None and not KeyStore(settings.keys_dir).agent_paths(as_agent)[0].exists():
        raise KeyStoreError(
            f"no key for auditor {as_agent!r} in {settings.keys_dir / 'agents'}: make one with"
            f" `swarmlog keys generate --agent-id {as_agent}` and have the operator issue it"
            " (`swarmlog keys issue --role auditor --public-key KEY --login-key LOGIN`)"
        )
    checkpoint = None
    if against is not None:
        checkpoint = _load_checkpoint(against)
        try:
            verify_checkpoint(checkpoint, KeyStore(settings.keys_dir).operator_public_key())
        except VerificationError as exc:
            ctx.warn(f"error: {exc.message}; the checkpoint is not evidence, nothing checked")
            raise SystemExit(1) from None
    with _target(None) as path, _progress(not as_json, ctx) as progress:
        outcome = run(
            replay_into(
                settings, path, until_seq=None, verify=True, progress=progress, as_agent=as_agent
            )
        )
        with ProjectionStore(path, read_only=True) as store:
            rejected = store.rows("SELECT seq, reason, detail FROM quarantine ORDER BY seq")
            breaks = store.rows(
                "SELECT seq, sender, expected_seq, got_seq FROM chain_breaks ORDER BY seq"
            )
    chain = run(_chain(settings, as_agent=as_agent))
    data: dict[str, Any] = {
        "events_checked": outcome.events,
        "valid": outcome.applied,
        "rejected": [{"seq": s, "reason": r, "detail": d} for s, r, d in rejected],
        "chain_breaks": [
            {"seq": s, "sender": a, "expected_seq": e, "got_seq": g} for s, a, e, g in breaks
        ],
        "position": outcome.position,
        "state_hash": outcome.state_hash,
        "stream_chain": {"head": chain.hexhead, "position": chain.position, "gaps": chain.gaps},
    }
    matches = True
    if checkpoint is not None:
        at = run(_chain(settings, checkpoint.seq, as_agent))
        matches = at.position == checkpoint.seq and at.hexhead == checkpoint.head
        data["checkpoint"] = {"seq": checkpoint.seq, "head": checkpoint.head, "matches": matches}
    if as_json:
        emit_json(data)
    else:
        ctx.say(
            f"{outcome.events} events checked: {outcome.applied} valid,"
            f" {len(rejected)} rejected, {len(breaks)} chain breaks;"
            f" stream chain head {chain.hexhead[:16]}… at seq {chain.position}"
        )
        if rejected:
            print_table(ctx.console, "rejected", ["seq", "reason", "detail"], rejected)
        if breaks:
            print_table(ctx.console, "chain breaks", ["seq", "sender", "expected", "got"], breaks)
        if chain.gaps:
            ctx.say(f"missing from the stream (deleted): {chain.gaps}")
        if checkpoint is not None:
            verdict = (
                "matches" if matches else "DOES NOT match (events deleted, reordered or rewritten)"
            )
            ctx.say(f"checkpoint at seq {checkpoint.seq}: the stream {verdict}")
    if rejected or breaks or chain.gaps or not matches:
        raise SystemExit(1)


@audit.command("checkpoint")
@file_option(
    "--out", "Where to write it (default: checkpoints/checkpoint-<seq>.json in the data dir)."
)
@json_option
@pass_ctx
def audit_checkpoint(ctx: CliContext, out: Path | None, as_json: bool) -> None:
    """Sign the stream chain's head at the stream's end with the operator key, into a file to
    keep elsewhere; `audit verify --against FILE` later checks any copy of the stream."""
    settings = ctx.settings
    settings.require_data_dir()
    operator = KeyStore(settings.keys_dir).operator()
    chain = run(_chain(settings))
    checkpoint = sign_checkpoint(
        operator,
        Checkpoint(
            namespace=settings.namespace,
            seq=chain.position,
            head=chain.hexhead,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            operator_key=operator.public_key,
        ),
    )
    target = out or settings.checkpoints_dir / f"checkpoint-{chain.position:012d}.json"
    write_atomic(target, msgspec.json.format(msgspec.json.encode(checkpoint)) + b"\n", mode=0o644)
    if as_json:
        emit_json(msgspec.to_builtins(checkpoint) | {"path": str(target)})
        return
    ctx.say(
        f"checkpoint at seq {checkpoint.seq}, head {checkpoint.head[:16]}…, signed by the"
        f" operator, written to {target}"
    )
