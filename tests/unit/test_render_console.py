"""Tables for people: a time column prints as ISO-8601 UTC with how long ago, by the clock given;
every other cell as it is."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console

from swarmlog.rendering.console import is_time_column, print_table, when

S = 1_000_000_000
AT = int(datetime(2026, 12, 3, 4, 20, 1, tzinfo=UTC).timestamp()) * S + 123_456_789


def test_when_is_iso_8601_utc_with_a_relative_hint() -> None:
    assert when(AT, AT + 180 * S) == "2026-12-03T04:20:01Z (3 min ago)"
    assert when(AT, AT + 500_000_000) == "2026-12-03T04:20:01Z (500 ms ago)"
    assert when(AT, AT + 7 * 3600 * S) == "2026-12-03T04:20:01Z (7 h ago)"
    assert when(AT, AT + 2 * 86400 * S) == "2026-12-03T04:20:01Z (2 d ago)"
    assert when(AT, AT - 5 * S) == "2026-12-03T04:20:01Z (in 5 s)"  # a deadline, an expiry


def test_print_table_shows_times_for_people_and_leaves_other_cells_alone() -> None:
    assert is_time_column("occurred_at")
    assert is_time_column("since")
    assert not is_time_column("seq")
    assert not is_time_column("attempt")
    console = Console(record=True, width=200)
    reads: list[int] = []

    def clock() -> int:
        reads.append(1)
        return AT + 12 * S

    columns = ["seq", "created_at", "last_heartbeat_at", "started_at", "done_at", "cached_at"]
    rows = [
        [7, AT, None, "2026-12-03T04:00:00+00:00", True, AT],  # text, None, a bool: as they are
        [8, AT - 60 * S, AT, "x", False, AT],
    ]
    print_table(console, "t", columns, rows, clock=clock)
    text = console.export_text()
    assert "2026-12-03T04:20:01Z (12 s ago)" in text
    assert "2026-12-03T04:19:01Z (1 min ago)" in text
    assert "2026-12-03T04:00:00+00:00" in text  # already a time in text
    assert "True" in text
    assert "False" in text
    assert str(AT) not in text  # no raw nanoseconds left for people to decode
    assert " 7 " in text
    assert " 8 " in text
    assert reads == [1]  # one reading of the clock for the whole table
