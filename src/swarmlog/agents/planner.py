"""A ready planner for the supervisor pattern: the model of its tier writes the plan.

::

    swarmlog agent start swarmlog:LLMPlanner --detach
    swarmlog submit supervisor --goal "check the text" --data '{"text": "fine"}' --wait

The planner gets what the supervisor sends a planner (the goal, its data, the capabilities the
registered agents have; a plan to revise or a refusal to answer) and asks the model for the
plan as **structured output**: a msgspec type (:func:`plan_type`) whose JSON Schema lists the
capabilities a step may use (an ``enum``) and bounds the plan at :attr:`LLMPlanner.max_steps`.
The answer is then checked by :func:`~swarmlog.agents.policy.supervision.accept_plan`, the very
checks the supervisor applies (no cycle, known dependencies, unique ids that fit in task ids,
only capabilities some agent has, bounded size; a revision keeps the steps done). A plan the
checks refuse goes back to the model in the same conversation with the reason, up to
:attr:`LLMPlanner.plan_retries` times; then the task fails with ``plan_refused`` (not retried:
the journal would answer the same calls the same way) and a message that names the last reason,
and the supervisor's ``on_escalation`` decides (a human by default, ``fail`` fails the workflow).

**Offline** (no model configured for the tier) the offline model answers the schema's minimal
instance, which is a valid plan by construction: one step, id ``x``, with the first capability
available for work (alphabetically, the planner's, the reviewer's and the synthesizer's left
out), no input of its own, so it gets the workflow's data. It is not a plan *for the goal* (no
model is there to read it); it is deterministic and it runs, so the supervisor pattern works end
to end with no key. Configure ``SWARMLOG_MODEL_LARGE`` (the planner's tier) for real plans.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from functools import lru_cache
from typing import Annotated, Any, ClassVar, Literal, cast

import msgspec

from swarmlog.agents.api import Agent, Context, TaskError, on
from swarmlog.agents.llm.messages import Message
from swarmlog.agents.policy.planning import Plan, PlanError, decode_plan
from swarmlog.agents.policy.supervision import MAX_STEP_ID, accept_plan
from swarmlog.schemas.payloads import TaskAssignment

__all__ = ["LLMPlanner", "plan_type"]

_STEP_ID = r"^[a-z0-9][a-z0-9_-]*$"  # ECMA-262 (JSON Schema), not \Z
_SHOWN = 2000
"""Characters of the goal's data (and of each done step's output) the model is shown."""

SYSTEM_PROMPT = (
    "You are the planner of a team of agents. You turn a goal into a plan: a few atomic steps,"
    " each done by one agent with one capability, in an order their dependencies give. Prefer"
    " few steps; steps that need each other's outputs depend on them, the others run in"
    " parallel."
)


@lru_cache(maxsize=64)
def plan_type(capabilities: tuple[str, ...], max_steps: int) -> type[msgspec.Struct]:
    """The structured output asked of the model: ``{"steps": [{"id", "capability",
    "depends_on", "description", "input"}]}`` with ``capability`` one of ``capabilities`` and
    1 to ``max_steps`` steps (msgspec writes its JSON Schema and checks the answer)."""
    if not capabilities:
        raise ValueError("a plan needs at least one capability to use")
    capability = cast(Any, Literal)[capabilities]
    step_id = Annotated[str, msgspec.Meta(pattern=_STEP_ID, min_length=1, max_length=MAX_STEP_ID)]
    step = msgspec.defstruct(
        "Step",
        [
            ("id", Annotated[step_id, msgspec.Meta(description="unique in the plan")]),
            ("capability", Annotated[capability, msgspec.Meta(description="who does it")]),
            (
                "depends_on",
                Annotated[
                    list[step_id], msgspec.Meta(description="ids of steps whose outputs it needs")
                ],
                msgspec.field(default_factory=list),
            ),
            ("description", Annotated[str, msgspec.Meta(description="what it does")], ""),
            (
                "input",
                Annotated[Any, msgspec.Meta(description="what it gets, when not the default")],
                None,
            ),
        ],
        kw_only=True,
        forbid_unknown_fields=True,
    )
    steps = Annotated[list[step], msgspec.Meta(min_length=1, max_length=max_steps)]  # type: ignore[valid-type]
    return msgspec.defstruct("Plan", [("steps", steps)], kw_only=True, forbid_unknown_fields=True)


class LLMPlanner(Agent):
    """A planner (capability ``plan``) whose plans come from the model of its tier (see the
    module's docstring). Subclass it to change the ``tier``, add domain knowledge to
    ``system_prompt``, describe capabilities in ``capability_notes`` or tighten ``max_steps``."""

    role = "llm-planner"
    capabilities = ("plan",)
    tier = "large"
    system_prompt: ClassVar[str] = SYSTEM_PROMPT
    """Who the model is; the rules of a valid plan are added to it for each task."""
    capability_notes: ClassVar[Mapping[str, str]] = {}
    """What a capability does, shown to the model next to its name."""
    max_steps: ClassVar[int] = 20
    """The largest plan asked for (the supervisor accepts up to 200)."""
    plan_retries: ClassVar[int] = 2
    """Times a plan the checks refuse is sent back to the model to be corrected."""

    @on(TaskAssignment)
    async def plan(self, task: TaskAssignment, ctx: Context) -> dict[str, Any]:
        """The plan for the task's goal: ``{"steps": [...]}``, checked as the supervisor will."""
        ask = task.input if isinstance(task.input, dict) else {"goal": str(task.input or "")}
        known = await _capabilities(ask, ctx)
        usable = _usable(known, ask, self.capabilities)
        if not usable:
            raise TaskError(
                "no_capabilities",
                "no registered agent has a capability a plan could use; start worker agents",
            )
        current, done = _current(ask)
        output = plan_type(tuple(usable), self.max_steps)
        conversation: list[Message] = [
            Message(role="system", content=self._system(usable)),
            Message(role="user", content=_request(ask, current, done)),
        ]
        refusals: list[PlanError] = []
        while True:
            answer = await ctx.chat(conversation, output=output)
            try:
                plan = accept_plan(msgspec.to_builtins(answer.output), current, done, known)
            except PlanError as exc:
                refusals.append(exc)
                if len(refusals) > self.plan_retries:
                    raise TaskError(
                        "plan_refused",
                        f"the model's plan was refused {len(refusals)} times; the last time"
                        f" ({exc.reason}): {exc.message}",
                        retryable=False,  # a retry would get the journaled answers again
                    ) from None
                conversation = [
                    *answer.messages,
                    Message(
                        role="user",
                        content=f"That plan is refused ({exc.reason}): {exc.message}. Answer"
                        " again with a corrected plan, only the JSON.",
                    ),
                ]
                continue
            return {"steps": msgspec.to_builtins(plan.steps)}

    def _system(self, usable: Sequence[str]) -> str:
        listed = "\n".join(
            f"  - {c}: {self.capability_notes[c]}" if c in self.capability_notes else f"  - {c}"
            for c in usable
        )
        return (
            f"{self.system_prompt}\n\nRules of a plan:\n"
            f"- Each step uses exactly one of these capabilities:\n{listed}\n"
            f"- At most {self.max_steps} steps.\n"
            f"- Step ids are unique: lower-case letters, digits, '_' and '-', at most"
            f" {MAX_STEP_ID} characters, never '--'.\n"
            "- depends_on lists the ids of the steps whose outputs a step needs. No cycles: a"
            " step never depends on itself, directly or through other steps.\n"
            "- A step without an input of its own gets the goal's data when it depends on"
            " nothing, else its dependencies' outputs by step id; give input only when a step"
            " needs something else.\n"
            'Answer with only the JSON plan: {"steps": [...]}.'
        )


async def _capabilities(ask: Mapping[str, Any], ctx: Context) -> list[str]:
    """What the registered agents can do: as the supervisor sent it, else from the projection."""
    given = ask.get("capabilities")
    if isinstance(given, list) and given:
        return sorted({str(c) for c in given})
    rows = await ctx.query("SELECT capabilities FROM agents WHERE status = 'registered'")
    found: set[str] = set()
    for row in rows:
        listed = row["capabilities"]
        if isinstance(listed, str):
            listed = msgspec.json.decode(listed)
        found.update(str(c) for c in listed or ())
    return sorted(found)


def _usable(known: Sequence[str], ask: Mapping[str, Any], own: Collection[str]) -> list[str]:
    """The capabilities a step may use: not planning, reviewing or synthesizing, which the
    supervisor does itself."""
    reserved = {*own, *(str(ask[k]) for k in ("reviewer", "synthesizer") if ask.get(k))}
    return [c for c in known if c not in reserved]


def _current(ask: Mapping[str, Any]) -> tuple[Plan | None, set[str]]:
    """The plan being revised (``None`` for a first plan) and the ids of its steps done."""
    source = ask["revise"] if isinstance(ask.get("revise"), dict) else ask
    if source.get("plan") is None:
        return None, set()
    try:
        return decode_plan(source["plan"]), set(source.get("done") or ())
    except PlanError as exc:
        raise TaskError(
            "bad_request", f"the plan to revise: {exc.message}", retryable=False
        ) from None


def _request(ask: Mapping[str, Any], current: Plan | None, done: Collection[str]) -> str:
    """The user message: the goal and its data; the plan to revise; a refusal to answer."""
    lines = [f"Goal: {ask.get('goal') or '(none given)'}"]
    if ask.get("input") is not None:
        lines.append(f"The goal's data: {_shown(ask['input'])}")
    revise = ask.get("revise") if isinstance(ask.get("revise"), dict) else None
    if current is not None:
        steps = [
            {k: v for k, v in msgspec.to_builtins(s).items() if k != "input"} for s in current.steps
        ]
        outputs = (revise or ask).get("done") or {}
        lines.append(f"The plan so far: {_shown(steps)}")
        if done:
            lines.append("Done, kept as they are (new steps may depend on them), with outputs:")
            lines += [f"  - {sid}: {_shown(outputs.get(sid))}" for sid in sorted(done)]
        if revise is not None:
            failed = revise.get("failed") or {}
            lines.append(f"Failed for good: step {failed.get('step')}: {failed.get('why')}")
        lines.append(
            "Plan the rest: the steps that replace every step not done (a failed step may be"
            " planned again, differently)."
        )
    rejected = ask.get("rejected")
    if isinstance(rejected, dict):
        lines.append(
            f"Your last plan was refused ({rejected.get('reason')}): {rejected.get('detail')}."
            " Plan again."
        )
    return "\n".join(lines)


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else msgspec.json.encode(value).decode()
    return text if len(text) <= _SHOWN else text[:_SHOWN] + f"... ({len(text)} characters)"
