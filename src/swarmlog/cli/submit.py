"""``submit PATTERN``: start a workflow, optionally wait for its outcome."""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import time
from typing import Any

import click
import msgspec

from swarmlog.agents.policy.planning import PlanError, validate
from swarmlog.agents.policy.supervision import supervisor_spec
from swarmlog.agents.policy.workflows import plan_for
from swarmlog.agents.publisher import Publisher
from swarmlog.cli.app import CliContext, emit_json, pass_ctx, run
from swarmlog.config import Settings
from swarmlog.control.keystore import KeyStore
from swarmlog.control.system import open_log, open_projections
from swarmlog.errors import ConfigError, ServerError
from swarmlog.schemas.payloads import WorkflowSubmitted
from swarmlog.schemas.types import Name

__all__ = ["submit"]


def _json_arg(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{what} is not JSON ({exc}); quote it, e.g. '{{\"a\": 1}}'") from None


def _spec(
    pattern: str,
    base: Any,
    stages: tuple[str, ...],
    data: str | None,
    named: dict[str, Any],
) -> dict[str, Any]:
    """The pattern's settings: ``--input`` with the other options on top of it, checked."""
    spec: dict[str, Any] = dict(base) if isinstance(base, dict) else {}
    if base is not None and not isinstance(base, dict):
        raise ConfigError("--input must be a JSON object (the pattern's settings)")
    if stages:
        spec["stages"] = list(stages)
    if data is not None:
        try:
            spec["input"] = json.loads(data)
        except ValueError:
            spec["input"] = data  # plain text is data too
    spec |= {key: value for key, value in named.items() if value is not None}
    try:
        if pattern == "supervisor":
            supervisor_spec(spec)  # its plan comes from the planner, checked when it does
        else:
            validate(plan_for(pattern, spec))
    except PlanError as exc:
        raise ConfigError(f"cannot run this {pattern}: {exc.message}") from None
    return spec


async def _publish(
    settings: Settings, workflow_id: str, pattern: str, spec: Any, budget: int | None
) -> int:
    operator = KeyStore(settings.keys_dir).operator()
    async with open_log(settings) as log:
        published = await Publisher(log, operator, settings.namespace).publish(
            WorkflowSubmitted(pattern=pattern, input=spec, budget_tokens=budget),  # type: ignore[arg-type]
            workflow_id=workflow_id,
        )
    return published.seq


async def _outcome(settings: Settings, workflow_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    sql = f"SELECT status, result FROM workflows WHERE workflow_id = '{workflow_id}'"
    async with open_projections(settings) as projections:
        while True:
            rows = (await projections.rows(sql)).rows
            if rows and rows[0][0] != "running":
                status, result = rows[0]
                return {"status": status, "result": json.loads(result) if result else None}
            if time.monotonic() > deadline:
                raise ServerError(
                    f"workflow {workflow_id} is still running after {timeout:g} s;"
                    f" follow it with `swarmlog show {workflow_id}`"
                )
            await asyncio.sleep(0.2)  # a CLI polling the projection, not a test


@click.command()
@click.argument(
    "pattern", type=click.Choice(["pipeline", "debate", "custom", "supervisor", "swarm"])
)
@click.option("--input", "input_json", help="The pattern's settings as a JSON object.")
@click.option("--stage", "stages", multiple=True, help="pipeline: a stage's capability, in order.")
@click.option("--data", help="What the first step gets (JSON, or plain text).")
@click.option("--question", help="debate: the question.")
@click.option("--debaters", type=click.IntRange(2, 16), help="debate: how many answer it.")
@click.option("--capability", help="debate: the debaters' capability.")
@click.option("--judge", help="debate: the judge's capability.")
@click.option(
    "--rounds", type=click.IntRange(1, 5), help="debate: answering rounds (later ones see others)."
)
@click.option("--goal", help="supervisor: what to achieve (the planner plans it).")
@click.option("--planner", help="supervisor: the planner's capability (default plan).")
@click.option("--reviewer", help="supervisor: a reviewer's capability (default: its own check).")
@click.option("--synthesizer", help="supervisor: who turns the outputs into the result.")
@click.option(
    "--fail-fast", is_flag=True, help="Fail at a step's escalation instead of waiting for a human."
)
@click.option(
    "--budget",
    type=click.IntRange(1, 2**40),
    help="Token budget: warned at 80 %, stopped at 100 %.",
)
@click.option("--workflow-id", help="Default: wf-<random>.")
@click.option("--wait", is_flag=True, help="Wait for the outcome; exit 1 if it failed.")
@click.option("--timeout", default=300.0, show_default=True, type=click.FloatRange(min=0.1))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@pass_ctx
def submit(
    ctx: CliContext,
    pattern: str,
    input_json: str | None,
    stages: tuple[str, ...],
    data: str | None,
    question: str | None,
    debaters: int | None,
    capability: str | None,
    judge: str | None,
    rounds: int | None,
    goal: str | None,
    planner: str | None,
    reviewer: str | None,
    synthesizer: str | None,
    fail_fast: bool,
    budget: int | None,
    workflow_id: str | None,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Start a workflow: pipeline (--stage ... --data), debate (--question), supervisor
    (--goal), swarm or custom (--input)."""
    settings = ctx.settings
    settings.require_data_dir()
    spec = _spec(
        pattern,
        _json_arg(input_json, "--input"),
        stages,
        data,
        {
            "question": question,
            "debaters": debaters,
            "capability": capability,
            "judge": judge,
            "rounds": rounds,
            "goal": goal,
            "planner": planner,
            "reviewer": reviewer,
            "synthesizer": synthesizer,
        },
    )
    if fail_fast:
        spec["on_escalation"] = "fail"
    workflow_id = workflow_id or f"wf-{secrets.token_hex(4)}"
    try:
        msgspec.convert(workflow_id, Name)
    except msgspec.ValidationError:
        raise ConfigError(
            f"--workflow-id {workflow_id!r}: lowercase letters, digits, - and _"
        ) from None
    seq = run(_publish(settings, workflow_id, pattern, spec, budget))
    out: dict[str, Any] = {"workflow_id": workflow_id, "seq": seq}
    if wait:
        out |= run(_outcome(settings, workflow_id, timeout))
    if as_json:
        emit_json(out)
    elif wait:
        ctx.console.print(f"workflow {workflow_id} {out['status']}")
        click.echo(json.dumps(out["result"], indent=2))
    else:
        ctx.console.print(f"submitted workflow {workflow_id} at seq {seq}")
    if wait and out["status"] != "succeeded":
        sys.exit(1)
