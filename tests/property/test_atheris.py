"""Coverage-guided fuzzing of the decoder, verifier and fold with atheris (libFuzzer), in a
subprocess: ten runs per ``SWARMLOG_FUZZ_EXAMPLES`` (10,000 in ``make test``, a million in the
nightly profile), starting from the property test's signed events. The harness proves it can
fail: with a verifier that admits every well-formed event, it finds a forgery."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris", reason="atheris ships wheels for x86-64 Linux only")

HARNESS = Path(__file__).with_name("fuzz_admit.py")
RUNS = int(os.environ.get("SWARMLOG_FUZZ_EXAMPLES", "1000")) * 10


def _fuzz(tmp_path: Path, runs: int, **env: str) -> subprocess.CompletedProcess[str]:
    corpus = tmp_path / "corpus"
    return subprocess.run(
        [
            sys.executable,
            str(HARNESS),
            f"-runs={runs}",
            "-seed=1",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        timeout=max(120, runs // 2000),
        env={**os.environ, **env},
        check=False,
    )


@pytest.mark.timeout(max(180, RUNS // 1500))
def test_coverage_guided_fuzzing_finds_no_crash_and_applies_nothing_invalid(
    tmp_path: Path,
) -> None:
    done = _fuzz(tmp_path, RUNS)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Done {RUNS} runs" in done.stderr
    assert not list(tmp_path.glob("crash-*"))


def test_the_harness_catches_a_verifier_that_admits_everything(tmp_path: Path) -> None:
    done = _fuzz(tmp_path, 100_000, SWARMLOG_FUZZ_SELF_CHECK="admit-all")
    assert done.returncode != 0
    assert "applied an event that is not authentic" in done.stdout + done.stderr
    assert list(tmp_path.glob("crash-*"))  # the input that shows it, kept to reproduce
