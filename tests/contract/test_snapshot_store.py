"""The SnapshotStore contract, run against both adapters: in-memory and a JetStream object store
on a real server. Every JetStream test gets its own namespace (so its own bucket)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from uuid import uuid4

import pytest

from swarmlog.bus.jetstream import JetStreamLog
from swarmlog.bus.memory import MemoryLog
from swarmlog.bus.ports import SnapshotStore
from swarmlog.bus.subjects import object_bucket, stream_name
from swarmlog.errors import BusError


@pytest.fixture(
    params=["memory", pytest.param("jetstream", marks=pytest.mark.integration)],
)
async def snapshots(request: pytest.FixtureRequest) -> AsyncIterator[SnapshotStore]:
    ns = f"t{uuid4().hex[:10]}"
    if request.param == "memory":
        memory = MemoryLog(stream_name(ns))
        yield await memory.snapshot_store()
        await memory.close()
        return
    url: str = request.getfixturevalue("nats_server")
    js = await JetStreamLog.open(url, ns, provision=True)
    try:
        yield await js.snapshot_store()
    finally:
        jetstream = js.client.jetstream()  # keep the shared server light
        await jetstream.delete_object_store(object_bucket(ns))
        await jetstream.delete_stream(js.stream)
        await js.close()


def file_of(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


async def test_a_snapshot_comes_back_as_it_was_put(
    snapshots: SnapshotStore, tmp_path: Path
) -> None:
    data = bytes(range(256)) * 1000  # more than one chunk of an object store
    meta = {"seq": 7, "state_hash": "ab" * 32, "layout": 3, "namespace": "default"}
    size = await snapshots.put("projection-7", file_of(tmp_path / "in", data), meta)
    assert size == len(data)
    out = tmp_path / "out"
    assert await snapshots.get("projection-7", out) == meta
    assert out.read_bytes() == data


async def test_the_catalog_lists_each_with_its_size_and_record_by_seq(
    snapshots: SnapshotStore, tmp_path: Path
) -> None:
    assert await snapshots.catalog() == []
    for seq in (30, 4, 100):
        source = file_of(tmp_path / f"s{seq}", b"x" * seq)
        await snapshots.put(f"projection-{seq}", source, {"seq": seq})
    assert await snapshots.catalog() == [
        {"name": f"projection-{seq}", "size": seq, "seq": seq} for seq in (4, 30, 100)
    ]


async def test_putting_a_name_again_replaces_it(snapshots: SnapshotStore, tmp_path: Path) -> None:
    await snapshots.put("projection-1", file_of(tmp_path / "a", b"first"), {"seq": 1})
    await snapshots.put("projection-1", file_of(tmp_path / "b", b"second!"), {"seq": 1, "n": 2})
    assert await snapshots.get("projection-1", tmp_path / "out") == {"seq": 1, "n": 2}
    assert (tmp_path / "out").read_bytes() == b"second!"
    assert [s["size"] for s in await snapshots.catalog()] == [7]


async def test_a_missing_snapshot_is_a_bus_error_naming_it(
    snapshots: SnapshotStore, tmp_path: Path
) -> None:
    with pytest.raises(BusError, match="no snapshot 'projection-9'"):
        await snapshots.get("projection-9", tmp_path / "out")
