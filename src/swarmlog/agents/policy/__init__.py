"""Pure policies and workflow decisions: functions of their inputs, with clock, randomness and
ids passed in, so the runtime, the roles and the simulation decide alike.

No I/O: nothing here (nor anything it imports) touches nats, duckdb, asyncio, clocks, randomness,
the file system or processes; ``tests/unit/test_layering.py`` holds it to that. Imports schemas
and the pure parts of bus and projections only; imported by anyone.
"""
