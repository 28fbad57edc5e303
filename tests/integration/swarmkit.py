"""Helpers shared by the integration tests (imported as ``swarmkit``)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from swarmlog.agents.publisher import Publisher
from swarmlog.bus.jetstream import JetStreamLog
from swarmlog.config import Settings
from swarmlog.schemas.signing import Identity


def seed(name: str) -> bytes:
    """A deterministic 32-byte seed per name (tests never need secret keys)."""
    return hashlib.sha256(name.encode()).digest()


@dataclass
class Swarm:
    settings: Settings
    log: JetStreamLog
    operator: Identity
    alice: Identity
    bob: Identity

    @property
    def namespace(self) -> str:
        return self.settings.namespace

    def publisher(self, identity: Identity) -> Publisher:
        return Publisher(self.log, identity, self.namespace)
