"""What a submission publishes, checked before anything is: a workflow's ``workflow_submitted``
(the pattern's settings with the options of ``swarmlog submit`` on top of them) and a single
task's ``task_offered``. Bad input is a :class:`~swarmlog.errors.ConfigError` naming the
argument (``parameter``), before the log sees anything.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import msgspec

from swarmlog.agents.policy.planning import PlanError, validate
from swarmlog.agents.policy.supervision import supervisor_spec
from swarmlog.agents.policy.workflows import plan_for
from swarmlog.control.checks import conform
from swarmlog.errors import ConfigError, SchemaError
from swarmlog.schemas.codec import check_nesting
from swarmlog.schemas.payloads import TaskOffered, WorkflowSubmitted
from swarmlog.schemas.types import PRIORITIES, Json, Name

__all__ = ["PATTERNS", "Pattern", "new_id", "task_offer", "workflow_submission"]

Pattern = Literal["pipeline", "debate", "custom", "supervisor", "swarm"]
PATTERNS: tuple[Pattern, ...] = ("pipeline", "debate", "custom", "supervisor", "swarm")

_MAX_BUDGET = 2**40


def new_id(prefix: str) -> str:
    """A fresh id: ``wf-<random>``, ``t-<random>``."""
    return f"{prefix}-{secrets.token_hex(4)}"


def _id(value: str, parameter: str) -> str:
    reason = f"{parameter} {value!r} is not valid: use 1-64 lowercase letters, digits, - and _"
    return conform(value, Name, reason, parameter)


def _json(value: Any, parameter: str) -> Json:
    """``value`` as plain JSON values (what the log can carry)."""
    try:
        return msgspec.json.decode(msgspec.json.encode(value))
    except (TypeError, msgspec.EncodeError, OverflowError) as exc:
        raise ConfigError(f"{parameter} is not JSON-like ({exc})", parameter=parameter) from None


def _in_range(value: int | None, low: int, high: int, parameter: str) -> None:
    if value is not None and (isinstance(value, bool) or not low <= value <= high):
        raise ConfigError(f"{parameter} {value!r} is not in {low}..{high}", parameter=parameter)


def workflow_submission(
    pattern: str,
    settings: Mapping[str, Any] | None = None,
    *,
    data: Json = None,
    stages: Sequence[str] = (),
    fail_fast: bool = False,
    budget_tokens: int | None = None,
    workflow_id: str | None = None,
    **named: Any,
) -> tuple[str, WorkflowSubmitted]:
    """The workflow's id and its ``workflow_submitted``: ``settings`` (the pattern's, as
    ``submit --input``) with ``stages``, ``data`` (what the first step gets: the spec's
    ``input``) and the ``named`` options (``question``, ``goal``, ``debaters``...; ``None`` means
    not given) on top of them, checked as the conductor will check them."""
    if pattern not in PATTERNS:
        raise ConfigError(
            f"pattern {pattern!r} is not one of {', '.join(PATTERNS)}", parameter="pattern"
        )
    if settings is not None and not isinstance(settings, Mapping):
        raise ConfigError("input must be a JSON object (the pattern's settings)", parameter="input")
    spec: dict[str, Any] = dict(_json(dict(settings or {}), "input"))
    if isinstance(stages, str):
        raise ConfigError("stages must be a list of capabilities", parameter="stages")
    if stages:
        spec["stages"] = list(stages)
    if data is not None:
        spec["input"] = _json(data, "data")
    _in_range(named.get("debaters"), 2, 16, "debaters")
    _in_range(named.get("rounds"), 1, 5, "rounds")
    _in_range(budget_tokens, 1, _MAX_BUDGET, "budget_tokens")
    spec |= {key: _json(value, key) for key, value in named.items() if value is not None}
    if fail_fast:
        spec["on_escalation"] = "fail"
    try:
        if pattern == "supervisor":
            supervisor_spec(spec)  # its plan comes from the planner, checked when it does
        else:
            validate(plan_for(pattern, spec))
    except PlanError as exc:
        raise ConfigError(f"cannot run this {pattern}: {exc.message}", parameter="input") from None
    wf = _id(workflow_id, "workflow_id") if workflow_id is not None else new_id("wf")
    payload = WorkflowSubmitted(
        pattern=pattern,  # one of PATTERNS, checked above
        input=spec,
        budget_tokens=budget_tokens,
    )
    _nesting(payload)
    return wf, payload


def task_offer(
    capability: str,
    input: Json,
    *,
    task_id: str | None,
    priority: str,
    mode: str,
    deadline: float | None,
    internal_only: bool,
) -> TaskOffered:
    """A single task for whoever has ``capability`` (``mode="swarm"``: the first capable agent
    that claims it), checked against the event schema: the arguments of
    :meth:`~swarmlog.control.client.Client.submit_task`, which gives their defaults
    (``deadline``: seconds from now)."""
    if deadline is not None and not deadline > 0:
        raise ConfigError(f"deadline {deadline!r} is not > 0 seconds", parameter="deadline")
    if priority not in PRIORITIES:
        raise ConfigError(
            f"priority {priority!r} is not one of {', '.join(PRIORITIES)}", parameter="priority"
        )
    if mode not in ("routed", "swarm"):
        raise ConfigError(f"mode {mode!r} is not routed or swarm", parameter="mode")
    fields = {
        "task_id": _id(task_id, "task_id") if task_id is not None else new_id("t"),
        "capability": capability,
        "priority": priority,
        "input": _json(input, "input"),
        "mode": mode,
        "deadline_at": None if deadline is None else time.time_ns() + int(deadline * 1e9),
        "internal_only": internal_only,
    }
    try:
        offer = msgspec.convert(fields, TaskOffered)
    except msgspec.ValidationError as exc:
        # "Expected `str` matching regex '...' - at `$.capability`": name the argument.
        found = re.search(r" - at `\$\.(\w+)", str(exc))
        name = found.group(1) if found else "input"
        reason = str(exc).split(" - at ", 1)[0]
        raise ConfigError(
            f"{name} {fields.get(name)!r} is not valid: {reason}", parameter=name
        ) from None
    _nesting(offer)
    return offer


def _nesting(payload: msgspec.Struct) -> None:
    try:
        check_nesting(payload)
    except SchemaError as exc:
        raise ConfigError(exc.message, parameter="input") from None
