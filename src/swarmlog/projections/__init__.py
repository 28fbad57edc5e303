"""Projections, the read side: verify (pure) -> fold (pure) -> the DuckDB store, the projector
loop, the query service over NATS request/reply, the stream's hash chain and checkpoints.

Imports schemas and bus; imported by agents, control, harness and cli. Only the store, the query
runner and the service touch duckdb or nats.
"""
