"""OpenTelemetry traces from a live system: an LLM agent (a real daemon) does a workflow's
step through an OpenAI-compatible server in a process of its own, failing once (a 503) and
calling a tool; `traces export` sends the workflow's spans to a real OTLP/HTTP receiver (a
process decoding the protobufs with opentelemetry-proto), twice with the same ids, and `traces
follow`, running beside it, sends the same spans live and, restarted, nothing twice."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from clikit import ROOT, Cli, running, start_agents

from swarmlog.observability.spans import trace_id_of
from swarmlog.schemas.payloads import TaskOffered
from waiting import wait_until

pytestmark = pytest.mark.e2e

HERE = Path(__file__).parent
CHAT_SERVER = HERE.parent / "integration" / "openai_server.py"
RECEIVER = HERE / "otlp_receiver.py"
MODEL = "gpt-trace"
SCENARIO = {
    MODEL: [
        {"status": 503, "error": "overloaded"},  # the first attempt fails: a retry follows
        {
            "tool_calls": [{"id": "c1", "name": "word_count", "arguments": '{"text": "a b c"}'}],
            "usage": {"prompt_tokens": 21, "completion_tokens": 5},
        },
        {"content": "3 words", "usage": {"prompt_tokens": 34, "completion_tokens": 2}},
    ]
}
PLAN = {
    "plan": {
        "steps": [
            {"id": "s1", "capability": "count", "input": "a b c"},
        ]
    }
}


@dataclass
class Process:
    """A helper server in a process of its own, listening on the port it wrote."""

    process: subprocess.Popen[bytes]
    port: int


def serve(args: list[str], ready: Path, log: Path) -> Process:
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, *args, "--ready", str(ready)], stdout=out, stderr=subprocess.STDOUT
        )
    wait_until(lambda: ready.exists() or process.poll() is not None, 30)
    assert process.poll() is None, log.read_text()
    return Process(process, int(ready.read_text()))


@dataclass
class Receiver:
    """An OTLP/HTTP receiver (otlp_receiver.py) and the spans it got."""

    url: str
    out: Path

    def spans(self) -> list[dict[str, Any]]:
        text = self.out.read_text() if self.out.exists() else ""
        return [json.loads(line) for line in text.splitlines()]


@dataclass
class System:
    cli: Cli
    export: Receiver
    live: Receiver
    base: Path


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """A running system, the chat server, an agent of the workflow's capability and two OTLP
    receivers: one for the exports, one for the follower."""
    base = tmp_path_factory.mktemp("traces")
    (base / "scenario.json").write_text(json.dumps(SCENARIO))
    servers = []
    chat = base / "chat.jsonl"
    try:
        model = serve(
            [str(CHAT_SERVER), "--scenario", str(base / "scenario.json"), "--record", str(chat)],
            base / "chat.port",
            base / "chat.log",
        )
        servers.append(model)
        receivers = []
        for name in ("export", "live"):
            out = base / f"{name}.jsonl"
            got = serve(
                [str(RECEIVER), "--out", str(out)], base / f"{name}.port", base / f"{name}.log"
            )
            servers.append(got)
            receivers.append(Receiver(f"http://127.0.0.1:{got.port}", out))
        with running(base / "data") as cli:
            cli.env["SWARMLOG_MODEL_DEFAULT"] = f"openai:http://127.0.0.1:{model.port}/v1#{MODEL}"
            cli.env["SWARMLOG_MODEL_DEFAULT_KEY"] = "test-key"
            start_agents(cli, "tests.e2e.traceagents:Counter")
            yield System(cli, *receivers, base)
    finally:
        for server in servers:
            server.process.kill()
            server.process.wait(timeout=10)


def follow(system: System) -> subprocess.Popen[str]:
    """`traces follow` to the live receiver, in a process of its own."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "swarmlog",
            "traces",
            "follow",
            "--otlp",
            system.live.url,
            "-i",
            "0.2",
        ],
        env=system.cli.env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process


def stop(process: subprocess.Popen[str]) -> str:
    """SIGTERM ``process``, which must end cleanly; its stderr."""
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    return err


def submit(cli: Cli) -> str:
    out = cli("submit", "custom", "--input", json.dumps(PLAN), "--wait", "--json")
    assert out.returncode == 0, out.stderr
    done = json.loads(out.stdout)
    assert done["status"] == "succeeded", done
    workflow: str = done["workflow_id"]
    return workflow


def export(system: System, workflow: str) -> dict[str, Any]:
    out = system.cli(
        "traces", "export", "--otlp", system.export.url, "--workflow", workflow, "--json"
    )
    assert out.returncode == 0, out.stderr
    sent: dict[str, Any] = json.loads(out.stdout)
    return sent


def tree(spans: list[dict[str, Any]]) -> list[tuple[int, str, str]]:
    """(depth, name, status code) depth-first, children in start order."""
    children: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        children.setdefault(span["parent_span_id"], []).append(span)

    def walk(parent: str, depth: int) -> Iterator[tuple[int, str, str]]:
        for span in sorted(children.get(parent, []), key=lambda s: s["start"]):
            yield depth, span["name"], span["status"].get("code", "STATUS_CODE_UNSET")
            yield from walk(span["span_id"], depth + 1)

    return list(walk("", 0))


def without_request(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(({k: v for k, v in s.items() if k != "request"} for s in spans), key=str)


def roots(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in spans if s["parent_span_id"] == ""]


def attributes(spans: list[dict[str, Any]], name: str, *keys: str) -> list[tuple[Any, ...]]:
    """The values of ``keys`` on each span named ``name``, in start order."""
    named = sorted((s for s in spans if s["name"] == name), key=lambda s: s["start"])
    return [tuple(s["attributes"].get(k) for k in keys) for s in named]


def test_a_workflows_spans_reach_the_receiver_as_a_tree_the_same_each_time(
    system: System,
) -> None:
    live = follow(system)
    try:
        workflow = submit(system.cli)

        first = export(system, workflow)
        assert (first["traces"], first["workflows"], first["pending"]) == (1, 1, 0)
        assert first["endpoint"] == f"{system.export.url}/v1/traces"
        assert first["unjudged"] is None
        sent = system.export.spans()
        assert len(sent) == first["spans"] == 8
        assert {s["trace_id"] for s in sent} == {trace_id_of("default", "workflow", workflow)}
        error, unset = "STATUS_CODE_ERROR", "STATUS_CODE_UNSET"
        assert tree(sent) == [
            (0, "invoke_workflow custom", unset),
            (1, "task count", unset),
            (2, "invoke_agent counter", error),  # the 503: a retryable error
            (3, "chat gpt-trace", error),
            (2, "invoke_agent counter", unset),  # the retry
            (3, "chat gpt-trace", unset),
            (3, "execute_tool word_count", unset),
            (3, "chat gpt-trace", unset),
        ]
        chat = ("gen_ai.operation.name", "gen_ai.request.model", "gen_ai.usage.input_tokens")
        assert attributes(sent, "chat gpt-trace", *chat, "gen_ai.usage.output_tokens") == [
            ("chat", MODEL, None, None),
            ("chat", MODEL, 21, 5),
            ("chat", MODEL, 34, 2),
        ]
        assert attributes(
            sent, "execute_tool word_count", "gen_ai.operation.name", "gen_ai.tool.name"
        ) == [("execute_tool", "word_count")]
        agents = (
            "gen_ai.operation.name",
            "gen_ai.agent.name",
            "gen_ai.agent.id",
            "swarmlog.attempt",
        )
        assert attributes(sent, "invoke_agent counter", *agents) == [
            ("invoke_agent", "counter", "counter-1", 1),
            ("invoke_agent", "counter", "counter-1", 2),
        ]
        assert {s["attributes"]["swarmlog.verified"] for s in sent} == {True}
        assert {s["resource"]["service.name"] for s in sent} == {"swarmlog"}
        assert {s["scope"]["name"] for s in sent} == {"swarmlog.observability"}
        (root,) = roots(sent)
        assert root["attributes"]["swarmlog.workflow_id"] == workflow
        assert all(root["start"] <= s["start"] <= s["end"] <= root["end"] for s in sent)
        (retry,) = [e for s in sent for e in s["events"] if e["name"] == "task_retry_scheduled"]
        assert retry["attributes"]["swarmlog.attempt"] == 2

        # Exporting again sends the very same spans: same ids, same everything.
        again = export(system, workflow)
        assert again == first
        both = system.export.spans()
        assert without_request(both[len(sent) :]) == without_request(sent)

        # The follower, running all along, sent the same spans as they completed.
        wait_until(lambda: len(system.live.spans()) >= len(sent), 30)
        assert without_request(system.live.spans()) == without_request(sent)
    finally:
        err = stop(live)
    assert f"sent {len(sent)} spans" in err, err

    # Restarted, it sends only what completes from now on (a task of no workflow: a trace of
    # its own), never a span twice.
    live = follow(system)
    try:
        system.cli.submit_payloads([TaskOffered(task_id="t-after", capability="count")])
        trace = trace_id_of("default", "task", "t-after")
        wait_until(lambda: any(s["trace_id"] == trace for s in roots(system.live.spans())), 30)
        spans = system.live.spans()
        assert len({s["span_id"] for s in spans}) == len(spans)
        assert without_request(spans[: len(sent)]) == without_request(sent)
        assert tree(spans[len(sent) :]) == [
            (0, "task count", unset),
            (1, "invoke_agent counter", unset),
            (2, "chat gpt-trace", unset),
        ]
    finally:
        err = stop(live)
    assert "(spans complete by seq" in err, err
    assert "stopped: sent 3 spans" in err, err


def test_bad_input_is_one_line_and_exit_2(system: System) -> None:
    cli = system.cli
    for args, said, option in (
        (["--otlp", "http://127.0.0.1:9", "--timeout", "0.5"], "connection refused", "--otlp"),
        (["--otlp", system.export.url, "--workflow", "wf-none"], "no workflow", "--workflow"),
    ):
        out = cli("traces", "export", *args)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert said in out.stderr, out.stderr
        assert out.stderr.count("\n") == 1, out.stderr
        assert out.stderr.startswith("error: [SWL100]"), out.stderr
        assert out.stderr.endswith(f"(see {option})\n"), out.stderr
