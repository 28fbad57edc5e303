"""Fixtures shared by every test directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmlog.bus.server import EmbeddedServer

LONGEST_FIRST = (
    "e2e/test_worker_crash.py",
    "property/test_fold.py",
    "property/test_sim.py",
    "e2e/test_cli.py",
    "integration/test_crash.py",
    "adversarial/test_services.py",
    "e2e/test_circuit_failover.py",
    "e2e/test_console.py",
    "e2e/test_ai_calls.py",
    "property/test_hostile.py",
    "property/test_codec.py",
    "e2e/test_supervisor.py",
    "contract/test_event_log.py",
    "e2e/test_client.py",
    "e2e/test_server_restart.py",
    "e2e/test_keeper.py",
    "e2e/test_broker_permissions.py",
    "adversarial/test_budget_wipe.py",
    "e2e/test_agent_daemons.py",
    "e2e/test_presence.py",
)
"""The modules that take longest (seconds summed over their tests in `make test`, measured
2026-12-08: 64 down to 23), longest first. `make test` hands whole modules to its workers in
collection order (``--dist loadscope --no-loadscope-reorder``); started first, the long ones
run beside each other and the many short modules fill the end of the run, instead of a module
of one long test starting last and running alone (the twenty kills did: 45 s at the end on one
worker while the other three had finished). A module not named here runs after these, in the
order pytest finds it; naming a new long module here is all its scheduling needs."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Put the modules of :data:`LONGEST_FIRST` first, in its order (a stable sort: each
    module's tests stay together and in their order)."""
    here = Path(__file__).parent
    gone = [name for name in LONGEST_FIRST if not (here / name).is_file()]
    if gone:
        raise pytest.UsageError(f"tests/conftest.py LONGEST_FIRST names no module at {gone}")
    rank = {here / name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path, len(rank)))


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of one real nats-server (JetStream on, a free port) shared by the session.

    Tests sharing it keep apart by using their own namespace (stream) or subjects.
    """
    server = EmbeddedServer(tmp_path_factory.mktemp("nats-server"), port=0)
    url = server.start()
    try:
        yield url
    finally:
        server.stop()
