"""The public API is pinned, and the pure core never imports I/O libraries."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import swarmlog

EXPECTED = {
    # What an agent author imports: the agent API and the payloads its handlers take or emit.
    "Agent",
    "ClarificationRequest",
    "Context",
    "Json",
    "Payload",
    "RetryPolicy",
    "TaskAssignment",
    "TaskError",
    "TaskOffered",
    "TokenUsage",
    "on",
    # What an operator embedding swarmlog needs: settings, bring-up, reading the projections.
    "ProjectionClient",
    "Settings",
    "SystemUp",
    "bring_up",
    "open_projections",
    # The error tree, whole.
    "BusError",
    "BusyError",
    "ConcurrencyConflict",
    "ConfigError",
    "KeyStoreError",
    "ModelError",
    "PlanError",
    "ProjectorDown",
    "QueryError",
    "QueryTimeout",
    "SchemaError",
    "ServerError",
    "StoreBusy",
    "StoreError",
    "SwarmlogError",
    "VerificationError",
}
INTERNALS = {"EmbeddedServer", "ChainHead", "seal", "JetStreamLog", "MemoryLog", "Projector"}

SRC = Path(swarmlog.__file__).parent

# Domain logic: no nats, no duckdb, no clocks, randomness or uuids of its own.
PURE_MODULES = [
    "schemas/types.py",
    "schemas/ids.py",
    "schemas/payloads.py",
    "schemas/envelope.py",
    "schemas/credentials.py",
    "schemas/codec.py",
    "schemas/signing.py",
    "bus/subjects.py",
    "bus/ports.py",
    "bus/queues.py",
    "bus/permissions.py",
    "projections/tables.py",
    "projections/state.py",
    "projections/verify.py",
    "projections/fold.py",
    "projections/statehash.py",
    "agents/policy/retry.py",
    "agents/policy/routing.py",
    "agents/policy/killflags.py",
    "agents/policy/planning.py",
    "agents/policy/outputs.py",
    "agents/api.py",
    "agents/policy/workflows.py",
    "agents/policy/supervision.py",
    "agents/policy/deadlocks.py",
    "agents/policy/breakers.py",
    "agents/policy/stalls.py",
    "agents/policy/budgets.py",
    "agents/policy/screening.py",
    "agents/policy/settle.py",
    "projections/streamchain.py",
    "control/cluster.py",
    "agents/policy/resultcache.py",
    "rendering/svg.py",
]
FORBIDDEN = {"nats", "duckdb", "time", "random", "uuid", "os", "subprocess", "socket", "asyncio"}
# `math` is allowed: pure functions of their inputs.


def test_all_matches_the_pinned_api() -> None:
    assert set(swarmlog.__all__) == EXPECTED
    for name in swarmlog.__all__:
        assert hasattr(swarmlog, name), name
    assert not INTERNALS & set(dir(swarmlog)), "internals are imported from their packages"


def test_every_error_is_in_the_tree_and_exported() -> None:
    import swarmlog.errors as errors

    for name in errors.__all__:
        error = getattr(errors, name)
        assert issubclass(error, errors.SwarmlogError), name
        assert name in swarmlog.__all__, name
        drawn = re.search(rf"(── |^    ){name}\b", errors.__doc__ or "", re.MULTILINE)
        assert drawn, f"{name} is not drawn in the error tree"


def test_a_task_error_keeps_its_own_code_and_words() -> None:
    error = swarmlog.TaskError("empty_input", "nothing to summarise", retryable=False)
    assert isinstance(error, swarmlog.SwarmlogError)
    assert (error.code, error.message, error.retryable) == (
        "empty_input",
        "nothing to summarise",
        False,
    )
    assert str(error) == "nothing to summarise"
    assert str(swarmlog.TaskError("timeout")) == "timeout"


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_pure_modules_do_no_io() -> None:
    for rel in PURE_MODULES:
        bad = _imported_roots(SRC / rel) & FORBIDDEN
        assert not bad, f"{rel} imports {sorted(bad)}"


def test_pure_modules_import_only_pure_swarmlog_modules() -> None:
    pure = {"swarmlog." + m.removesuffix(".py").replace("/", ".") for m in PURE_MODULES}
    allowed = pure | {"swarmlog.errors"}
    for rel in PURE_MODULES:
        tree = ast.parse((SRC / rel).read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("swarmlog")
            ):
                assert node.module in allowed, f"{rel} imports {node.module}"
