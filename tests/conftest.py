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
