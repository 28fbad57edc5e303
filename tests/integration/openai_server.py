"""An OpenAI-compatible chat-completions server for the tests, run as a process of its own::

    python openai_server.py --scenario S.json --record R.jsonl --ready PORTFILE

It speaks the wire format of ``POST /v1/chat/completions``: a JSON completion
(``choices[0].message`` with ``content`` and ``tool_calls``, ``usage``), or, when the request
says ``"stream": true``, server-sent events over chunked HTTP/1.1 (``data: {chunk}``: a role
delta, content deltas, tool-call deltas with the arguments split over several chunks, a chunk
with the finish reason, a usage chunk when ``stream_options.include_usage``, ``data: [DONE]``).

What it answers is chosen by the request's model name: the scenario file (read again at each
request, so a test may rewrite it) maps a model name to a list of answers, used in turn, the last
one again and again. A model it does not know gets its last message's text in upper case. An
answer is an object:

- ``{"content": "...", "tool_calls": [{"id", "name", "arguments"}], "finish_reason": "...",
  "usage": {"prompt_tokens": 7, "completion_tokens": 3}}``: a completion (``arguments`` is sent
  as it is, malformed or not);
- ``{"status": 429, "error": "..."}``: an error answer in OpenAI's shape;
- ``{"body": ...}`` (JSON) or ``{"raw": "..."}`` (text): a 200 answer that is not a completion;
- ``"delay": seconds`` with any of these: wait that long first; ``"piece": n``: the size of the
  streamed pieces (default 4 characters); ``"break_after": n``: a stream cut after n chunks.

Every request is appended to the record file (one JSON line: path, headers in lower case, body)
before it is answered. Once listening, it writes its port to the ready file.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    scenario: Path
    record: Path
    lock = threading.Lock()
    turns: Counter[str] = Counter()

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = json.loads(raw)
        with self.lock:
            seen = {
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body,
            }
            with self.record.open("a") as out:
                out.write(json.dumps(seen) + "\n")
            if self.path != "/v1/chat/completions":
                error = {"message": f"no route {self.path}", "type": "not_found"}
                self._json(404, {"error": error})
                return
            answer = self._answer(body)
        time.sleep(float(answer.get("delay", 0)))
        if "status" in answer:
            error = {"message": answer.get("error", "failed"), "type": "test", "code": None}
            self._json(int(answer["status"]), {"error": error})
        elif "body" in answer:
            self._json(200, answer["body"])
        elif "raw" in answer:
            self._send(200, "text/plain", str(answer["raw"]).encode())
        elif body.get("stream"):
            self._stream(body, answer)
        else:
            self._json(200, _completion(body["model"], answer))

    def _answer(self, body: dict[str, Any]) -> dict[str, Any]:
        model = str(body.get("model", ""))
        scenario = json.loads(self.scenario.read_text()) if self.scenario.exists() else {}
        answers = scenario.get(model)
        if not answers:
            last = body["messages"][-1].get("content") or ""
            return {"content": str(last).upper()}
        turn = self.turns[model]
        self.turns[model] += 1
        answer: dict[str, Any] = answers[min(turn, len(answers) - 1)]
        return answer

    def _stream(self, body: dict[str, Any], answer: dict[str, Any]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        model = body["model"]
        piece = int(answer.get("piece", 4))
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        text = str(answer.get("content", ""))
        deltas += [{"content": text[i : i + piece]} for i in range(0, len(text), piece)]
        for index, call in enumerate(answer.get("tool_calls", [])):
            head = {"index": index, "id": call["id"], "type": "function"}
            deltas.append({"tool_calls": [{**head, "function": {"name": call["name"]}}]})
            arguments = str(call["arguments"])
            deltas += [
                {
                    "tool_calls": [
                        {"index": index, "function": {"arguments": arguments[i : i + piece]}}
                    ]
                }
                for i in range(0, len(arguments), piece)
            ]
        chunks = [_chunk(model, delta, None) for delta in deltas]
        chunks.append(_chunk(model, {}, _finish(answer)))
        if (body.get("stream_options") or {}).get("include_usage"):
            chunks.append({**_chunk(model, {}, None), "choices": [], "usage": _usage(answer)})
        cut = answer.get("break_after")
        for sent, chunk in enumerate(chunks):
            if cut is not None and sent >= int(cut):
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)  # no last chunk: a broken stream
                self.close_connection = True
                return
            self._event(f"data: {json.dumps(chunk)}\n\n")
        self._event("data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def _event(self, text: str) -> None:
        data = text.encode()
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _json(self, status: int, payload: object) -> None:
        self._send(status, "application/json", json.dumps(payload).encode())

    def _send(self, status: int, kind: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _finish(answer: dict[str, Any]) -> str:
    return str(
        answer.get("finish_reason") or ("tool_calls" if answer.get("tool_calls") else "stop")
    )


def _usage(answer: dict[str, Any]) -> dict[str, int]:
    usage = answer.get("usage", {"prompt_tokens": 7, "completion_tokens": 3})
    return {**usage, "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"]}


def _chunk(model: str, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [choice],
    }


def _completion(model: str, answer: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.get("content")}
    if answer.get("tool_calls"):
        message["tool_calls"] = [
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": str(call["arguments"])},
            }
            for call in answer["tool_calls"]
        ]
    choice = {"index": 0, "message": message, "finish_reason": _finish(answer), "logprobs": None}
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [choice],
        "usage": _usage(answer),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario", type=Path, required=True)
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("--ready", type=Path, required=True)
    args = parser.parse_args()
    Handler.scenario = args.scenario
    Handler.record = args.record
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    partial = args.ready.with_suffix(".partial")
    partial.write_text(str(server.server_address[1]))
    os.replace(partial, args.ready)  # whole or absent: the test reads it as soon as it appears
    server.serve_forever()


if __name__ == "__main__":
    main()
