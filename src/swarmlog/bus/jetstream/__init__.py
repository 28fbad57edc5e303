"""The log on a real NATS JetStream server (nats-py): the production adapter, one module a concern.

- :mod:`.connection`: connecting and logging in, a probe of the broker's permissions, and the
  JetStream calls that ride out a reload of the server's logins;
- :mod:`.provisioning`: the namespace's stream and buckets, exactly as the design fixes them;
- :mod:`.eventlog`: :class:`JetStreamLog`, the :class:`~swarmlog.bus.ports.EventLog` (append,
  read by sequence and subject) and the handles it hands out:
- :mod:`.reader` (ordered reads), :mod:`.workqueues` (durable consumers), :mod:`.doorbell`,
  :mod:`.kv` (flags and cache buckets) and :mod:`.snapshot_store` (the object store).

Callers import from here: ``from swarmlog.bus.jetstream import JetStreamLog, connect``.
"""

from __future__ import annotations

from swarmlog.bus.jetstream.connection import connect, refusals
from swarmlog.bus.jetstream.eventlog import JetStreamLog
from swarmlog.bus.jetstream.provisioning import DEFAULT_DUPLICATE_WINDOW, stream_config
from swarmlog.bus.jetstream.snapshot_store import JetStreamSnapshots

__all__ = [
    "DEFAULT_DUPLICATE_WINDOW",
    "JetStreamLog",
    "JetStreamSnapshots",
    "connect",
    "refusals",
    "stream_config",
]
