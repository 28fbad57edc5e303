"""``swarmlog demo``: the main job end to end, on the embedded server, offline, in a temp dir.

It brings a swarm up (server, projector, router, conductor), starts the example agents of
``examples/`` as daemons, and runs one workflow of each pattern on the local data shipped there:

* **supervisor**: a briefing on the documents in ``examples/docs`` (planner, librarian,
  summarizer on the offline model, editor reviewing every output and writing the briefing);
* **pipeline**: ``examples/data/orders.csv`` extracted, cleaned, transformed, validated and loaded
  into a DuckDB file;
* **debate**: three independent checkers review ``examples/code/inventory.py`` over two rounds,
  and a judge records agreement and disagreement;
* **swarm**: indexers claim the documents among themselves with no coordinator;
* **tools**: an :class:`~swarmlog.LLMAgent` on the offline model asks a real MCP server
  (``mcp-server-time``, from PyPI, over stdio) and a Python tool, every model and tool call a
  signed pair of events in the journal.

Then it repeats the briefing and the tools question (answered from the result cache: no tool is
called again), prints a summary from the projections, verifies the audit log and checks that a
replay reproduces the live state, and stops everything. Every step is a real ``swarmlog``
command in a real process.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markdown import Markdown

from swarmlog.agents.host.sandbox import PATHS_ENV
from swarmlog.bus.jetstream import refusals
from swarmlog.bus.subjects import js_api, kv_bucket, kv_key, stream_name, task_subject
from swarmlog.config import Settings
from swarmlog.control.keystore import KeyStore
from swarmlog.control.system import resolve_url
from swarmlog.errors import ConfigError
from swarmlog.rendering.console import print_table

__all__ = ["find_examples", "run_demo"]

AGENTS = (
    "examples.report:Planner",
    "examples.report:Librarian",
    "examples.report:Summarizer",
    "examples.report:Editor",
    "examples.etl:Etl",
    "examples.codereview:Checker",
    "examples.codereview:Judge",
    "examples.indexer:Indexer",
    "examples.assistant:Assistant",
)
"""Nine worker roles, one replica each (two for the indexers, to make the swarm a swarm)."""


def find_examples(given: Path | None = None) -> Path:
    """The ``examples/`` folder of a swarmlog checkout (its agents and data)."""
    candidates = [given] if given else [Path.cwd() / "examples"]
    # src/swarmlog/harness/demo.py: the checkout is three folders up from this one
    candidates.append(Path(__file__).resolve().parents[3] / "examples")
    for folder in candidates:
        if folder is not None and (folder / "report.py").is_file():
            return folder.resolve()
    raise ConfigError(
        "the demo needs the examples/ folder of a swarmlog checkout; run it from one, or pass"
        " --examples DIR"
    )


class _Swarm:
    """Runs ``swarmlog`` commands against one data dir, from the folder holding ``examples``."""

    def __init__(self, data: Path, examples: Path, console: Console) -> None:
        self.data = data
        self.work = data.parent / "work"
        """Where the agents write (the warehouse): never the data dir, closed to agents."""
        self.work.mkdir(parents=True, exist_ok=True)
        self.examples = examples
        self.console = console
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMLOG_")}
        self.env |= {
            "SWARMLOG_DATA": str(data),
            "SWARMLOG_EXAMPLES_ROOTS": str(self.work),  # the example agents' own check
            PATHS_ENV: str(self.work),  # and their processes' confinement
        }

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "swarmlog", *args],
            cwd=self.examples.parent,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, *args: str, ok: tuple[int, ...] = (0,)) -> str:
        out, err, code = self.finish(self.popen(*args))
        if code not in ok:
            raise RuntimeError(f"swarmlog {' '.join(args)} exited {code}: {err.strip()[-500:]}")
        return out

    @staticmethod
    def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[str, str, int]:
        out, err = proc.communicate(timeout=timeout)
        return out, err, proc.returncode

    def rows(self, sql: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = json.loads(self.run("query", sql, "--json"))["rows"]
        return rows

    def together(self, commands: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
        """Run several commands at once (each prints one JSON document); results by name."""
        started = {name: self.popen(*args) for name, args in commands.items()}
        results = {}
        for name, proc in started.items():
            out, err, code = self.finish(proc)
            if code not in (0, 1) or not out.strip():
                raise RuntimeError(f"{name} exited {code}: {err.strip()[-500:]}")
            results[name] = json.loads(out)
        return results


def _workflows(ex: Path, work: Path) -> dict[str, list[str]]:
    docs, wait = str(ex / "docs"), ["--wait", "--json", "--timeout", "90"]
    swarm = {"tasks": [{"id": "index", "capability": "index", "input": {"folder": docs}}]}
    etl = {"csv": str(ex / "data" / "orders.csv"), "db": str(work / "warehouse.duckdb")}
    stages = ["extract", "clean", "transform", "validate", "load"]
    return {
        "supervisor": _briefing(docs) + wait,
        "pipeline": [
            "submit",
            "pipeline",
            *(a for s in stages for a in ("--stage", s)),
            "--data",
            json.dumps(etl),
            *wait,
        ],
        "debate": [
            "submit",
            "debate",
            "--question",
            json.dumps({"file": str(ex / "code" / "inventory.py"), "ask": "ready to merge?"}),
            "--capability",
            "check-code",
            "--judge",
            "judge",
            "--debaters",
            "3",
            "--rounds",
            "2",
            *wait,
        ],
        "swarm": ["submit", "swarm", "--input", json.dumps(swarm), *wait],
        "tools": _question() + wait,
    }


def _question() -> list[str]:
    question = "What time is it in UTC?"
    return ["submit", "pipeline", "--stage", "assist", "--data", json.dumps(question)]


def _briefing(docs: str) -> list[str]:
    return [
        "submit",
        "supervisor",
        "--goal",
        "a briefing on the documents",
        "--data",
        json.dumps({"folder": docs}),
        "--reviewer",
        "review",
        "--synthesizer",
        "synthesize",
    ]


def _show(console: Console, name: str, outcome: dict[str, Any]) -> None:
    result, status = outcome.get("result"), outcome.get("status")
    console.rule(f"[bold]{name}[/] {outcome['workflow_id']}: {status}")
    if status == "succeeded" and name == "tools":
        console.print(f"the assistant: {result}")
        return
    if status != "succeeded" or not isinstance(result, dict):
        console.print_json(data=result)
        return
    if name == "supervisor":
        console.print(Markdown(result["report"]))
    elif name == "pipeline":
        console.print(f"loaded {result['loaded']} orders into {result['db']}")
        console.print(f"dropped while cleaning: {result['dropped']}")
        rows = sorted(result["revenue_by_region"].items(), key=lambda kv: -kv[1])
        print_table(console, "revenue by region", ["region", "revenue"], rows)
    elif name == "debate":
        console.print(result["summary"])
        console.print(f"agreement: {result['agreement']}")
        console.print(f"seen by one checker only: lines {result['disagreement']['seen_by_one']}")
        serious = [
            (f["line"], f["rule"], f["perspective"], f["message"])
            for f in result["findings"]
            if f["rule"] in {"bare-except", "eval", "mutable-default", "deep-nesting"}
        ]
        print_table(console, "serious findings", ["line", "rule", "seen by", "why"], serious)
    elif name == "swarm":
        docs = [v for v in result.values() if isinstance(v, dict) and "document" in v]
        rows = [(d["document"], d["words"], ", ".join(d["terms"]), d["by"]) for d in docs]
        print_table(
            console, "indexed without a coordinator", ["document", "words", "terms", "by"], rows
        )


def _play(swarm: _Swarm) -> int:
    console, data, ex = swarm.console, swarm.data, swarm.examples
    began = time.monotonic()
    swarm.run("up", "--detach")
    console.print("[bold]1.[/] swarm up: nats-server, projector, router, conductor")
    starts = {
        target: ["agent", "start", target, "--detach"]
        + (["--replicas", "2"] if target.endswith("Indexer") else [])
        for target in AGENTS
    }
    procs = {t: swarm.popen(*args) for t, args in starts.items()}
    for target, proc in procs.items():
        _, err, code = swarm.finish(proc)
        if code:
            raise RuntimeError(f"agent start {target} failed: {err.strip()[-300:]}")
    console.print(f"[bold]2.[/] {len(AGENTS)} worker roles started as daemons (examples/)")
    outcomes = swarm.together(_workflows(ex, swarm.work))
    console.print("[bold]3.[/] one workflow of each pattern, run at the same time:")
    for name, outcome in outcomes.items():
        _show(console, name, outcome)
    _calls(swarm, outcomes["tools"]["workflow_id"])
    tool_calls = _count(swarm, "tool_calls")
    repeated = swarm.together(
        {
            "again": [*_briefing(str(ex / "docs")), "--wait", "--json"],
            "question": [*_question(), "--wait", "--json"],
        }
    )
    again, question = repeated["again"], repeated["question"]
    cached = swarm.rows(
        "SELECT count(*) FILTER (WHERE cached) AS cached, count(*) AS n FROM tasks"
        f" WHERE workflow_id = '{again['workflow_id']}' AND capability = 'summarize'"
    )[0]
    console.rule()
    console.print(
        f"[bold]4.[/] the briefing again: {cached['cached']} of {cached['n']} summaries came"
        " from the result cache (the same input to the same model)"
    )
    tools_again = _count(swarm, "tool_calls") - tool_calls
    console.print(
        f"    the tools question again: {question['status']}, {tools_again} tool calls made"
        " (answered from the result cache)"
    )
    summary = swarm.rows(
        "SELECT w.workflow_id, w.pattern, w.status, count(t.task_id) AS tasks,"
        " count(*) FILTER (WHERE t.cached) AS cached,"
        " coalesce(sum(t.attempt), 0) - count(t.attempt) AS retries"
        " FROM workflows w LEFT JOIN tasks t USING (workflow_id)"
        " GROUP BY ALL ORDER BY min(w.submitted_at), w.workflow_id"
    )
    print_table(
        console,
        "[bold]5.[/] from the projections: workflows",
        ["workflow", "pattern", "status", "tasks", "cached", "retries"],
        [tuple(r.values()) for r in summary],
    )
    agents = swarm.rows(
        "SELECT a.role, count(DISTINCT a.agent_id) AS replicas, count(t.task_id) AS done,"
        " (SELECT coalesce(sum(used_tokens), 0) FROM budgets b WHERE b.scope = 'agent'"
        " AND b.scope_id IN (SELECT agent_id FROM agents x WHERE x.role = a.role)) AS tokens"
        " FROM agents a LEFT JOIN tasks t ON t.completed_by = a.agent_id"
        " GROUP BY a.role ORDER BY done DESC, a.role"
    )
    print_table(
        console,
        "agents",
        ["role", "replicas", "tasks done", "tokens"],
        [tuple(r.values()) for r in agents],
    )
    probe = "summarizer-1"
    tried = [
        task_subject("default", "editor-1", "t1", "result"),  # as another agent
        kv_key(kv_bucket("default", "flags"), "all"),  # the kill switch
        js_api("STREAM", "DELETE", stream_name("default")),  # the history
    ]
    refused = asyncio.run(_refusals(data, probe, tried))
    console.print(
        f"[bold]6.[/] the broker: {probe}'s key tried to write as another agent, flip the kill"
        f" switch and delete the stream: {len(refused)} of {len(tried)} refused by the server"
    )
    # The agents stop first (each says so as it goes), so the audit and the replay see a still
    # log.
    swarm.run("agent", "stop", "--all")
    audit = json.loads(swarm.run("audit", "verify", "--json", ok=(0, 1)))
    replay = json.loads(swarm.run("replay", "--check", "--json", ok=(0, 1)))
    clean = (
        not audit["rejected"] and not audit["chain_breaks"] and not audit["stream_chain"]["gaps"]
    )
    console.print(f"[bold]7.[/] audit verify: {_audit_line(audit)}")
    console.print(f"[bold]8.[/] replay --check: {_replay_line(replay)}")
    succeeded = all(o.get("status") == "succeeded" for o in [*outcomes.values(), again, question])
    console.print(f"done in {time.monotonic() - began:.0f} s")
    guarded = refused == tried
    journaled = tool_calls > 0 and tools_again == 0
    return 0 if succeeded and clean and replay["matches"] and guarded and journaled else 1


def _count(swarm: _Swarm, table: str) -> int:
    return int(swarm.rows(f"SELECT count(*) AS n FROM {table}")[0]["n"])


def _calls(swarm: _Swarm, workflow_id: str) -> None:
    """The tools workflow's journal: every model call and tool call, as signed event pairs."""
    rows = swarm.rows(
        "SELECT 'model' AS kind, call_id, model AS what, status,"
        " prompt_tokens + completion_tokens AS tokens, duration_ms, requested_seq"
        f" FROM model_calls WHERE workflow_id = '{workflow_id}'"
        " UNION ALL SELECT 'tool', call_id, tool, status, NULL, duration_ms, requested_seq"
        f" FROM tool_calls WHERE workflow_id = '{workflow_id}' ORDER BY requested_seq"
    )
    print_table(
        swarm.console,
        "its journal: each call a signed request/response pair (swarmlog calls)",
        ["kind", "call", "model or tool", "status", "tokens", "ms"],
        [tuple(r.values())[:6] for r in rows],
    )


async def _refusals(data: Path, agent_id: str, subjects: list[str]) -> list[str]:
    settings = Settings(data_dir=data)
    return await refusals(
        resolve_url(settings), KeyStore(settings.keys_dir).login(agent_id), subjects
    )


def _audit_line(audit: dict[str, Any]) -> str:
    events, rejected, breaks = audit["events_checked"], audit["rejected"], audit["chain_breaks"]
    if rejected or breaks:
        return f"{len(rejected)} rejected and {len(breaks)} chain breaks in {events} events"
    head = audit["stream_chain"]["head"][:16]
    return (
        f"all {events} events signed by their agents, verified, chains unbroken;"
        f" stream chain head {head}…"
    )


def _replay_line(replay: dict[str, Any]) -> str:
    if replay["matches"]:
        return (
            f"{replay['events']} events re-folded give the live state hash"
            f" ({replay['state_hash'][:16]}…)"
        )
    return f"a DIFFERENT state: {replay['state_hash'][:16]}… vs {replay['live_state_hash'][:16]}…"


def run_demo(console: Console, keep: Path | None = None, examples: Path | None = None) -> int:
    """Run the demo; returns the exit code (0 when every workflow succeeded and the audit and
    the replay check came out clean)."""
    ex = find_examples(examples)
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        return _with_swarm(keep.resolve(), ex, console)
    with tempfile.TemporaryDirectory(prefix="swarmlog-demo-") as tmp:
        return _with_swarm(Path(tmp), ex, console)


def _with_swarm(data: Path, examples: Path, console: Console) -> int:
    swarm = _Swarm(data / "swarm", examples, console)
    try:
        return _play(swarm)
    except (RuntimeError, subprocess.TimeoutExpired, ValueError, KeyError) as exc:
        console.print(f"[red]demo failed:[/] {exc}")
        for log in sorted((swarm.data / "logs").glob("*.log")):
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            if any("Error" in line or "Traceback" in line for line in tail):
                console.print(f"{log.name}: {' | '.join(tail)}")
        return 1
    finally:
        swarm.run("agent", "stop", "--all", ok=(0, 1, 2))
        swarm.run("down", ok=(0, 1, 2))
        console.print(
            "[bold]9.[/] stopped: agents, conductor, router, watchdog, console, keeper, projector,"
            " nats-server"
        )
