"""A small swarm on a real nats-server: data dir with an operator key, a provisioned stream, and
two credentialed agents."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from swarmkit import Swarm, seed

from swarmlog.agents.publisher import Publisher
from swarmlog.bus.jetstream import JetStreamLog
from swarmlog.config import Settings
from swarmlog.control.keystore import KeyStore
from swarmlog.schemas.credentials import Credential
from swarmlog.schemas.signing import Identity, issue_credential


@pytest.fixture
async def swarm(nats_server: str, tmp_path: Path) -> AsyncIterator[Swarm]:
    namespace = f"t{uuid.uuid4().hex[:10]}"
    settings = Settings(data_dir=tmp_path / "data", nats_url=nats_server, namespace=namespace)
    keys = KeyStore(settings.keys_dir)
    operator = keys.init_operator(seed(namespace))
    log = await JetStreamLog.open(nats_server, namespace, provision=True)
    ops = Publisher(log, operator, namespace)
    agents = []
    for name, caps in (("alice", ["write"]), ("bob", ["review"])):
        identity = Identity.from_seed(name, seed(namespace + name))
        credential = Credential(
            agent_id=name,
            role="worker",
            public_key=identity.public_key,
            issuer=operator.public_key,
            issued_at=1,
            capabilities=caps,
        )
        await ops.publish(issue_credential(operator, credential))
        agents.append(identity)
    try:
        yield Swarm(settings, log, operator, agents[0], agents[1])
    finally:
        await log.close()
