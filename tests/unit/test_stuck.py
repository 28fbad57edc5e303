"""Why open work is not moving (``agents.policy.stuck``): which reasons block, when an item is
stuck, and the wait's patience over consecutive looks."""

from __future__ import annotations

from typing import Any

from swarmlog.agents.policy.routing import AgentView
from swarmlog.agents.policy.stuck import (
    BLOCKING,
    GRACE,
    MOVING,
    Escalation,
    OpenTask,
    Reason,
    Wait,
    Watch,
    reasons,
    settle,
    stuck,
)

S = 1_000_000_000
NOW = 1_000 * S
STALE = 15 * S


def agent(
    agent_id: str, role: str, *caps: str, status: str = "registered", heard: int = NOW
) -> AgentView:
    return AgentView(agent_id, role, frozenset(caps), status, heard)


SYSTEM = [agent("conductor-1", "conductor"), agent("router-1", "router")]


def why(agents: list[AgentView], tasks: list[OpenTask], **more: Any) -> list[Reason]:
    return reasons(
        agents=agents,
        tasks=tasks,
        now=NOW,
        stale_after=STALE,
        beat=5.0,
        workflow=True,
        **more,
    )


def kinds(found: list[Reason]) -> list[tuple[str, bool]]:
    return [(r.kind, r.blocks) for r in found]


def test_transient_states_do_not_block() -> None:
    found = why(
        [*SYSTEM, agent("echo-1", "echo", "text")],
        [
            OpenTask("t1", "offered", "text", mode="routed"),
            OpenTask("t2", "running", "text", role="echo", attempt=1, agent="echo-1"),
            OpenTask("t3", "retry_scheduled", "text", role="echo", attempt=2, error="flaky"),
        ],
        unplanned=True,
    )
    assert kinds(found) == [
        ("unplanned", False),
        ("offered", False),
        ("in_progress", False),
        ("retrying", False),
    ]
    assert found[1].text == "task t1 (text) is offered, not assigned yet"
    assert found[3].text == "task t3 failed attempt 2 (flaky), retried"
    assert stuck(found) == []
    assert {r.kind for r in found} <= MOVING


def test_an_unserved_capability_blocks_and_says_which() -> None:
    stale = agent("tr-1", "translator", "translate", heard=NOW - 60 * S)  # gone a minute
    found = why([*SYSTEM, stale], [OpenTask("wf-s1", "offered", "translate", mode="routed")])
    assert kinds(found) == [("unserved", True)]
    assert found[0].text.startswith(
        "task wf-s1 needs capability 'translate' and no live agent has it: start one"
    )
    assert stuck(found) == found


def test_an_open_escalation_blocks_naming_its_id_and_the_command() -> None:
    found = why(SYSTEM, [], escalations=[Escalation("01JESC", "wf-s1", "retries exhausted", "no")])
    (reason,) = found
    assert (reason.kind, reason.blocks, reason.about) == ("escalated", True, "01JESC")
    assert "task wf-s1 is escalated (retries exhausted; last error: no)" in reason.text
    assert "`swarmlog escalations resolve 01JESC --retry|--reassign ROLE" in reason.text


def test_no_live_conductor_or_router_blocks_even_while_work_runs() -> None:
    running = OpenTask("t2", "running", "text", role="echo", attempt=1, agent="echo-1")
    offered = OpenTask("t1", "offered", "text", mode="routed")
    echo = agent("echo-1", "echo", "text")
    found = why([echo, agent("conductor-1", "conductor", status="stopped")], [offered, running])
    assert kinds(found) == [
        ("no_conductor", True),
        ("no_router", True),
        ("offered", False),
        ("in_progress", False),
    ]
    assert found[0].text.startswith("no live conductor runs workflows")
    assert found[1].text.startswith("no live router assigns offered tasks")
    # Work still moves, but nothing will advance the workflow: stuck on the system's roles.
    assert [r.kind for r in stuck(found)] == ["no_conductor", "no_router"]
    # A task wait has no conductor to need.
    alone = reasons(agents=[echo], tasks=[running], now=NOW, stale_after=STALE, beat=5.0)
    assert kinds(alone) == [("in_progress", False)]


def test_a_task_level_block_waits_while_other_work_moves() -> None:
    found = why(
        [*SYSTEM, agent("echo-1", "echo", "text")],
        [OpenTask("t2", "running", "text", role="echo", attempt=1, agent="echo-1")],
        escalations=[Escalation("01JESC", "t1")],
    )
    assert kinds(found) == [("escalated", True), ("in_progress", False)]
    assert stuck(found) == []  # a supervisor may revise around it: the work goes on


def test_a_quiet_conductor_is_not_a_block_yet() -> None:
    quiet = [agent("conductor-1", "conductor", heard=NOW - 9 * S), agent("router-1", "router")]
    (reason,) = why(quiet, [])
    assert (reason.kind, reason.blocks) == ("conductor_quiet", False)
    assert reason.text.startswith("the conductor was last heard from 9 s ago (it beats every 5 s)")


def test_killed_roles_are_named_with_the_revive_command() -> None:
    killed = agent("w-1", "writer", "write", status="killed")
    found = why(
        [*SYSTEM, killed, agent("e-1", "echo", "text")],
        [
            OpenTask("t1", "offered", "write", mode="routed"),
            OpenTask("t2", "assigned", "write", role="writer", attempt=1),
            # A kill switch the projection holds, on a replica whose status still says
            # registered (the whole-role switch reaches each replica): killed all the same.
            OpenTask("t3", "assigned", "text", role="echo", attempt=1),
        ],
        kills={"w-1": "runaway", "e-1": "spent"},
    )
    assert kinds(found) == [("killed", True), ("killed", True), ("killed", True)]
    assert "role writer, which has it, is killed (runaway)" in found[0].text
    assert found[0].text.endswith("`swarmlog revive --role writer` brings it back")
    assert "t2 waits in role writer's queue and writer is killed (runaway)" in found[1].text
    assert "t3 waits in role echo's queue and echo is killed (spent)" in found[2].text


def test_a_queue_with_no_live_replica_blocks() -> None:
    lost = agent("w-1", "writer", "write", status="lost")
    (reason,) = why([*SYSTEM, lost], [OpenTask("t2", "assigned", "write", role="writer")])
    assert (reason.kind, reason.blocks, reason.about) == ("no_replica", True, "writer")
    assert reason.text.startswith("task t2 waits in role writer's queue and no replica of writer")


def test_the_whole_system_switch_blocks_everything() -> None:
    found = why(
        [*SYSTEM, agent("e-1", "echo", "text")],
        [OpenTask("t1", "offered", "text", mode="routed")],
        kills={"*": "incident 42"},
    )
    assert found[0] == Reason(
        "all_killed",
        "every agent is killed (incident 42): `swarmlog revive --all` brings them back",
        True,
        "*",
    )
    assert [r.kind for r in found] == ["all_killed", "no_conductor", "no_router", "killed"]
    assert "the conductor is killed (incident 42)" in found[1].text
    assert {r.kind for r in stuck(found)} <= BLOCKING


def test_a_wait_on_another_agent_is_moving() -> None:
    (reason,) = why(SYSTEM, [], waits=[Wait("clarification", "a-1", "b-1", "t1")])
    assert (reason.kind, reason.blocks) == ("waits_on", False)
    assert reason.text == "task t1 waits on b-1 (clarification asked by a-1)"


def test_settle_needs_the_same_block_on_every_look_for_the_grace() -> None:
    unserved = Reason("unserved", "task t1 needs capability 'x' ...", True, "x")
    moving = Reason("offered", "task t1 (x) is offered, not assigned yet", False, "t1")
    watch, held = settle(Watch(), [unserved], progress=7, now=100.0)
    assert held == []
    watch, held = settle(watch, [unserved], progress=7, now=100.0 + GRACE - 0.1)
    assert held == []
    watch, held = settle(watch, [unserved], progress=7, now=100.0 + GRACE)
    assert held == [unserved]

    # A look on which it is not blocked (an agent came up) starts the clock again...
    watch, _ = settle(Watch(), [unserved], progress=7, now=0.0)
    watch, held = settle(watch, [moving], progress=7, now=1.0)
    assert (held, watch.since) == ([], ())
    watch, held = settle(watch, [unserved], progress=7, now=2.0)
    watch, held = settle(watch, [unserved], progress=7, now=2.0 + GRACE - 0.5)
    assert held == []
    # ...and so does any change of the item on the log (a supervisor revising its plan).
    watch, _ = settle(Watch(), [unserved], progress=7, now=0.0)
    watch, held = settle(watch, [unserved], progress=9, now=GRACE + 1)
    assert held == []
    _, held = settle(watch, [unserved], progress=9, now=2 * GRACE + 1)
    assert held == [unserved]
