"""swarmlog: multi-agent systems on a signed, append-only NATS JetStream log, projected into DuckDB.

The public API, pinned by ``tests/unit/test_public_api.py``::

    from swarmlog import Settings, Publisher, Projector, ProjectionStore, JetStreamLog, MemoryLog
"""

from swarmlog.bus.jetstream import JetStreamLog
from swarmlog.bus.memory import MemoryLog
from swarmlog.bus.ports import Append, AppendResult, Delivery, EventLog, StoredMessage, WorkQueue
from swarmlog.bus.server import EmbeddedServer
from swarmlog.config import Settings
from swarmlog.errors import (
    BusError,
    ConcurrencyConflict,
    ConfigError,
    KeyStoreError,
    QueryError,
    SchemaError,
    ServerError,
    StoreError,
    SwarmlogError,
    VerificationError,
)
from swarmlog.keystore import KeyStore
from swarmlog.projections.projector import Projector
from swarmlog.projections.store import ProjectionStore
from swarmlog.publisher import Published, Publisher
from swarmlog.schemas.credentials import Credential
from swarmlog.schemas.envelope import Envelope, SignedEvent
from swarmlog.schemas.payloads import PAYLOAD_TYPES, Payload
from swarmlog.schemas.signing import ChainHead, Identity, issue_credential, seal

__all__ = [
    "PAYLOAD_TYPES",
    "Append",
    "AppendResult",
    "BusError",
    "ChainHead",
    "ConcurrencyConflict",
    "ConfigError",
    "Credential",
    "Delivery",
    "EmbeddedServer",
    "Envelope",
    "EventLog",
    "Identity",
    "JetStreamLog",
    "KeyStore",
    "KeyStoreError",
    "MemoryLog",
    "Payload",
    "ProjectionStore",
    "Projector",
    "Published",
    "Publisher",
    "QueryError",
    "SchemaError",
    "ServerError",
    "Settings",
    "SignedEvent",
    "StoreError",
    "StoredMessage",
    "SwarmlogError",
    "VerificationError",
    "WorkQueue",
    "issue_credential",
    "seal",
]
