"""One partition led (or known) by this broker: offsets, log cache, object index, producer
state, and the completion of its appends.

The partition owns what happens to a batch once it has offsets, whatever the client does:
``append`` assigns offsets and records the batch; the WAL then reports it ``durable`` (the
high watermark moves, waiting answers resolve) or ``failed`` (the partition truncates back to
the last durable offset and everything after it is refused). Answers only observe this through
``wait_durable``: a client that goes away cancels its observer, never the completion.
"""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field

from broker_service.kafka.producer_state import ProducerStateTable
from broker_service.metadata.records import StreamRange
from broker_service.protocol.control_batch import marker_type
from broker_service.protocol.record_batch import BatchHeader, set_base_offset, set_leader_epoch

log = logging.getLogger(__name__)

# An observer of durability called synchronously: None once durable, NotDurable if not.
DurableCallback = Callable[[BaseException | None], None]
Waiter = asyncio.Future[None] | DurableCallback


class NotDurable(Exception):
    """The batch did not become durable: the partition truncated it (WAL failure, timeout, or
    leadership moved); the client retries. ``cause`` says why (a WalError, or None when
    leadership moved)."""

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause


@dataclass(slots=True)
class CachedBatch:
    base_offset: int
    end_offset: int  # exclusive
    max_timestamp: int
    data: memoryview
    # idempotent/transactional batches: what committing them applies to the committed
    # producer state (kept from the append, so nothing is parsed twice)
    header: BatchHeader | None = None
    marker: int | None = None


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
    waiters: set[asyncio.Future[None]] = field(default_factory=set)  # fetch long polls
    deleted: bool = False
    leader_id: int = -1  # the broker serving this partition (this one, or where to go)
    moving: bool = False  # a graceful hand-over is under way: accept nothing new
    # Idempotence / transactions: the state after every appended batch, and the state at
    # ``committed_end`` (what a snapshot may say: it only describes committed data).
    producers: ProducerStateTable = field(default_factory=ProducerStateTable)
    committed_producers: ProducerStateTable = field(default_factory=ProducerStateTable)
    has_producers: bool = False  # some batch carried a producer id: track committed state
    snapshot_offset: int = -1  # offset of the last snapshot saved or loaded (-1: none)
    # answers waiting for an offset to become durable: (end offset, future or callback)
    _durable_waiters: list[tuple[int, Waiter]] = field(default_factory=list)

    # -- the write path ------------------------------------------------------------------
    def append(self, view: memoryview, batches: list[tuple[int, BatchHeader]], now_ms: int) -> int:
        """Give the batches offsets (rewritten in place: ``view`` is ours to keep), put them
        in the log cache and the producer state. Returns the end offset; the caller hands
        them to the WAL, which reports ``durable`` or ``failed``."""
        offset = self.next_offset
        for pos, h in batches:
            set_base_offset(view, pos, offset)
            set_leader_epoch(view, pos, self.leader_epoch)
            end = offset + h.last_offset_delta + 1
            batch = view[pos : pos + h.size]
            cached = CachedBatch(offset, end, h.max_timestamp, batch)
            if h.producer_id >= 0:
                cached.header = h
                cached.marker = marker_type(h, batch) if h.is_control else None
                self.has_producers = True
                self.producers.apply(h, offset, cached.marker, now_ms)
            self.cache_append(cached)
            offset = end
        self.next_offset = offset
        return offset

    def durable(self, end: int, committed: StreamRange | None) -> None:
        """The WAL made everything below ``end`` durable (and, object WAL, committed it)."""
        if committed is not None and committed.end_offset > self.committed_end:
            self.add_range(committed)
        if end > self.high_watermark:
            self.high_watermark = end
            self.wake()
            self._resolve_durable()

    def failed(self, base: int, exc: BaseException) -> None:
        """Batches from ``base`` did not become durable: truncate to there (offsets after it
        were never acknowledged) and refuse every answer waiting beyond it."""
        if base < self.next_offset:
            self.truncate_to(max(base, self.high_watermark))
        self._fail_waiters_after(self.next_offset, exc)

    def truncate_to(self, offset: int) -> None:
        """Forget appended, not yet durable batches from ``offset`` on; the producer state is
        rebuilt from the committed state and the durable batches after it."""
        assert offset >= self.high_watermark, "durable data is never truncated"
        keep = bisect_right(self.cache_bases, offset - 1) if offset > 0 else 0
        while keep > 0 and self.cache[keep - 1].end_offset > offset:
            keep -= 1  # a batch straddling the cut goes too (offsets are batch boundaries)
        for b in self.cache[keep:]:
            self.cache_bytes -= len(b.data)
        del self.cache[keep:]
        del self.cache_bases[keep:]
        self.next_offset = offset
        if self.has_producers:
            table = ProducerStateTable.decode(self.committed_producers.encode())
            for b in self.cache:
                if b.base_offset >= self.committed_end and b.header is not None:
                    table.apply(b.header, b.base_offset, b.marker)
            self.producers = table

    def wait_durable(self, end: int) -> asyncio.Future[None]:
        """A future resolved once everything below ``end`` is durable, failed with NotDurable
        if it is truncated first. Cancelling it (the client left) changes nothing else."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if end <= self.high_watermark:
            fut.set_result(None)
        elif end > self.next_offset:
            fut.set_exception(NotDurable(f"offset {end} was never appended"))
        else:
            self._durable_waiters.append((end, fut))
        return fut

    def when_durable(self, end: int, callback: DurableCallback) -> None:
        """``wait_durable`` as a callback: ``callback(None)`` once everything below ``end`` is
        durable, ``callback(NotDurable)`` if it is truncated first; at once when already
        decided. It runs inside the WAL's completion, with no event-loop turn in between (a
        produce answer leaves a turn sooner, issue 21); it must only observe."""
        if end <= self.high_watermark:
            callback(None)
        elif end > self.next_offset:
            callback(NotDurable(f"offset {end} was never appended"))
        else:
            self._durable_waiters.append((end, callback))

    def in_flight(self) -> bool:
        return self.next_offset > self.high_watermark

    def _resolve_durable(self) -> None:
        hw = self.high_watermark
        keep = []
        for end, waiter in self._durable_waiters:
            if end <= hw:
                _notify(waiter, None)
            else:
                keep.append((end, waiter))
        self._durable_waiters = keep

    def _fail_waiters_after(self, offset: int, exc: BaseException) -> None:
        keep = []
        for end, waiter in self._durable_waiters:
            if end > offset:
                cause = exc.cause if isinstance(exc, NotDurable) else exc
                _notify(waiter, NotDurable(str(exc), cause))
            else:
                keep.append((end, waiter))
        self._durable_waiters = keep

    def abandon(self, why: str) -> None:
        """Leadership left (or the partition was deleted): nothing in flight will be
        answered here; waiting answers are refused so their clients retry elsewhere."""
        self._fail_waiters_after(-1, NotDurable(why))
        self.wake()

    # -- the object index --------------------------------------------------------------------
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
        self.wake()  # brokers serving committed data of this partition wait for this too

    def _commit_producer_state(self, start: int, end: int) -> None:
        """Apply the batches in [start, end) (still cached: they were just committed) to the
        committed producer state."""
        if not self.cache or end <= start:
            return
        for i in range(self.cache_index(start), len(self.cache)):
            b = self.cache[i]
            if b.base_offset >= end:
                break
            if b.base_offset >= start and b.header is not None:
                self.committed_producers.apply(b.header, b.base_offset, b.marker)

    def range_for(self, offset: int) -> StreamRange | None:
        i = bisect_right(self.range_starts, offset) - 1
        if i < 0:
            return self.ranges[0] if self.ranges else None
        r = self.ranges[i]
        return r if offset < r.end_offset else None

    # -- the log cache ---------------------------------------------------------------------
    @property
    def last_stable_offset(self) -> int:
        first = self.producers.first_unstable_offset()
        hw = self.high_watermark
        return hw if first is None else min(first, hw)

    def cache_append(self, batch: CachedBatch) -> None:
        self.cache.append(batch)
        self.cache_bases.append(batch.base_offset)
        self.cache_bytes += len(batch.data)

    def clear_cache(self) -> None:
        self.cache.clear()
        self.cache_bases.clear()
        self.cache_bytes = 0

    def cache_start(self) -> int:
        return self.cache_bases[0] if self.cache_bases else self.next_offset

    def cache_index(self, offset: int) -> int:
        """Index of the cached batch holding ``offset`` (offset >= cache_start())."""
        return max(bisect_right(self.cache_bases, offset) - 1, 0)

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

    def wake(self) -> None:
        if self.waiters:
            for w in self.waiters:
                if not w.done():
                    w.set_result(None)
            self.waiters.clear()


def _notify(waiter: Waiter, exc: NotDurable | None) -> None:
    if isinstance(waiter, asyncio.Future):
        if not waiter.done():
            if exc is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(exc)
        return
    try:
        waiter(exc)
    except Exception:  # an observer's bug must not stop the partition's completion
        log.exception("a durability observer failed")
