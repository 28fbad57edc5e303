"""Hostile input at the command line: generated SQL, event types, payloads, ids, roles and
namespaces against a running system. Whatever comes in, the CLI answers with exit 0, 1 or 2, an
error is one line naming what to do (never an "unexpected" crash), and what is stored stays
intact: `audit verify` is clean and a replay equals the live projection afterwards.

``make test`` runs a hundred invocations; ``SWARMLOG_FUZZ_EXAMPLES`` scales them (÷10).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from clikit import Cli, running
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarmlog.bus.subjects import sender_filter
from swarmlog.cli import main
from swarmlog.control.system import open_log
from swarmlog.schemas.payloads import PAYLOAD_TYPES

pytestmark = pytest.mark.e2e

EXAMPLES = max(int(os.environ.get("SWARMLOG_FUZZ_EXAMPLES", "1000")) // 10, 25)
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Text with the characters that break naive code: quotes, NUL, control characters, surrogates'
# neighbours, right-to-left marks, combining marks, emoji, very long runs.
nasty = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)),
    max_size=80,
) | st.sampled_from(
    ["", " ", "'", '"', "\\", "\x00", "\u202e", "e\u0301", "\U0001f600", "a" * 5000, "-", "--"]
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | nasty,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(nasty, inner, max_size=4),
    max_leaves=12,
)
SQL_HEADS = [
    "SELECT",
    "select * from",
    "SELECT 1;",
    "INSERT INTO events VALUES",
    "DELETE FROM events",
    "DROP TABLE",
    "UPDATE events SET type =",
    "ATTACH",
    "COPY events TO",
    "PRAGMA",
    "SET",
    "CALL",
    "INSTALL",
    "WITH x AS (",
    "SELECT * FROM read_csv(",
    "SELECT * FROM events; DROP TABLE events",
]
sql = nasty | st.builds("{} {}".format, st.sampled_from(SQL_HEADS), nasty)
types = st.sampled_from(sorted(PAYLOAD_TYPES)) | nasty
good_ids = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True)
ids = good_ids | nasty
# Mostly well-formed events with hostile contents, so that most inputs get past the first check
# and are signed, published and projected.
events_in = st.one_of(
    st.tuples(
        st.just("result"), st.fixed_dictionaries({"task_id": good_ids, "output": json_values})
    ),
    st.tuples(
        st.just("task_assignment"),
        st.fixed_dictionaries(
            {"task_id": good_ids, "role": good_ids}, optional={"input": json_values}
        ),
    ),
    st.tuples(
        st.just("clarification_request"),
        st.fixed_dictionaries({"task_id": good_ids, "question": nasty}),
    ),
    st.tuples(types, json_values),
)


def swarmlog(data: Path, *args: str) -> tuple[int, str, str]:
    """Run the CLI in this process (thousands of runs would take minutes as subprocesses)."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(["--data-dir", str(data), *args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
    return code, out.getvalue(), err.getvalue()


def judged(data: Path, *args: str) -> int:
    code, _, err = swarmlog(data, *args)
    assert code in (0, 1, 2), (args, code, err)
    if code:
        lines = err.strip().splitlines()
        assert len(lines) == 1, (args, err)
        assert lines[0].startswith("error: "), (args, err)
        # The last resort (an exception nothing else caught) says "error: unexpected <Type>".
        assert not lines[0].startswith("error: unexpected "), (args, err)
        assert "Traceback" not in err
    return code


PUBLISHED = {"stored": 0, "refused": 0}
ISSUED: list[str] = []


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    with running(tmp_path_factory.mktemp("fuzz") / "data") as cli:
        yield cli


def _operator_head(cli: Cli) -> int:
    """The stream sequence of the operator's last event (the CLI publishes as the operator;
    the system roles may publish meanwhile)."""

    async def read() -> int:
        async with open_log(cli.settings()) as log:
            last = await log.last_message(sender_filter("default", "operator"))
            return last.seq if last is not None else 0

    return asyncio.run(read())


@FUZZ
@given(query=sql, fmt=st.sampled_from(["table", "json", "csv"]))
def test_any_query_is_answered_or_refused_and_writes_nothing(
    system: Cli, query: str, fmt: str
) -> None:
    judged(system.data, "query", query, "--format", fmt)


@FUZZ
@given(event=events_in, raw=st.integers(0, 9), junk=nasty)
def test_any_event_input_is_published_whole_or_refused(
    system: Cli, event: tuple[str, object], raw: int, junk: str
) -> None:
    type_, payload = event
    text = junk if raw == 0 else json.dumps(payload)
    before = _operator_head(system) if raw == 0 else None
    code = judged(system.data, "events", "publish", type_, "--payload", text)
    if code:
        PUBLISHED["refused"] += 1
        if before is not None:
            assert _operator_head(system) == before  # a refused event stores nothing
    else:
        PUBLISHED["stored"] += 1


@settings(FUZZ, max_examples=max(EXAMPLES // 3, 10))
@given(role=good_ids | nasty, agent_id=good_ids | nasty, capability=ids, namespace=ids)
def test_any_identity_input_is_issued_or_refused(
    system: Cli, role: str, agent_id: str, capability: str, namespace: str
) -> None:
    keys = system.data / "keys" / "agents"
    before = set(keys.iterdir())
    args = ("keys", "issue", role, "--agent-id", agent_id, "-c", capability, "--json")
    code = judged(system.data, *args)
    if code:
        assert set(keys.iterdir()) == before  # a refused issue leaves no key behind
    else:
        assert agent_id  # an empty id is refused, never replaced by a made-up one
        ISSUED.append(agent_id)
    judged(system.data, "--namespace", namespace, "agents", "--json")


def test_after_the_fuzzing_what_is_stored_is_intact(system: Cli) -> None:
    # Runs last in this module (pytest keeps file order): the hostile input above changed
    # nothing it should not have.
    # The generated input was not all refused at the door: much of it went all the way.
    assert PUBLISHED["stored"] >= EXAMPLES // 10, PUBLISHED
    assert PUBLISHED["refused"] > 0, PUBLISHED
    assert ISSUED
    # Every agent issued may log in: the broker's authorization kept up with them all.
    authorization = (system.data / "nats" / "authorization.conf").read_text()
    assert all(f"# {agent_id}\n" in authorization for agent_id in ISSUED)
    audit = system("audit", "verify", "--json")
    assert audit.returncode in (0, 1), audit.stderr
    report = json.loads(audit.stdout)
    # What the CLI accepted it signed whole, as the operator: no forgery, no broken chain, no
    # corrupted bytes, nothing missing from the stream.
    damage = {"bad_signature", "unknown_signer", "malformed", "replayed", "chain_fork"}
    assert not [r for r in report["rejected"] if r["reason"] in damage], report["rejected"]
    assert report["chain_breaks"] == []
    assert report["stream_chain"]["gaps"] == []
    check = system("replay", "--check", "--json")
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout)["matches"] is True
