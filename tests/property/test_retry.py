"""RetryPolicy: validated, capped, growing, jitter within bounds, deterministic."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmlog.agents.policy.retry import PERMANENT_ERRORS, RetryPolicy

policies = st.builds(
    RetryPolicy,
    initial_delay=st.floats(0.001, 10),
    multiplier=st.floats(1, 5),
    max_delay=st.floats(10, 3600),
    max_attempts=st.integers(1, 50),
    jitter=st.floats(0, 1),
)
draws = st.floats(0, 1, exclude_max=True)


@given(policies, st.integers(1, 2000), draws)
def test_delay_is_positive_capped_and_deterministic(
    policy: RetryPolicy, attempt: int, draw: float
) -> None:
    delay = policy.next_delay(attempt, draw)
    assert 0 < delay <= policy.max_delay
    assert delay == policy.next_delay(attempt, draw)
    assert delay >= policy.next_delay(attempt, 0.0) * (1 - policy.jitter) - 1e-12


@given(policies, st.integers(1, 200), draws)
def test_delays_never_shrink_without_jitter(policy: RetryPolicy, attempt: int, draw: float) -> None:
    steady = RetryPolicy(
        policy.initial_delay, policy.multiplier, policy.max_delay, policy.max_attempts, jitter=0
    )
    assert steady.next_delay(attempt + 1, draw) >= steady.next_delay(attempt, draw)


@given(policies, st.integers(1, 60), draws)
def test_decide_stops_at_max_attempts_and_on_non_retryable(
    policy: RetryPolicy, attempt: int, draw: float
) -> None:
    assert not policy.decide(attempt, retryable=False, draw=draw).retry
    decision = policy.decide(attempt, retryable=True, draw=draw)
    assert decision.retry == (attempt < policy.max_attempts)
    if decision.retry:
        assert decision.delay == policy.next_delay(attempt, draw)


def test_default_policy_grows_geometrically() -> None:
    policy = RetryPolicy(initial_delay=1, multiplier=2, max_delay=100, jitter=0)
    assert [policy.next_delay(a, 0.5) for a in range(1, 9)] == [1, 2, 4, 8, 16, 32, 64, 100]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_delay": 0},
        {"multiplier": 0.5},
        {"max_delay": 0.1, "initial_delay": 1},
        {"max_attempts": 0},
        {"jitter": 1.5},
    ],
)
def test_invalid_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="invalid retry policy"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("names", "retries"),
    [
        (["ValueError", "Exception"], False),
        (["UnicodeDecodeError", "UnicodeError", "ValueError"], False),
        (["JSONDecodeError", "ValueError"], False),  # a base class counts
        (["ValidationError", "DecodeError", "MsgspecError"], False),
        (["KeyError", "LookupError"], False),
        (["RuntimeError", "Exception"], True),
        (["TimeoutError", "OSError"], True),
        (["ConnectionResetError", "ConnectionError", "OSError"], True),
        (["ModelError", "SwarmlogError", "Exception"], True),
        (["empty_input"], True),  # a task error's code, not a type of the default set
    ],
)
def test_permanent_errors_are_not_retried_by_default(names: list[str], retries: bool) -> None:
    assert RetryPolicy().retries(names) is retries
    assert RetryPolicy().retries(names, retryable=False) is False  # the error's own word


def test_the_non_retryable_error_types_are_the_agents_to_choose() -> None:
    everything = RetryPolicy(non_retryable_error_types=frozenset())
    assert everything.retries(["ValueError"])
    stricter = RetryPolicy(non_retryable_error_types=PERMANENT_ERRORS | {"QuotaError"})
    assert not stricter.retries(["QuotaError", "Exception"])
    assert not stricter.retries(["TypeError"])
    listed = RetryPolicy(non_retryable_error_types=["QuotaError"])  # type: ignore[arg-type]
    assert listed.non_retryable_error_types == frozenset({"QuotaError"})
    assert hash(listed) == hash(RetryPolicy(non_retryable_error_types=frozenset({"QuotaError"})))
    with pytest.raises(ValueError, match="a set of names, not one string"):
        RetryPolicy(non_retryable_error_types="ValueError")  # type: ignore[arg-type]
