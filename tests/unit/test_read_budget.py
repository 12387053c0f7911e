"""A read from committed objects never answers with a batch of a later range because the
batch at the fetch offset does not fit the fetch's remaining budget.

A fetch reads its partitions in turn; past the first one that returned data (``min_one``
False, KIP-74) a partition gets only batches that fit what is left of ``max_bytes`` and of
its own ``partition_max_bytes``. When the batch holding the fetch offset does not fit, Kafka
answers nothing for that partition (the client fetches it again, first next time). The read
path through committed ranges (StreamStore.read: a leader's data evicted from its log cache,
and every read of a zone replica, kafka/replicas.py) took "nothing returned from this range"
for "nothing at or after the offset in this range" (a compacted topic's gap) and went on to
the next range: a smaller batch there (a transaction marker, a lone record) was answered, and
the client, which takes a batch above its position as a compacted gap, skipped the records of
the batch that did not fit.

Why not broker processes and a Kafka client: which partition of a fetch comes first (and so
gets a whole batch whatever its size) is librdkafka's round-robin choice, so a cluster shows
the skip only sometimes. The parts here are the real ones: the object WAL committing each
batch as a range of its own (SQLite metadata, objects in a local directory), the partition
log and the StreamStore read path, the log cache emptied as eviction leaves it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from broker_service.kafka.log_store import StreamStore
from broker_service.kafka.partition import PartitionLog
from broker_service.metadata.ports import MetadataPorts
from broker_service.metadata.records import PartitionRecord
from broker_service.metadata.sqlite import SqliteMetadataStore
from broker_service.protocol.record_batch import validate_batches
from broker_service.stream.objectstore.fs import FsObjectStore
from broker_service.stream.wal.object import ObjectWal
from tests.kafka_wire import build_batch

BIG = [b"x" * 1000 for _ in range(20)]  # one batch of ~20 KB
SMALL = [b"y"]  # one batch of less than 100 bytes


async def _produce(store: StreamStore, plog: PartitionLog, values: list[bytes]) -> None:
    raw = bytearray(build_batch(values))
    _, fut = store.append(plog, memoryview(raw), validate_batches(memoryview(raw)))
    await fut


def _bases(batches: list[memoryview | bytes]) -> list[int]:
    return [int.from_bytes(b[:8], "big") for b in batches]


def test_a_batch_that_does_not_fit_the_budget_is_not_skipped_for_a_later_range(
    tmp_path: Path,
) -> None:
    """Range [0, 20) holds one ~20 KB batch, range [20, 21) one small batch. A read at 0
    that is not the fetch's first (``min_one`` False) with 1,000 bytes left answers nothing
    (before: the batch at 20, records 0-19 skipped); the same read as the fetch's first
    answers the big batch whole."""

    async def run() -> None:
        md = SqliteMetadataStore(tmp_path / "m.sqlite")
        me = md.register_broker(1, "a", 1, None, 60_000)
        rec = md.create_topic("t", 1, {}, [1]).partitions[0]
        ports = MetadataPorts(md)
        wal = ObjectWal(FsObjectStore(tmp_path / "objects"), ports, flush_interval_ms=0)
        wal.bind(1, me.epoch)
        await wal.open()
        store = StreamStore(FsObjectStore(tmp_path / "objects"), ports, wal, 1, me.epoch)
        plog = store.add_partition(PartitionRecord("t", 0, rec.stream_id, 1, rec.leader_epoch,
                                                   0), [])  # fmt: skip
        try:
            await _produce(store, plog, BIG)
            await _produce(store, plog, SMALL)
            assert [(r.start_offset, r.end_offset) for r in plog.ranges] == [(0, 20), (20, 21)]
            plog.clear_cache()  # evicted: read from the committed objects

            later = _bases(await store.read(plog, 0, 1000, min_one=False))
            assert later == [], f"a fetch at offset 0 answered with batches {later}"
            assert _bases(await store.read(plog, 0, 1000, min_one=True)) == [0]
            assert _bases(await store.read(plog, 20, 1000, min_one=False)) == [20]
        finally:
            await wal.close()
            ports.close()
            md.close()

    asyncio.run(run())
