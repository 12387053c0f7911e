"""Compaction lists a tenth of its own objects per run (control/compaction.py,
``LISTING_SHARDS``), every other prefix in full, on the embedded stores (a directory and
SQLite): at 1 GiB/s with 72 h retention its own objects are 4 million keys, minutes of LIST
requests a run. Orphans of every shard still go, within ten runs; objects a run empties it
retires at once whatever their shard."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from broker_service.config.compaction import CompactionConfig
from broker_service.control.compaction import LISTING_SHARDS, compact
from broker_service.metadata.records import MAX_COMPACTOR_SHARDS
from broker_service.metadata.sqlite import SqliteMetadataStore
from broker_service.stream.objectstore.fs import FsObjectStore


class RecordingLists(FsObjectStore):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.prefixes: list[str] = []

    async def list(self, prefix: str = "") -> list[str]:
        self.prefixes.append(prefix)
        return await super().list(prefix)


def test_each_run_lists_one_shard_of_compactions_objects_and_every_other_prefix(
    tmp_path: Path,
) -> None:
    objects = RecordingLists(tmp_path / "objects")
    metadata = SqliteMetadataStore(tmp_path / "metadata.sqlite")
    old = time.time_ns() - 2 * 3600 * 10**9  # orphans: written two hours ago, never committed
    own = [f"so/{sid}/1-{sid}-{old}-1.sso" for sid in (1, 7, 12, 30, 99, 100, 205, 3000)]
    shared = [f"wal/9-1-{old}-1.sso", f"sso/9-1-{old}-2.sso"]

    async def fill() -> None:
        for k in own + shared:
            await objects.put(k, [b"never committed"])

    asyncio.run(fill())
    config = CompactionConfig(orphan_grace_ms=0)
    left = set(own)
    try:
        for run in range(LISTING_SHARDS):
            objects.prefixes.clear()
            result = asyncio.run(compact(metadata, objects, config))
            # a lease epoch steps by MAX_COMPACTOR_SHARDS (it names its compactor shard)
            turn = result.lease_epoch // MAX_COMPACTOR_SHARDS
            shard = f"so/{turn % LISTING_SHARDS}"
            assert sorted(objects.prefixes) == [shard, "sso/", "wal/"]  # never the whole bucket
            keys = set(asyncio.run(objects.list()))
            gone = {k for k in left if k not in keys}
            assert gone == {k for k in left if k.startswith(shard)}, (run, shard, gone)
            left -= gone
            assert not any(k in keys for k in shared)  # the shared prefixes: every run
            assert result.orphans_deleted == len(gone) + (2 if run == 0 else 0)
        assert not left  # every shard came round once
    finally:
        metadata.close()


def test_a_run_paused_past_its_lease_deletes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host pauses (a stopped microVM) while a run lists the bucket: on resume its wall
    clock has moved past the compactor lease, its monotonic clock has not. The lease in the
    store (wall clock) ran out and another run may hold it, so this one must not delete:
    before, it timed its lease by the monotonic clock alone and went on to garbage-collect."""
    paused = {"s": 0.0}
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + paused["s"])
    config = CompactionConfig(orphan_grace_ms=0)

    class PausingLists(RecordingLists):
        async def list(self, prefix: str = "") -> list[str]:
            paused["s"] = config.lease_ms / 1000 + 1  # only the wall clock moves
            return await super().list(prefix)

    objects = PausingLists(tmp_path / "objects")
    metadata = SqliteMetadataStore(tmp_path / "metadata.sqlite")
    old = time.time_ns() - 2 * 3600 * 10**9
    orphans = [f"wal/9-1-{old}-1.sso", f"sso/9-1-{old}-2.sso"]

    async def fill() -> None:
        for k in orphans:
            await objects.put(k, [b"never committed"])

    try:
        asyncio.run(fill())
        result = asyncio.run(compact(metadata, objects, config))
        assert result.orphans_deleted == 0
        assert sorted(asyncio.run(objects.list())) == sorted(orphans)
    finally:
        metadata.close()
