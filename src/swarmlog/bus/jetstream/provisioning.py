"""The namespace's stream and buckets, exactly as the design fixes them: one stream per namespace,
``SWARMLOG_<NS>`` over ``swarmlog.<ns>.>``, file storage, deny delete, deny purge, no rollups, a
dedupe window; the kill-switch flags, result-cache and presence KV buckets; the snapshot object
store.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    ObjectStoreConfig,
    RePublish,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from swarmlog.bus.subjects import (
    bell_prefix,
    kv_bucket,
    object_bucket,
    stream_name,
    stream_subjects,
)
from swarmlog.errors import BusError
from swarmlog.schemas.presence import PRESENCE_TTL

__all__ = ["DEFAULT_DUPLICATE_WINDOW", "check_stream", "provision", "stream_config"]


DEFAULT_DUPLICATE_WINDOW = 120.0
"""Seconds within which a repeated ``Nats-Msg-Id`` is acknowledged but not stored again."""


def stream_config(
    namespace: str, *, replicas: int = 1, duplicate_window: float = DEFAULT_DUPLICATE_WINDOW
) -> StreamConfig:
    """The append-only stream of a namespace, exactly as the design fixes it."""
    return StreamConfig(
        name=stream_name(namespace),
        description=f"swarmlog event log of namespace {namespace}",
        subjects=stream_subjects(namespace),
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        storage=StorageType.FILE,
        num_replicas=replicas,
        duplicate_window=duplicate_window,
        deny_delete=True,
        deny_purge=True,
        allow_rollup_hdrs=False,
        # Larger than what readers accept, so an oversized event is stored and then quarantined
        # (visible in the audit) rather than silently refused at the door.
        max_msg_size=1_048_576,
        # Messages by sequence in batches, without a consumer: how an auditor's login, which
        # may create none, reads the stream (and how agents read single messages).
        allow_direct=True,
        # Every event's headers again once stored, on the doorbells' subjects (see bell_prefix).
        republish=_republish(namespace),
    )


def _republish(namespace: str) -> RePublish:
    return RePublish(
        src=stream_subjects(namespace)[0],
        dest=f"{bell_prefix(namespace)}.>",
        headers_only=True,
    )


async def provision(
    js: Any, namespace: str, *, replicas: int = 1, presence_ttl: float = PRESENCE_TTL
) -> None:
    """Create the stream and buckets of ``namespace`` if missing, through the JetStream context
    ``js``; an existing stream must be append-only. ``presence_ttl``: seconds a presence value
    outlives its last put (a new bucket's only; tests shorten it)."""
    await _provision_stream(js, namespace, replicas)
    # What is not an event stream: kill-switch flags, the result cache, presence, snapshots.
    # Cached results expire on their own (a day), presence soon after its replica stops
    # putting it; flags stay until deleted.
    ttls = {"flags": None, "cache": 86_400.0, "presence": presence_ttl}
    for purpose, ttl in ttls.items():
        bucket = kv_bucket(namespace, purpose)
        try:
            await js.key_value(bucket)
        except nats.js.errors.BucketNotFoundError:
            await js.create_key_value(
                KeyValueConfig(bucket=bucket, history=1, replicas=replicas, ttl=ttl)
            )
    snapshots = object_bucket(namespace)
    try:
        await js.object_store(snapshots)
    except nats.js.errors.BucketNotFoundError:
        await js.create_object_store(
            snapshots, ObjectStoreConfig(bucket=snapshots, replicas=replicas)
        )


async def _provision_stream(js: Any, namespace: str, replicas: int) -> None:
    config = stream_config(namespace, replicas=replicas)
    stream = config.name
    try:
        info = await js.stream_info(stream)
    except nats.js.errors.NotFoundError:
        await js.add_stream(config)
        return
    current = info.config
    if list(current.subjects or []) != config.subjects:
        raise BusError(
            f"stream {stream} exists for subjects {current.subjects}, not"
            f" {config.subjects}; use another --namespace"
        )
    unlimited = all(
        value in (None, 0, -1) for value in (current.max_age, current.max_msgs, current.max_bytes)
    )
    if not unlimited or current.storage != StorageType.FILE:
        raise BusError(
            f"stream {stream} exists with limits or memory storage that would drop"
            " history; it was not created by swarmlog: use another --namespace"
        )
    if not (current.deny_delete and current.deny_purge) or current.allow_rollup_hdrs:
        raise BusError(
            f"stream {stream} exists but is not append-only (deny delete/purge,"
            " no rollups); it was not created by swarmlog: use another --namespace"
        )
    if not current.allow_direct or current.republish != config.republish:
        # Made by an earlier version: let auditors read it, and ring the doorbells.
        await js.update_stream(
            dataclasses.replace(current, allow_direct=True, republish=config.republish)
        )


async def check_stream(js: Any, namespace: str) -> None:
    """Raise :class:`BusError` unless the stream of ``namespace`` exists."""
    stream = stream_name(namespace)
    try:
        await js.stream_info(stream)
    except nats.js.errors.NotFoundError:
        raise BusError(
            f"stream {stream} does not exist; run `swarmlog up` to provision it"
        ) from None
