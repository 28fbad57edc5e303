"""An OTLP/HTTP traces receiver for the tests, run as a process of its own::

    python otlp_receiver.py --out SPANS.jsonl --ready PORTFILE

It takes ``POST /v1/traces`` with an ``ExportTraceServiceRequest`` in protobuf (gzip or not),
decodes it with the official definitions (``opentelemetry-proto``), appends one JSON line per
span to the out file (flushed before it answers) and answers an ``ExportTraceServiceResponse``.
Each line: ``trace_id``, ``span_id``, ``parent_span_id`` (hex, ``""`` for none), ``name``,
``kind``, ``start``, ``end`` (ns), ``status`` (``code``, ``message``), ``attributes``,
``events`` (``name``, ``time``, ``attributes``), ``resource`` (its attributes), ``scope``,
``request`` (the number of the request it came in). Once listening, it writes its port to the
ready file.
"""

from __future__ import annotations

import argparse
import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def _attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs if isinstance(kv, KeyValue)}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    out: Path
    lock = threading.Lock()
    requests = 0

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path != "/v1/traces":
            self._answer(404, b"no such route")
            return
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        with self.lock:
            Handler.requests += 1
            lines = []
            for resource_spans in request.resource_spans:
                resource = _attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    scope = {"name": scope_spans.scope.name, "version": scope_spans.scope.version}
                    for span in scope_spans.spans:
                        lines.append(
                            {
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent_span_id": span.parent_span_id.hex(),
                                "name": span.name,
                                "kind": span.kind,
                                "start": span.start_time_unix_nano,
                                "end": span.end_time_unix_nano,
                                "status": MessageToDict(span.status),
                                "attributes": _attributes(span.attributes),
                                "events": [
                                    {
                                        "name": e.name,
                                        "time": e.time_unix_nano,
                                        "attributes": _attributes(e.attributes),
                                    }
                                    for e in span.events
                                ],
                                "resource": resource,
                                "scope": scope,
                                "request": Handler.requests,
                            }
                        )
            with self.out.open("a") as f:
                f.writelines(json.dumps(line) + "\n" for line in lines)
        self._answer(200, ExportTraceServiceResponse().SerializeToString())

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--ready", type=Path, required=True)
    args = parser.parse_args()
    Handler.out = args.out
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    partial = args.ready.with_suffix(".partial")
    partial.write_text(str(server.server_address[1]))
    partial.replace(args.ready)  # the reader sees the whole port or nothing
    server.serve_forever()


if __name__ == "__main__":
    main()
