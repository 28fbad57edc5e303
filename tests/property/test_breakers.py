"""Circuit breakers over generated schedules of outcomes, routing attempts and time: work never
goes through an open circuit before its cool-down, half-open lets at most ``probes`` through,
the documented transitions (and only they) happen, and a permanent failure (an outcome of
``None``) moves no circuit."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmlog.agents.policy.breakers import Breaker, BreakerPolicy, record, routable, send_through

policies = st.builds(
    BreakerPolicy,
    consecutive_failures=st.integers(1, 6),
    failure_rate=st.sampled_from([0.25, 0.5, 1.0]),
    window=st.just(8),
    min_calls=st.integers(1, 8),
    cooldown=st.sampled_from([0.0, 1.0, 5.0]),
    probes=st.integers(1, 3),
)

steps = st.lists(
    st.one_of(
        st.tuples(st.just("outcome"), st.sampled_from([True, False, None])),
        st.tuples(st.just("route"), st.just(True)),
        st.tuples(st.just("wait"), st.integers(0, 3)),
    ),
    max_size=80,
)


@given(policies, steps)
def test_no_work_through_an_open_circuit_and_only_documented_transitions(
    policy: BreakerPolicy, schedule: list[tuple[str, object]]
) -> None:
    b, now = Breaker(), 0
    for kind, arg in schedule:
        before = b
        if kind == "wait":
            now += int(arg) * 10**9  # type: ignore[call-overload]
            continue
        if kind == "route":
            if not routable(b, now=now, policy=policy):
                assert b.state != "closed"
                if b.state == "open":
                    assert b.opened_at is not None
                    assert now - b.opened_at < policy.cooldown * 1e9
                else:
                    assert b.probing >= policy.probes
                with pytest.raises(ValueError, match="not routable"):
                    send_through(b, now=now, policy=policy)
                continue
            b, why = send_through(b, now=now, policy=policy)
            assert b.state != "open"  # what was let through went to a closed or probing circuit
            if before.state == "open":
                assert (b.state, b.probing) == ("half_open", 1)
                assert why
            if b.state == "half_open":
                assert b.probing <= policy.probes
            continue
        b, why = record(b, arg, now=now, policy=policy)  # type: ignore[arg-type]
        moved = (before.state, b.state)
        if arg is None:  # says nothing of the role: no change but a probe let go
            assert b.state == before.state
            assert not why
            assert (b.consecutive, b.recent) == (before.consecutive, before.recent)
            if b.state == "half_open":
                assert b.probing == max(0, before.probing - 1)
        assert bool(why) == (moved[0] != moved[1])
        assert moved in {
            ("closed", "closed"),
            ("closed", "open"),
            ("open", "open"),
            ("half_open", "half_open"),
            ("half_open", "open"),
            ("half_open", "closed"),
        }
        if moved == ("half_open", "open"):
            assert arg is False
        if moved == ("half_open", "closed"):
            assert arg is True
        if b.state == "open":
            assert b.opened_at is not None


@given(policies)
def test_consecutive_failures_open_it_and_successes_never_do(policy: BreakerPolicy) -> None:
    b = Breaker()
    for _ in range(50):
        b, _ = record(b, True, now=0, policy=policy)
    assert b.state == "closed"
    for i in range(policy.consecutive_failures):
        b, why = record(b, False, now=i, policy=policy)
        if b.state == "open":  # by the streak, or sooner by the failure rate
            assert why
            break
    assert b.state == "open"


def test_open_then_probe_then_close_on_recovery() -> None:
    policy = BreakerPolicy(consecutive_failures=3, cooldown=2.0, probes=1)
    b = Breaker()
    for t in range(3):
        b, why = record(b, False, now=t, policy=policy)
    assert (b.state, why) == ("open", "3 failures in a row")
    assert not routable(b, now=2 + 1 * 10**9, policy=policy)  # within the cool-down
    b, why = send_through(b, now=3 * 10**9, policy=policy)
    assert b.state == "half_open"
    assert not routable(b, now=3 * 10**9, policy=policy)  # one probe at a time
    b, why = record(b, True, now=4 * 10**9, policy=policy)
    assert (b.state, why) == ("closed", "1 probe(s) succeeded")


@given(policies, st.integers(1, 200))
def test_permanent_failures_never_open_a_circuit(policy: BreakerPolicy, n: int) -> None:
    b = Breaker()
    for t in range(n):
        b, why = record(b, None, now=t, policy=policy)
    assert (b, why) == (Breaker(), "")


def test_a_permanent_failure_lets_a_probe_go_without_judging_it() -> None:
    policy = BreakerPolicy(consecutive_failures=2, cooldown=0.0, probes=1)
    b = Breaker()
    b, _ = record(b, False, now=0, policy=policy)
    b, _ = record(b, None, now=1, policy=policy)  # a bad input between two crashes
    b, why = record(b, False, now=2, policy=policy)
    assert (b.state, why) == ("open", "2 failures in a row")  # the streak is not broken by it
    b, _ = send_through(b, now=3, policy=policy)
    assert not routable(b, now=3, policy=policy)
    b, why = record(b, None, now=4, policy=policy)  # the probe's input was bad
    assert (b.state, why) == ("half_open", "")
    assert routable(b, now=4, policy=policy)  # another probe may go: the circuit is not stuck


def test_a_bad_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="min_calls"):
        BreakerPolicy(window=5, min_calls=6)
