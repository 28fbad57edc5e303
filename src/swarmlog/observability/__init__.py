"""Observability derived from the log and the projections: OpenTelemetry traces (spans from the
events, exported over OTLP) and metrics.

Imports control, projections, bus, schemas and the top level; imported by the CLI and the
console.
"""
