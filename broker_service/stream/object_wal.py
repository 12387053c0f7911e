"""ObjectWal: the write-ahead log for brokers without a durable disk (Fargate).

A flush packs every pending batch of every partition into one StreamSetObject, PUTs it, and
commits it to the metadata store (conditionally on this broker's epoch) before any producer in
it is acknowledged. The WAL object is therefore already an ordinary committed object: readable
at once by any broker, nothing to replay after a crash, and merged later by compaction.

Flushes run one at a time, so each stream's committed ranges stay contiguous and ordered;
batches that arrive during a flush form the next one (group commit). ``flush_interval_ms``
adds a linger before a flush to make objects larger (fewer PUTs) at the cost of latency;
``flush_bytes`` cuts the linger short.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict

from broker_service.metadata.errors import BrokerFenced, ObjectAlreadyCommitted
from broker_service.metadata.records import StreamRange
from broker_service.metadata.store import MetadataStore
from broker_service.stream.object_format import StreamSetObjectBuilder
from broker_service.stream.objectstore.base import ObjectExists, ObjectStore
from broker_service.stream.wal import Pending, Wal, WalEntry

log = logging.getLogger(__name__)


class ObjectWal(Wal):
    needs_upload = False

    def __init__(
        self,
        objects: ObjectStore,
        metadata: MetadataStore,
        *,
        flush_interval_ms: float = 50.0,
        flush_bytes: int = 4 << 20,
        block_bytes: int = 1 << 20,
    ) -> None:
        super().__init__(flush_interval_ms, flush_bytes)
        # keep objects below the S3 multipart threshold: one PUT per flush
        self.max_group_bytes = max(2 * flush_bytes, block_bytes)
        self.objects = objects
        self.metadata = metadata
        self.block_bytes = block_bytes
        self.broker_id = -1
        self.broker_epoch = -1
        self._seq = 0
        self.last_flush_ms = 0.0

    def bind(self, broker_id: int, broker_epoch: int) -> None:
        self.broker_id = broker_id
        self.broker_epoch = broker_epoch

    async def open(self) -> list[WalEntry]:
        self._start()
        return []  # every acknowledged batch is already a committed object

    async def _commit(self, batch: list[Pending]) -> dict[int, StreamRange]:
        """Flush, retrying the same object (same key) until it is committed. Offsets are
        already assigned, so later batches must wait behind this one; only fencing ends it."""
        self._seq += 1
        key = f"wal/{self.broker_id}-{self.broker_epoch}-{time.time_ns()}-{self._seq}.sso"
        delay = 0.05
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._flush(key, batch, retry=attempt > 1)
            except BrokerFenced:
                raise
            except Exception as exc:
                log.warning(
                    "object WAL flush of %s failed (attempt %d): %s; retrying", key, attempt, exc
                )
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 5.0)

    async def _flush(self, key: str, batch: list[Pending], retry: bool) -> dict[int, StreamRange]:
        started = time.monotonic()
        by_stream: OrderedDict[int, list[tuple[int, int, int, bytes | memoryview]]] = OrderedDict()
        for stream_id, base, end, data in batch:
            by_stream.setdefault(stream_id, []).append((base, end, _max_ts(data), data))
        builder = StreamSetObjectBuilder(self.block_bytes)
        for stream_id, items in by_stream.items():
            builder.add_stream(stream_id, items)
        parts = builder.build()
        size = sum(len(p) for p in parts)
        try:
            await self.objects.put(key, parts)
        except ObjectExists:
            if not retry:
                raise
            # our own earlier attempt landed; the key is unique to this broker epoch
        ranges = [
            StreamRange(
                s.stream_id, s.start_offset, s.end_offset, key, s.position, s.size, s.max_timestamp
            )
            for s in builder.spans
        ]
        try:
            await asyncio.to_thread(
                self.metadata.commit_object, self.broker_id, self.broker_epoch, key, size, ranges
            )
        except ObjectAlreadyCommitted:
            if not retry:
                raise
        self.last_flush_ms = (time.monotonic() - started) * 1000
        return {r.stream_id: r for r in ranges}

    def trim(self, committed_ends: dict[int, int]) -> None:
        pass  # nothing local to trim


def _max_ts(data: bytes | memoryview) -> int:
    from broker_service.protocol.record_batch import iter_headers

    return max((h.max_timestamp for _, h in iter_headers(data)), default=-1)
