"""``submit PATTERN``: start a workflow, optionally wait for its outcome (through
:class:`~swarmlog.control.client.Client`, as a program would): exit 1 when it failed, or as soon
as it is stuck (:class:`~swarmlog.errors.Stuck`: the reason on stderr), 2 when the wait ran out."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from swarmlog.cli.app import CliContext, emit_json, option_for, pass_ctx, run
from swarmlog.cli.options import json_option
from swarmlog.config import Settings
from swarmlog.control.client import Client
from swarmlog.control.records import Submitted, WorkflowView
from swarmlog.control.submitting import PATTERNS
from swarmlog.errors import ConfigError, Stuck

__all__ = ["submit"]


def _json_arg(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{what} is not JSON ({exc}); quote it, e.g. '{{\"a\": 1}}'") from None


def _data(text: str | None) -> Any:
    """``--data``: JSON, or plain text (which is data too)."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _as_option(exc: ConfigError) -> ConfigError:
    """The client's error about one of its arguments, said with the option's name."""
    name = exc.parameter
    option = option_for(name)
    if name is None or option is None or not exc.message.startswith(f"{name} "):
        return exc
    return ConfigError(option + exc.message.removeprefix(name), parameter=name)


async def _submit(
    settings: Settings, wait: float | None, **options: Any
) -> tuple[Submitted, WorkflowView | Stuck | None]:
    # Without a server the options are still checked first: the error says what is wrong.
    async with await Client.connect(settings, require_server=False) as client:
        try:
            submitted = await client.submit_workflow(**options)
        except ConfigError as exc:
            raise _as_option(exc) from None
        if wait is None:
            return submitted, None
        try:
            return submitted, await client.wait(submitted.workflow_id, timeout=wait)
        except Stuck as exc:  # it cannot move by itself: said now, not at the timeout
            return submitted, exc


@click.command()
@click.argument("pattern", type=click.Choice(PATTERNS))
@click.option("--input", help="The pattern's settings as a JSON object.")
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
    "budget_tokens",
    type=click.IntRange(1, 2**40),
    help="Token budget: warned at 80 %, stopped at 100 %.",
)
@click.option("--workflow-id", help="Default: wf-<random>.")
@click.option(
    "--wait",
    is_flag=True,
    help="Wait for the outcome; exit 1 if it failed, or at once if it cannot move by itself.",
)
@click.option("--timeout", default=300.0, show_default=True, type=click.FloatRange(min=0.1))
@json_option
@pass_ctx
def submit(ctx: CliContext, /, wait: bool, timeout: float, as_json: bool, **options: Any) -> None:
    """Start a workflow: pipeline (--stage ... --data), debate (--question), supervisor
    (--goal), swarm or custom (--input)."""
    # The other options are the client's arguments, by name: each option's destination is the
    # argument it gives (as its errors say, see _as_option).
    settings = ctx.settings
    settings.require_data_dir()
    options["input"] = _json_arg(options["input"], "--input")
    options["data"] = _data(options["data"])
    submitted, view = run(_submit(settings, timeout if wait else None, **options))
    out: dict[str, Any] = {"workflow_id": submitted.workflow_id, "seq": submitted.seq}
    if isinstance(view, Stuck):
        if as_json:
            emit_json(out | {"status": view.status, "result": None, "blocked": view.blocked})
        click.echo(f"error: {view}", err=True)
        sys.exit(1)
    if view is not None:
        out |= {"status": view.status, "result": view.result}
    if as_json:
        emit_json(out)
    elif view is not None:
        ctx.say(f"workflow {submitted.workflow_id} {view.status}")
        click.echo(json.dumps(view.result, indent=2))
    else:
        ctx.say(f"submitted workflow {submitted.workflow_id} at seq {submitted.seq}")
    if view is not None and view.status != "succeeded":
        sys.exit(1)
