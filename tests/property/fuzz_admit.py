"""Coverage-guided fuzzing (atheris, libFuzzer) of the decoder, the verifier and the fold.

Each input is the bytes of one message, stored after a genuine credential: libFuzzer mutates it
towards new code paths, starting from genuine signed events (the seed corpus). An exception is a
crash; so is an applied event that is not one of the authentic ones, or a reject without a
quarantine row and reason. Run by ``tests/property/test_atheris.py``; by hand::

    python tests/property/fuzz_admit.py -runs=1000000 -artifact_prefix=/tmp/ CORPUS_DIR
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent))

with atheris.instrument_imports(include=["swarmlog"]):
    import test_hostile as hostile

    from swarmlog.bus.ports import StoredMessage
    from swarmlog.bus.subjects import subject_for
    from swarmlog.projections.state import State

ISSUE = hostile.GENUINE[0]
SUBJECTS = [subject_for(hostile.NS, e.envelope) for e in hostile.GENUINE]


def one_input(data: bytes) -> None:
    state = State()
    applied, _ = hostile.feed(state, StoredMessage(1, SUBJECTS[0], ISSUE.data, stored_at=2_000_000))
    assert applied
    # The subject is the one a genuine event had, picked by the input's length, so that a
    # mutated event can still match its own subject.
    subject = SUBJECTS[len(data) % len(SUBJECTS)]
    applied, reason = hostile.feed(state, StoredMessage(2, subject, data, stored_at=2_000_000))
    if applied:
        assert data in hostile.AUTHENTIC, "applied an event that is not authentic"
    else:
        row = state.get("quarantine", 2)
        assert row is not None, "a reject without a quarantine row"
        assert row["reason"] == reason
        assert reason, "a reject without a reason"


def write_seeds(folder: Path) -> None:
    """The seed corpus: every genuine and hostile signed event of the property test."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, event in enumerate([*hostile.GENUINE, *hostile.EXTRAS]):
        (folder / f"seed-{i}").write_bytes(event.data)


def main() -> None:
    if os.environ.get("SWARMLOG_FUZZ_SELF_CHECK") == "admit-all":
        # The harness's own check: with a verifier that admits every well-formed event, it
        # must find a forgery (the test expects this run to fail).
        real = hostile.admit

        def admit_all(state: State, checked: Any, operator_key: str) -> Any:
            return None if checked.envelope is not None else real(state, checked, operator_key)

        hostile.admit = admit_all
    corpora = [a for a in sys.argv[1:] if not a.startswith("-")]
    for corpus in corpora[:1]:
        write_seeds(Path(corpus))
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
