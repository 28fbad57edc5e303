"""The idle loops' wait: back to the first after anything was found, doubling to the most while
nothing is."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from swarmlog.agents.policy.idle import FIRST, MOST, next_wait


def test_the_wait_doubles_while_nothing_is_found_and_comes_back_when_something_is() -> None:
    assert MOST == 2 * FIRST  # the sequence below
    waits = []
    wait = None
    for found in [False, False, False, False, False, True, False]:
        wait = next_wait(wait, found)
        waits.append(wait)
    assert waits == [FIRST, 2 * FIRST, MOST, MOST, MOST, FIRST, 2 * FIRST]
    assert next_wait(1.0, False, most=4.0) == 2.0  # a loop may allow itself longer


@given(st.lists(st.booleans(), max_size=40), st.floats(0.01, 1.0), st.floats(1.0, 30.0))
def test_the_wait_stays_between_first_and_most(
    looks: list[bool], first: float, most: float
) -> None:
    wait = None
    for found in looks:
        wait = next_wait(wait, found, first=first, most=most)
        assert first <= wait <= most
        if found:
            assert wait == first
