"""``sim``: the deterministic swarm simulation (see :mod:`swarmlog.harness.sim`)."""

from __future__ import annotations

import click
import msgspec

from swarmlog.cli.app import CliContext, emit_json, pass_ctx, print_table
from swarmlog.cli.options import json_option
from swarmlog.harness.sim import FAULTS, SimResult, run_sim

__all__ = ["sim"]


def _faults(text: str | None) -> frozenset[str] | None:
    if text is None:
        return None
    chosen = frozenset(f.strip() for f in text.split(",") if f.strip() and f.strip() != "none")
    unknown = chosen - set(FAULTS)
    if unknown:
        raise click.BadParameter(
            f"unknown {', '.join(sorted(unknown))}; choose from {', '.join(FAULTS)} (or none)",
            param_hint="--faults",
        )
    return chosen


@click.command()
@click.option("--seed", default=1, show_default=True, type=click.IntRange(0, 2**63))
@click.option("--steps", default=200, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option(
    "--faults",
    help=f"Comma-separated, from {', '.join(FAULTS)}; 'none' for none (default: all).",
)
@click.option(
    "--seeds",
    default=1,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    help="Run this many seeds, from --seed on.",
)
@click.option(
    "--every-step",
    is_flag=True,
    help="Also compare the projection with a refold of the log after every step (slow).",
)
@json_option
@pass_ctx
def sim(
    ctx: CliContext,
    seed: int,
    steps: int,
    faults: str | None,
    seeds: int,
    every_step: bool,
    as_json: bool,
) -> None:
    """Simulate a swarm under faults with the real routing, claims, retries, breakers, deadlock
    detection and fold on a virtual clock; check the invariants. The same seed always gives the
    same run and the same state hash; exit 1 when a seed breaks an invariant."""
    chosen = _faults(faults)
    results: list[SimResult] = []
    for s in range(seed, seed + seeds):
        results.append(run_sim(s, steps, chosen, every_step=every_step))
    failed = [r for r in results if not r.ok]
    if as_json:
        emit_json(
            {
                "runs": [msgspec.to_builtins(r) for r in results] if seeds <= 100 else [],
                "seeds": seeds,
                "failed_seeds": [r.seed for r in failed],
                "state_hash": results[-1].state_hash if seeds == 1 else None,
            }
        )
    else:
        _print(ctx, results)
    for r in failed:
        ctx.warn(
            f"seed {r.seed} broke an invariant: {r.violations[0]}; replay it with"
            f" `swarmlog sim --seed {r.seed} --steps {steps}"
            + (f" --faults {','.join(r.faults) or 'none'}`" if faults is not None else "`"),
        )
    if failed:
        raise SystemExit(1)


def _print(ctx: CliContext, results: list[SimResult]) -> None:
    if len(results) == 1:
        (r,) = results
        print_table(
            ctx.console,
            f"sim seed {r.seed}, {r.steps} steps",
            ["figure", "value"],
            [
                ["events", r.events],
                ["tasks", r.tasks],
                ["faults injected", r.injected],
                ["deadlocks broken", r.deadlocks],
                ["circuit changes", r.circuit_changes],
                ["invariants", "all held" if r.ok else "; ".join(r.violations)],
            ],
        )
        ctx.say(f"state hash {r.state_hash}")
        return
    held = sum(r.ok for r in results)
    events = sum(r.events for r in results)
    ctx.say(
        f"{len(results)} seeds from {results[0].seed}: {held} held every invariant,"
        f" {len(results) - held} did not; {events:,} events in all"
    )
