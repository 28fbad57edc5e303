"""Span records out over OTLP/HTTP with the official OpenTelemetry SDK and exporter.

Each :class:`~swarmlog.observability.spans.SpanRecord` becomes an SDK ``ReadableSpan`` carrying
its own derived ids (not ids the SDK would draw at random), and batches of them go to
``OTLPSpanExporter``: the exporter encodes the protobufs, retries what a receiver asks to be
retried, and honours the usual ``OTEL_EXPORTER_OTLP_*`` settings (headers, certificates,
compression). The resource is ``service.name=swarmlog`` (``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES`` override it) with ``swarmlog.namespace``.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from swarmlog.errors import ConfigError
from swarmlog.observability.spans import SpanRecord

__all__ = ["BATCH", "TRACES_PATH", "OTLPTraces", "endpoint_of", "readable_span"]

log = logging.getLogger(__name__)

TRACES_PATH = "/v1/traces"
"""Where an OTLP/HTTP receiver takes traces; added to a URL that names no path."""
BATCH = 512
"""Spans in one export request at most (the SDK batch processor's default)."""

_KINDS = {"internal": SpanKind.INTERNAL, "client": SpanKind.CLIENT}
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def endpoint_of(url: str) -> str:
    """The OTLP/HTTP traces endpoint ``url`` names: ``http(s)://host[:port][/path]``, with
    ``/v1/traces`` when it names no path (``http://localhost:4318`` is a collector's)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{url!r} is not an http(s) URL: give an OTLP/HTTP receiver's, e.g."
            " http://localhost:4318 (an OpenTelemetry Collector, Jaeger, Tempo)",
            parameter="endpoint",
        )
    path = parts.path if parts.path not in ("", "/") else TRACES_PATH
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def _scope() -> InstrumentationScope:
    try:
        own = version("swarmlog")
    except PackageNotFoundError:  # run from a source tree that was never installed
        own = None
    return InstrumentationScope("swarmlog.observability", own)


def _resource(namespace: str) -> Resource:
    """The swarm as the spans' source: the SDK's attributes and the ``OTEL_`` settings, with
    ``service.name`` ``swarmlog`` unless they name one, and never the random
    ``service.instance.id`` the SDK draws per process unless they set one: two exports of the
    same spans describe them alike."""
    chosen = OTELResourceDetector().detect().attributes
    attributes = dict(Resource.create({}).attributes)
    if "service.instance.id" not in chosen:
        attributes.pop("service.instance.id", None)
    if "service.name" not in chosen:
        attributes["service.name"] = "swarmlog"
    attributes["swarmlog.namespace"] = namespace
    return Resource(attributes)


def _context(trace_id: str, span_id: str) -> SpanContext:
    return SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=False, trace_flags=_SAMPLED)


def readable_span(
    record: SpanRecord, resource: Resource, scope: InstrumentationScope
) -> ReadableSpan:
    """``record`` as the SDK's finished span, with the record's ids, times and status."""
    parent = record.parent_span_id
    status = Status(StatusCode.UNSET)
    if record.error is not None:
        status = Status(StatusCode.ERROR, record.error)
    return ReadableSpan(
        name=record.name,
        context=_context(record.trace_id, record.span_id),
        parent=_context(record.trace_id, parent) if parent is not None else None,
        resource=resource,
        attributes=dict(record.attributes),
        events=[Event(e.name, dict(e.attributes), e.time_ns) for e in record.events],
        kind=_KINDS[record.kind],
        status=status,
        start_time=record.start_ns,
        end_time=record.end_ns,
        instrumentation_scope=scope,
    )


class _Watched(requests.Session):
    """The exporter's HTTP session, remembering why its last request failed: the exporter
    itself only says that it did."""

    def __init__(self) -> None:
        super().__init__()
        self.failure: str | None = None

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        try:
            response = super().request(method, url, *args, **kwargs)
        except requests.RequestException as exc:
            self.failure = _cause(exc)
            raise
        if not 200 <= response.status_code < 300:
            self.failure = f"it answered {response.status_code} {response.reason}".strip()
        return response


def _cause(exc: BaseException) -> str:
    """The innermost reason of a request's failure, in a few words (``connection refused``)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return (seen.strerror or errno.errorcode.get(seen.errno, str(seen.errno))).lower()
        seen = seen.__cause__ or seen.__context__ or _arg_error(seen)
    if isinstance(exc, requests.Timeout):
        return "it did not answer in time"
    return type(exc).__name__


def _arg_error(exc: BaseException) -> BaseException | None:
    # urllib3 keeps the socket's error in an argument of its own, not as a cause.
    reason = getattr(exc, "reason", None)
    if isinstance(reason, BaseException):
        return reason
    found = [a for a in exc.args if isinstance(a, BaseException)]
    return found[0] if found else None


class OTLPTraces:
    """An OTLP/HTTP receiver that span records are sent to (blocking calls: run them in a
    thread from async code)."""

    def __init__(
        self,
        url: str,
        namespace: str,
        *,
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.endpoint = endpoint_of(url)
        self._session = _Watched()
        self._exporter = OTLPSpanExporter(
            endpoint=self.endpoint, timeout=timeout, headers=headers, session=self._session
        )
        self._resource = _resource(namespace)
        self._scope = _scope()
        self._closed = False

    def export(self, records: Sequence[SpanRecord]) -> None:
        """Send ``records`` (in batches of :data:`BATCH`); :class:`ConfigError` when the
        receiver does not take them, saying why."""
        for start in range(0, len(records), BATCH):
            batch = [
                readable_span(r, self._resource, self._scope)
                for r in records[start : start + BATCH]
            ]
            self._session.failure = None
            if self._exporter.export(batch) is not SpanExportResult.SUCCESS:
                why = self._session.failure or "the exporter gave up"
                raise ConfigError(
                    f"could not export spans to {self.endpoint}: {why}; check that an OTLP/HTTP"
                    " receiver listens there (a collector takes them at :4318/v1/traces)",
                    parameter="endpoint",
                )

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if not self._closed:
            self._closed = True
            self._exporter.shutdown()  # type: ignore[no-untyped-call]  # untyped in the SDK
