"""End to end: the real ``swarmlog`` command line, run in subprocesses against running systems.

Three systems, each with its own data dir: ``live`` (the happy path; module scoped), ``quiet``
(bad input only, so that "changes nothing" compares against one baseline; module scoped) and a
throw-away one for ``down``. Every wait is a poll with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from swarmlog.cli import cli
from swarmlog.schemas.payloads import PAYLOAD_TYPES

pytestmark = pytest.mark.e2e

DEADLINE = 20.0  # seconds any poll waits for the system to get somewhere
COMMAND_TIMEOUT = 60.0  # seconds one CLI invocation may take
MISSING_DATA_DIR = "/nonexistent/x"
UNREACHABLE_URL = "nats://127.0.0.1:1"

PUBLISH = ("events", "publish")
SUBMIT = (
    *PUBLISH,
    "workflow_submitted",
    "--payload",
    '{"pattern":"custom"}',
    "--workflow-id",
    "wf9",
)
RESULT = (*PUBLISH, "result", "--payload", '{"task_id":"t1","output":"x"}')
ASSIGN = (*PUBLISH, "task_assignment", "--payload")
NO_DIR = ("--data-dir", MISSING_DATA_DIR)
NO_SERVER = ("--nats-url", UNREACHABLE_URL)
BAD_NS = ("--namespace", "Bad NS")


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def __str__(self) -> str:
        return (
            f"swarmlog {' '.join(self.args)} -> exit {self.code}\n"
            f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"
        )


def poll(condition: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    """Call ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)  # poll interval, not synchronisation


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie awaiting its reaper counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return True
    return fields[0] != "Z"


FINGERPRINT_SQL = (
    "SELECT (SELECT count(*) FROM events) AS events, (SELECT count(*) FROM tasks) AS tasks,"
    " (SELECT count(*) FROM workflows) AS workflows, (SELECT count(*) FROM agents) AS agents"
)


# `swarmlog status --json`, then `swarmlog query SQL --format json`, both through the CLI's own
# entry point but in one interpreter: the state checked around every bad input costs one
# start-up, not two.
class Swarm:
    """One data dir and the CLI pointed at it (through ``SWARMLOG_DATA``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMLOG_")}
        self.env["SWARMLOG_DATA"] = str(self.data_dir)
        self.baseline: tuple[int, dict[str, int]] | None = None

    def run(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> Result:
        proc = subprocess.run(
            [sys.executable, "-m", "swarmlog", *args],
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Result(args, proc.returncode, proc.stdout, proc.stderr)

    def ok(self, *args: str) -> Result:
        result = self.run(*args)
        assert result.code == 0, str(result)
        assert "Traceback" not in result.stderr, str(result)
        return result

    def json(self, *args: str) -> Any:
        return self.ok(*args, "--json").json()

    def status(self) -> dict[str, Any]:
        data = self.json("status")
        assert isinstance(data, dict)
        return data

    def rows(self, sql: str) -> list[dict[str, Any]]:
        rows = self.ok("query", sql, "--format", "json").json()["rows"]
        assert isinstance(rows, list)
        return rows

    def state(self) -> tuple[int, dict[str, int], int | None]:
        """``stream_last_seq``, row counts of the projection and ``projector_seq``.

        Runs ``status --json`` and ``query`` through the CLI in this process (the commands
        under test run as processes of their own; this is only the look at what they left, and
        it is taken after every one of them).
        """
        env = {k: None for k in os.environ if k.startswith("SWARMLOG_")}
        env.update({k: v for k, v in self.env.items() if k.startswith("SWARMLOG_")})
        out = []
        for argv in (["status", "--json"], ["query", FINGERPRINT_SQL, "--format", "json"]):
            result = CliRunner().invoke(cli, argv, env=env, catch_exceptions=False)
            assert result.exit_code == 0, f"swarmlog {argv[0]}: {result.output}"
            out.append(json.loads(result.stdout))
        status, rows = out
        return status["stream_last_seq"], rows["rows"][0], status["projector_seq"]

    def settled(self) -> tuple[int, dict[str, int]]:
        """``stream_last_seq`` and the projection's row counts once the projector caught up."""

        def caught_up() -> tuple[int, dict[str, int]] | None:
            last, counts, position = self.state()
            return (last, counts) if position == last and counts["events"] == last else None

        result: tuple[int, dict[str, int]] = poll(caught_up, "the projector to catch up")
        return result

    def pids(self) -> tuple[int, int]:
        """The pids of the embedded nats-server and of the projector daemon."""
        server = json.loads((self.data_dir / "nats" / "server.json").read_text())
        projector = json.loads((self.data_dir / "run" / "projector-default.json").read_text())
        return int(server["pid"]), int(projector["pid"])


def assert_usage_error(result: Result) -> None:
    """Exit 2 and exactly one line on stderr, no traceback, nothing on stdout."""
    assert result.code == 2, str(result)
    assert "Traceback" not in result.stderr, str(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, str(result)
    assert lines[0].startswith("error: "), str(result)
    assert result.stdout == "", str(result)


def started(root: Path) -> Iterator[Swarm]:
    """``up --detach`` on a fresh data dir; ``down`` afterwards whatever happened."""
    swarm = Swarm(root)
    try:
        swarm.ok("up", "--detach")
        ps = swarm.json("agent", "ps")["agents"]
        # up starts the built-in roles
        assert sorted(a["name"] for a in ps) == ["conductor-1", "router-1", "watchdog-1"]
        # These tests count events: stop the built-in roles, so that nothing else adds any.
        swarm.ok("agent", "stop", "--all")
        yield swarm
    finally:
        result = swarm.run("down")
        assert result.code == 0, str(result)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swarm]:
    """The running system of the happy path."""
    yield from started(tmp_path_factory.mktemp("e2e-live"))


@pytest.fixture(scope="module")
def quiet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swarm]:
    """A running system only bad input is sent to; ``baseline`` is its settled state."""
    for swarm in started(tmp_path_factory.mktemp("e2e-quiet")):
        swarm.ok("keys", "issue", "writer", "--agent-id", "w1")
        swarm.ok(*SUBMIT)
        swarm.ok(*ASSIGN, '{"task_id":"t1","role":"writer"}', "--workflow-id", "wf9")
        swarm.baseline = swarm.settled()
        yield swarm


# -- 1. the happy path -----------------------------------------------------------------------------


def test_up_is_idempotent(live: Swarm) -> None:
    before_url = live.status()["nats_url"]
    server_pid, projector_pid = live.pids()
    assert alive(server_pid)
    assert alive(projector_pid)

    live.ok("up", "--detach")

    assert live.status()["nats_url"] == before_url
    assert live.pids() == (server_pid, projector_pid)
    assert alive(server_pid)
    assert alive(projector_pid)
    # up brought the built-in roles back; stop them again so the log stays still for the rest.
    names = sorted(a["name"] for a in live.json("agent", "ps")["agents"])
    assert names == ["conductor-1", "router-1", "watchdog-1"]
    live.ok("agent", "stop", "--all")


def test_status_json_has_the_design_fields(live: Swarm) -> None:
    status = live.status()
    assert isinstance(status["nats_url"], str)
    assert status["nats_url"].startswith("nats://")
    assert status["namespace"] == "default"
    assert status["stream"] == "SWARMLOG_DEFAULT"
    assert isinstance(status["subjects"], list)
    assert status["subjects"]
    assert all(s.startswith("swarmlog.default.") for s in status["subjects"])
    assert isinstance(status["stream_last_seq"], int)
    assert isinstance(status["projector_seq"], int)
    assert 0 <= status["projector_seq"] <= status["stream_last_seq"]
    assert isinstance(status["agents"], list)


def test_keys_issue_publish_and_query_shows_the_folded_rows(live: Swarm) -> None:
    issued = live.json("keys", "issue", "writer", "-c", "write", "--agent-id", "w1")
    assert issued["agent_id"] == "w1"
    assert issued["role"] == "writer"

    submitted = live.json(
        "events", "publish", "workflow_submitted",
        "--payload", json.dumps({"pattern": "custom"}),
        "--workflow-id", "wf1",
    )  # fmt: skip
    assigned = live.json(
        "events", "publish", "task_assignment",
        "--payload", json.dumps({"task_id": "t1", "role": "writer"}),
        "--workflow-id", "wf1",
    )  # fmt: skip
    result = live.json(
        "events", "publish", "result",
        "--as", "w1",
        "--payload", json.dumps({"task_id": "t1", "output": "x"}),
        "--workflow-id", "wf1",
    )  # fmt: skip
    assert issued["seq"] < submitted["seq"] < assigned["seq"] < result["seq"]
    last = result["seq"]

    def folded() -> list[dict[str, Any]] | None:
        rows = live.rows(f"SELECT seq, type, sender FROM events WHERE seq <= {last} ORDER BY seq")
        return rows if rows and rows[-1]["seq"] == last else None

    events = {row["seq"]: row for row in poll(folded, f"the projector to fold seq {last}")}
    assert events[issued["seq"]]["type"] == "credential_issued"
    assert events[submitted["seq"]]["type"] == "workflow_submitted"
    assert events[submitted["seq"]]["sender"] == "operator"
    assert events[assigned["seq"]]["type"] == "task_assignment"
    assert events[result["seq"]]["type"] == "result"
    assert events[result["seq"]]["sender"] == "w1"

    workflows = live.rows("SELECT workflow_id, pattern, submitted_by FROM workflows")
    assert {"workflow_id": "wf1", "pattern": "custom", "submitted_by": "operator"} in workflows
    tasks = live.rows("SELECT task_id, workflow_id, role, status, completed_by FROM tasks")
    assert {
        "task_id": "t1",
        "workflow_id": "wf1",
        "role": "writer",
        "status": "succeeded",
        "completed_by": "w1",
    } in tasks
    agents = {a["agent_id"]: a for a in live.status()["agents"]}
    assert agents["w1"]["role"] == "writer"


def test_events_types_lists_every_type_with_a_json_schema(live: Swarm) -> None:
    types = live.json("events", "types")["types"]
    names = [t["type"] for t in types]
    assert len(names) == len(set(names))
    assert set(names) == set(PAYLOAD_TYPES)
    for required in (
        "task_assignment",
        "result",
        "error",
        "clarification_request",
        "clarification_response",
    ):
        assert required in names
    for entry in types:
        schema = entry["schema"]
        assert isinstance(schema, dict), entry["type"]
        if "$ref" in schema:  # msgspec puts the struct under $defs
            schema = schema["$defs"][schema["$ref"].rsplit("/", 1)[-1]]
        assert schema["type"] == "object", entry["type"]
        assert schema["properties"]["type"] == {"enum": [entry["type"]]}


def test_events_tail_json(live: Swarm) -> None:
    published = live.json(
        "events", "publish", "workflow_submitted",
        "--payload", json.dumps({"pattern": "custom"}),
        "--workflow-id", "wf-tail",
    )  # fmt: skip
    rows = live.json("events", "tail", "-n", "5")
    assert isinstance(rows, list)
    assert 1 <= len(rows) <= 5
    assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows)
    mine = [r for r in rows if r["seq"] == published["seq"]]
    assert len(mine) == 1
    assert mine[0]["type"] == "workflow_submitted"
    assert mine[0]["workflow_id"] == "wf-tail"
    assert mine[0]["sender"] == "operator"
    assert mine[0]["problem"] is None  # signature and chain check out
    assert mine[0]["payload"]["pattern"] == "custom"


def test_replay_check_matches_the_live_projection(live: Swarm) -> None:
    last, _ = live.settled()
    result = live.ok("replay", "--check", "--json")
    data = result.json()
    assert data["matches"] is True
    assert data["events"] == last
    assert data["state_hash"] == data["live_state_hash"]


def test_audit_verify_on_a_clean_log(live: Swarm) -> None:
    last, _ = live.settled()
    data = live.json("audit", "verify")
    assert data["rejected"] == []
    assert data["chain_breaks"] == []
    assert data["events_checked"] == last
    assert data["valid"] == last


def test_replay_to_writes_a_file_once(live: Swarm, tmp_path: Path) -> None:
    target = tmp_path / "replayed.duckdb"
    data = live.json("replay", "--to", str(target))
    assert target.is_file()
    assert target.stat().st_size > 0
    assert data["path"] == str(target)
    assert data["events"] >= 1
    written = target.read_bytes()

    again = live.run("replay", "--to", str(target), "--json")
    assert_usage_error(again)
    assert target.read_bytes() == written


# -- 2. bad input: exit 2, one line on stderr, nothing changed ----------------------------------

BAD_INPUT: list[tuple[str, tuple[str, ...]]] = [
    # query
    ("query-unknown-table", ("query", "SELECT * FROM no_such_table")),
    ("query-insert", ("query", "INSERT INTO events (seq) VALUES (999999)")),
    ("query-delete", ("query", "DELETE FROM tasks")),
    ("query-drop", ("query", "DROP TABLE tasks")),
    ("query-attach", ("query", "ATTACH 'x.db'")),
    ("query-set", ("query", "SET threads=1")),
    ("query-copy", ("query", "COPY tasks TO '{root}/x.csv'")),
    ("query-two-statements", ("query", "SELECT 1; SELECT 2")),
    ("query-read-csv", ("query", "SELECT * FROM read_csv('/etc/passwd')")),
    ("query-checkpoint", ("query", "SELECT * FROM checkpoint()")),
    (
        "query-read-own-file",
        ("query", "SELECT * FROM read_blob('{root}/data/projections/default.duckdb')"),
    ),
    ("query-pragma", ("query", "SELECT * FROM pragma_database_size()")),
    # a missing data dir
    ("missing-dir-status", (*NO_DIR, "status")),
    ("missing-dir-query", (*NO_DIR, "query", "SELECT 1")),
    ("missing-dir-publish", (*NO_DIR, *SUBMIT)),
    ("missing-dir-replay", (*NO_DIR, "replay")),
    ("missing-dir-audit", (*NO_DIR, "audit", "verify")),
    # an unreachable server
    ("unreachable-status", (*NO_SERVER, "status")),
    ("unreachable-publish", (*NO_SERVER, *SUBMIT)),
    # events publish
    ("publish-malformed-json", (*PUBLISH, "workflow_submitted", "--payload", "{bad")),
    ("publish-missing-field", (*ASSIGN, '{"role":"writer"}')),
    ("publish-bad-role", (*ASSIGN, '{"task_id":"t9","role":"Bad Role!"}')),
    ("publish-unknown-type", (*PUBLISH, "no_such_type", "--payload", "{}")),
    ("publish-as-agent-without-key", (*RESULT, "--as", "ghost")),
    ("publish-workflow-event-without-workflow", SUBMIT[:-2]),
    # namespace
    ("bad-namespace-status", (*BAD_NS, "status")),
    # keys
    ("keys-init-when-a-key-exists", ("keys", "init")),
    ("keys-issue-bad-role", ("keys", "issue", "Bad Role!")),
    ("keys-issue-existing-agent", ("keys", "issue", "writer", "--agent-id", "w1")),
    # usage errors
    ("unknown-command", ("no-such-command",)),
    ("unknown-option", ("status", "--no-such-option")),
    ("missing-argument", ("query",)),
]


def _snapshot_files(root: Path) -> dict[str, bytes]:
    """Keys and credentials: what bad input must never write."""
    keys = root / "data" / "keys"
    return {
        str(p.relative_to(keys)): p.read_bytes() for p in sorted(keys.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("args", [a for _, a in BAD_INPUT], ids=[i for i, _ in BAD_INPUT])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    quiet: Swarm, args: tuple[str, ...]
) -> None:
    assert quiet.baseline is not None
    args = tuple(a.replace("{root}", str(quiet.root)) for a in args)
    missing_existed = Path(MISSING_DATA_DIR).exists()
    files = _snapshot_files(quiet.root)

    assert_usage_error(quiet.run(*args))

    last, counts, _ = quiet.state()
    assert (last, counts) == quiet.baseline
    assert _snapshot_files(quiet.root) == files
    assert not (quiet.root / "x.db").exists()
    assert not (quiet.root / "x.csv").exists()
    if not missing_existed:
        assert not Path(MISSING_DATA_DIR).exists()


# -- 3. down ---------------------------------------------------------------------------------------


def test_down_stops_everything_and_is_idempotent(tmp_path: Path) -> None:
    swarm = Swarm(tmp_path)
    try:
        swarm.ok("up", "--detach")
        server_pid, projector_pid = swarm.pids()
        assert alive(server_pid)
        assert alive(projector_pid)

        swarm.ok("down")
        poll(lambda: not alive(server_pid), f"nats-server pid {server_pid} to exit")
        poll(lambda: not alive(projector_pid), f"projector pid {projector_pid} to exit")
    except BaseException:
        swarm.run("down")  # leave no stray server behind
        raise

    swarm.ok("down")
    assert_usage_error(swarm.run("status"))  # no server any more: exit 2, one line


# -- 4. key files ----------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_operator_and_agent_seeds_are_mode_0600(live: Swarm) -> None:
    live.ok("keys", "issue", "checker", "--agent-id", "m1")
    keys = live.data_dir / "keys"
    operator = keys / "operator.seed"
    assert operator.is_file()
    assert _mode(operator) == 0o600
    seeds = sorted((keys / "agents").glob("*.seed"))
    assert keys / "agents" / "m1.seed" in seeds
    for seed in seeds:
        assert _mode(seed) == 0o600, seed
