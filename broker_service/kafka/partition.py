"""In-memory state of one partition led by this broker: offsets, log cache, object index."""

from __future__ import annotations

import asyncio
from bisect import bisect_right
from dataclasses import dataclass, field

from broker_service.kafka.producer_state import ProducerStateTable
from broker_service.metadata.records import StreamRange
from broker_service.protocol.control_batch import marker_type
from broker_service.protocol.record_batch import read_header


@dataclass(slots=True)
class CachedBatch:
    base_offset: int
    end_offset: int  # exclusive
    max_timestamp: int
    data: memoryview


@dataclass(eq=False)
class PartitionLog:
    topic: str
    partition: int
    stream_id: int
    leader_epoch: int
    log_start_offset: int
    next_offset: int = 0  # next offset to assign (log end offset)
    high_watermark: int = 0  # everything below is durable and visible
    committed_end: int = 0  # everything below is in committed objects
    cache: list[CachedBatch] = field(default_factory=list)
    cache_bases: list[int] = field(default_factory=list)
    cache_bytes: int = 0
    ranges: list[StreamRange] = field(default_factory=list)
    range_starts: list[int] = field(default_factory=list)
    waiters: set[asyncio.Future[None]] = field(default_factory=set)
    deleted: bool = False
    leader_id: int = -1  # the broker serving this partition (this one, or where to go)
    moving: bool = False  # a graceful hand-over is under way: accept nothing new
    # Idempotence / transactions: the state after every appended batch, and the state at
    # ``committed_end`` (what a snapshot may say: it only describes committed data).
    producers: ProducerStateTable = field(default_factory=ProducerStateTable)
    committed_producers: ProducerStateTable = field(default_factory=ProducerStateTable)
    has_producers: bool = False  # some batch carried a producer id: track committed state
    snapshot_offset: int = -1  # offset of the last snapshot saved or loaded (-1: none)

    def load_ranges(self, ranges: list[StreamRange]) -> None:
        self.ranges = list(ranges)
        self.range_starts = [r.start_offset for r in ranges]
        end = ranges[-1].end_offset if ranges else self.log_start_offset
        self.committed_end = self.next_offset = self.high_watermark = end

    def add_range(self, r: StreamRange) -> None:
        self.ranges.append(r)
        self.range_starts.append(r.start_offset)
        if self.has_producers:
            self._commit_producer_state(self.committed_end, r.end_offset)
        self.committed_end = r.end_offset

    def _commit_producer_state(self, start: int, end: int) -> None:
        """Apply the batches in [start, end) (still cached: they were just committed) to the
        committed producer state."""
        if not self.cache or end <= start:
            return
        for i in range(self.cache_index(start), len(self.cache)):
            b = self.cache[i]
            if b.base_offset >= end:
                break
            if b.base_offset < start:
                continue
            h = read_header(b.data)
            if h.producer_id >= 0:
                marker = marker_type(h, b.data) if h.is_control else None
                self.committed_producers.apply(h, b.base_offset, marker, h.max_timestamp)

    @property
    def last_stable_offset(self) -> int:
        first = self.producers.first_unstable_offset()
        hw = self.high_watermark
        return hw if first is None else min(first, hw)

    def cache_append(self, batch: CachedBatch) -> None:
        self.cache.append(batch)
        self.cache_bases.append(batch.base_offset)
        self.cache_bytes += len(batch.data)

    def cache_start(self) -> int:
        return self.cache_bases[0] if self.cache_bases else self.next_offset

    def cache_index(self, offset: int) -> int:
        """Index of the cached batch holding ``offset`` (offset >= cache_start())."""
        return max(bisect_right(self.cache_bases, offset) - 1, 0)

    def range_for(self, offset: int) -> StreamRange | None:
        i = bisect_right(self.range_starts, offset) - 1
        if i < 0:
            return self.ranges[0] if self.ranges else None
        r = self.ranges[i]
        return r if offset < r.end_offset else None

    def evict_uploaded(self, max_bytes: int) -> int:
        """Drop cached batches already in objects, oldest first, down to ``max_bytes``."""
        n = 0
        freed = 0
        while (
            n < len(self.cache)
            and self.cache_bytes - freed > max_bytes
            and self.cache[n].end_offset <= self.committed_end
        ):
            freed += len(self.cache[n].data)
            n += 1
        if n:
            del self.cache[:n]
            del self.cache_bases[:n]
            self.cache_bytes -= freed
        return freed

    def advance_high_watermark(self, end: int) -> None:
        if end > self.high_watermark:
            self.high_watermark = end
            self.wake()

    def wake(self) -> None:
        if self.waiters:
            for w in self.waiters:
                if not w.done():
                    w.set_result(None)
            self.waiters.clear()
