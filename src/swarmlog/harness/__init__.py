"""Tools that exercise the system: the deterministic simulation, the benchmarks and the demo.

Only the CLI (``swarmlog sim|bench|demo``) and the tests import this package; nothing in the
product depends on it.
"""
