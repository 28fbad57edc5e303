"""The documents agree with the code: every event type's subject kind in docs/subjects.md is the
one ``bus/subjects.py`` gives it, and the quarantine reasons the docs list are exactly the
verifier's (a reason added, renamed or dropped on one side fails here)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from swarmlog.bus.subjects import subject_for
from swarmlog.projections.verify import REASONS
from swarmlog.schemas.codec import decode_envelope, decode_signed
from swarmlog.schemas.payloads import PAYLOAD_TYPES

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
VECTORS = ROOT / "tests" / "vectors"


def _table_rows(text: str, heading: str) -> list[list[str]]:
    """The cells of the first table after ``heading``."""
    section = text.split(heading, 1)[1]
    rows = []
    started = False
    for line in section.splitlines():
        if line.startswith("|"):
            started = True
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not set("".join(cells)) <= set("-: "):
                rows.append(cells)
        elif started:
            break
    return rows[1:]  # without the header


def _documented_kinds() -> dict[str, set[str]]:
    """Event type -> the subject kinds docs/subjects.md says it is stored under (two for a
    type whose subject depends on a field: ``deadlock_detected`` with or without a ``to``)."""
    rows = _table_rows((DOCS / "subjects.md").read_text(), "## Event subjects")
    kinds: dict[str, set[str]] = {}
    for kind, _rest, events in rows:
        for type_ in re.findall(r"`([a-z_]+)`", events):
            if type_ in PAYLOAD_TYPES:
                kinds.setdefault(type_, set()).add(kind.strip("`"))
    return kinds


def test_every_event_type_is_documented_under_the_kind_its_subject_has() -> None:
    documented = _documented_kinds()
    assert set(documented) == set(PAYLOAD_TYPES), (
        "docs/subjects.md must list every event type: missing"
        f" {sorted(set(PAYLOAD_TYPES) - set(documented))}"
    )
    vectors = json.loads((VECTORS / "encoding.json").read_text())["vectors"]
    checked = set()
    for vector in vectors:
        envelope = decode_envelope(decode_signed(bytes.fromhex(vector["data"])).body)
        subject = subject_for("default", envelope)
        assert subject == vector["subject"]
        # swarmlog.<ns>.<sender>.<kind>...
        assert subject.split(".")[3] in documented[envelope.type], (envelope.type, subject)
        checked.add(envelope.type)
    assert checked == set(PAYLOAD_TYPES)


def _documented_reasons(path: Path, heading: str) -> list[str]:
    return [row[0].strip("`") for row in _table_rows(path.read_text(), heading)]


def test_the_quarantine_reasons_in_the_docs_are_the_verifiers() -> None:
    # Both tables list every reason once, in the code's order, and nothing else.
    assert _documented_reasons(DOCS / "concepts.md", "Reasons (`REASONS`") == list(REASONS)
    assert _documented_reasons(DOCS / "protocol.md", "### 8.4 Every reason") == list(REASONS)
