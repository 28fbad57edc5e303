"""The deterministic simulation: a seed reproduces its run exactly, five hundred seeds keep every
invariant, and a broken component is caught and its seed printed for replay."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from swarmlog.cli import cli
from swarmlog.harness.sim import _Sim, run_sim

SEEDS = int(os.environ.get("SWARMLOG_SIM_SEEDS", "500"))
STEPS = int(os.environ.get("SWARMLOG_SIM_STEPS", "40"))
"""The quick profile runs in `make test` (500 seeds of 40 steps: twenty thousand scheduled
steps with faults); a nightly one sets more of both (10,000 seeds)."""


def test_a_seed_reproduces_its_run_exactly() -> None:
    first, again = run_sim(11, 150), run_sim(11, 150)
    assert first == again  # same events, same figures, same state hash
    assert first.events > 50
    assert run_sim(12, 150).state_hash != first.state_hash


def test_every_seed_keeps_every_invariant() -> None:
    broken = {}
    injected = lost = 0
    for seed in range(SEEDS):
        result = run_sim(seed, STEPS)
        injected += sum(result.injected.values())
        lost += result.lost
        if not result.ok:
            broken[seed] = result.violations
    assert broken == {}
    assert injected > SEEDS  # the faults did happen
    assert lost > SEEDS // 20  # crashed replicas that stayed down were reported lost


def test_without_faults_the_run_still_holds() -> None:
    result = run_sim(5, 120, frozenset())
    assert result.ok, result.violations
    assert result.injected == {}


def test_a_worker_that_forgets_what_it_settled_is_caught_and_its_seed_printed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = _Sim.do_finish

    async def forgetful(self: _Sim) -> None:
        self.finished.clear()  # idempotency lost: a duplicate delivery runs the task again
        await original(self)

    monkeypatch.setattr(_Sim, "do_finish", forgetful)
    out = CliRunner().invoke(cli, ["sim", "--seed", "0", "--seeds", "20", "--steps", "80"])
    assert out.exit_code == 1
    assert "broke an invariant" in out.output
    assert "completed 2 times" in out.output or "two results" in out.output
    assert "swarmlog sim --seed" in out.output  # how to replay it


@pytest.mark.parametrize("seed", range(5))
def test_after_every_step_the_projection_equals_a_refold_of_the_log(seed: int) -> None:
    result = run_sim(seed, 60, every_step=True)
    assert result.ok, result.violations
