"""The object read path on a real local object store and SQLite: block reads, read-ahead,
one GET per block however many readers ask."""

from __future__ import annotations

import asyncio
from pathlib import Path

from broker_service.kafka.log_store import StreamStore
from broker_service.metadata.ports import MetadataPorts
from broker_service.metadata.records import PartitionRecord
from broker_service.metadata.sqlite import SqliteMetadataStore
from broker_service.protocol.record_batch import validate_batches
from broker_service.stream.objectstore.fs import FsObjectStore
from broker_service.stream.wal import FileWal
from tests.kafka_wire import build_batch


class CountingStore(FsObjectStore):
    """The real local-directory store, counting the ranged GETs it serves."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gets: list[tuple[str, int, int | None]] = []

    async def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        self.gets.append((key, start, end))
        return await super().get(key, start, end)


def test_catch_up_reads_use_read_ahead_and_one_get_per_block(tmp_path: Path) -> None:
    async def run() -> None:
        md = SqliteMetadataStore(tmp_path / "m.sqlite")
        me = md.register_broker(1, "h", 1, None, 1000)
        topic = md.create_topic("t", 1, {}, [1])
        objects = CountingStore(tmp_path / "objects")
        wal = FileWal(tmp_path / "wal")
        store = StreamStore(objects, MetadataPorts(md), wal, 1, me.epoch, block_bytes=64 * 1024,
                            read_ahead_blocks=2, log_cache_bytes=0)
        await wal.open()
        plog = store.add_partition(
            PartitionRecord("t", 0, topic.partitions[0].stream_id, 1, 0, 0), [])
        for i in range(40):  # 40 batches of ~16 KiB: ~10 blocks of 64 KiB
            raw = bytearray(build_batch([b"x" * 1000] * 16, base_timestamp=1000 + i))
            _, fut = store.append(plog, memoryview(raw), validate_batches(memoryview(raw)))
            await fut
        await store.upload()
        assert plog.cache == [], "log_cache_bytes=0: everything is read back from the object"
        objects.gets.clear()

        offset, seen = 0, []
        while offset < plog.high_watermark:
            batches = await store.read(plog, offset, 64 * 1024)
            assert batches
            for b in batches:
                base = int.from_bytes(b[:8], "big")
                seen.append(base)
                offset = base + 16
            # a consumer's round trip: the read-ahead started by this read lands meanwhile
            await asyncio.gather(*store._loading.values(), return_exceptions=True)
        assert seen == [i * 16 for i in range(40)]
        block_gets = [g for g in objects.gets if g[2] is not None and g[1] >= 0]
        positions = [g[1] for g in block_gets if g[2] - g[1] > 1000]  # skip the index read
        assert len(positions) == len(set(positions)), "no block is fetched twice"
        assert store.block_cache.hits > 0, "read-ahead blocks were served from the cache"
        await wal.close()
        md.close()

    asyncio.run(run())
