"""Small rules: JSON column names stay distinct; the in-memory log forgets ids after its window."""

from __future__ import annotations

from swarmlog.bus.memory import MemoryLog
from swarmlog.bus.ports import Append
from swarmlog.control.views import query_rows
from swarmlog.projections.query import QueryResult


def test_duplicate_column_names_are_made_unique() -> None:
    rows = query_rows(QueryResult(["a", "a", "b", "a"], [[1, 2, 3, 4]], False))
    assert rows.columns == ["a", "a_2", "b", "a_3"]
    assert rows.rows == [{"a": 1, "a_2": 2, "b": 3, "a_3": 4}]


async def test_memory_log_dedupes_within_its_window_only() -> None:
    now = [0.0]
    log = MemoryLog(duplicate_window=10.0, clock=lambda: now[0])
    first = await log.append(Append("swarmlog.x.a.task.t.result", b"1", msg_id="m"))
    now[0] = 5.0
    again = await log.append(Append("swarmlog.x.a.task.t.result", b"1", msg_id="m"))
    assert again.duplicate
    assert again.seq == first.seq
    now[0] = 20.0
    later = await log.append(Append("swarmlog.x.a.task.t.result", b"1", msg_id="m"))
    assert not later.duplicate
    assert later.seq == first.seq + 1
    now[0] = 40.0
    await log.append(Append("swarmlog.x.a.task.t.result", b"2", msg_id="other"))
    assert list(log._ids) == ["other"]  # ids past the window are forgotten, memory stays flat


def test_stalled_tasks_are_those_moving_states_idle_too_long() -> None:
    from swarmlog.agents.policy.stalls import stalled

    second = 10**9
    tasks = [
        ("a", "running", 0),  # idle 100 s
        ("b", "running", 95 * second),  # idle 5 s: alive
        ("c", "succeeded", 0),  # finished: never stalled
        ("d", "assigned", 10 * second),  # idle 90 s, nobody took it
        ("e", "escalated", 0),  # a human has it already
        ("f", "running", None),
    ]
    found = stalled(tasks, now=100 * second, after=60)
    assert [(s.task_id, s.status, s.idle_s) for s in found] == [
        ("a", "running", 100.0),
        ("d", "assigned", 90.0),
    ]


def test_the_stream_chain_sees_order_holes_and_every_byte() -> None:
    from swarmlog.projections.streamchain import StreamChain

    def head(*messages: tuple[int, bytes]) -> str:
        chain = StreamChain()
        for seq, data in messages:
            chain.add(seq, data)
        return chain.hexhead

    base = head((1, b"a"), (2, b"b"), (3, b"c"))
    assert head((1, b"a"), (2, b"b"), (3, b"c")) == base
    assert head((1, b"a"), (2, b"c"), (3, b"b")) != base  # reordered
    assert head((1, b"a"), (2, b"b"), (3, b"C")) != base  # rewritten
    holed = StreamChain()
    for seq, data in ((1, b"a"), (3, b"c"), (4, b"d"), (7, b"g")):
        holed.add(seq, data)
    assert holed.gaps == [(2, 2), (5, 6)]  # deleted messages leave holes in the numbering
