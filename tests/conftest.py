"""Fixtures shared by every test directory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from swarmlog.bus.server import EmbeddedServer


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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep the tests that share a module-scoped fixture on one xdist worker (``--dist
    loadgroup``): the fixture (a running system) is built once, and tests that read what the
    module's earlier tests left behind see it. Every other test goes to whichever worker is free.
    """
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        shared = any(d.scope == "module" for defs in info.name2fixturedefs.values() for d in defs)
        if shared:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__ if item.module else ""))
