"""StreamStore: the write and read paths over WAL + log cache + object store + metadata.

Write: batches get offsets, enter the log cache, and are queued on the WAL; the high
watermark moves (and producers are answered) only when the WAL says they are durable.
Upload: durable data not yet in objects is packed into one StreamSetObject, PUT, then
committed to metadata conditionally on this broker's epoch; then the WAL is trimmed.
Read: recent offsets from the log cache, older ones from objects through the block cache.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import math
import time
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable

from kio.schema.errors import ErrorCode

from broker_service.kafka.partition import CachedBatch, DurableCallback, PartitionLog
from broker_service.kafka.producer_state import APPEND, Outcome, ProducerStateTable, Verdict
from broker_service.metadata.errors import BrokerFenced
from broker_service.metadata.ports import MetadataPorts
from broker_service.metadata.records import PartitionRecord, StreamRange
from broker_service.protocol.control_batch import marker_type
from broker_service.protocol.errors import KafkaError
from broker_service.protocol.record_batch import (
    BatchHeader,
    batch_spans,
    iter_headers,
    read_header,
)
from broker_service.protocol.records import record_timestamps
from broker_service.stream.block_cache import BlockCache
from broker_service.stream.object_format import (
    FOOTER_SIZE,
    FORWARDED_STREAM_ID,
    IndexEntry,
    parse_footer,
    parse_index,
)
from broker_service.stream.object_writer import (
    Batches,
    ObjectWriter,
    PreparedObject,
    WrittenObject,
)
from broker_service.stream.objectstore.base import ObjectNotFound, ObjectStore
from broker_service.stream.wal import Wal, WalEntry, WalRecord
from broker_service.stream.wal.base import Done

log = logging.getLogger(__name__)


PRODUCER_ID_EXPIRATION_MS = 86_400_000  # Kafka's producer.id.expiration.ms default
MIN_UPLOAD_BYTES = 256 * 1024  # the smallest object an upload shrinks to on a full disk


class OffsetOutOfRange(Exception):
    pass


class AppendRefused(KafkaError):
    """Batches refused before they got offsets: ``code`` is the Kafka error to answer."""

    def __init__(self, code: int, message: str | None = None) -> None:
        super().__init__(message)
        self.code = ErrorCode(code)


def _check_producer(plog: PartitionLog, batches: list[tuple[int, BatchHeader]]) -> Verdict:
    """Idempotence and transaction checks (Kafka's rules, see kafka/producer_state.py). A
    request carries one batch per partition in practice; later batches of the same producer
    in one request follow the first one's sequence."""
    first = batches[0][1]
    for _, h in batches:
        if h.is_control:
            return Verdict(
                Outcome.REJECT,
                ErrorCode.invalid_record,
                "control batches are written by the transaction coordinator, not by clients",
            )
        if h.producer_id != first.producer_id or h.producer_epoch != first.producer_epoch:
            return Verdict(Outcome.REJECT, ErrorCode.invalid_record, "batches of several producers")
    return plog.producers.check(first)


def _ignore_failure(fut: asyncio.Future[bytes]) -> None:
    if not fut.cancelled():
        fut.exception()


class StreamStore:
    def __init__(
        self,
        object_store: ObjectStore,
        ports: MetadataPorts,
        wal: Wal,
        broker_id: int,
        broker_epoch: int,
        *,
        log_cache_bytes: int = 256 << 20,
        block_cache_bytes: int = 128 << 20,
        upload_interval_ms: int = 2000,
        upload_bytes: int = 32 << 20,
        block_bytes: int = 1 << 20,
        read_ahead_blocks: int = 4,
        on_fenced: Callable[[], None] | None = None,
        may_acknowledge: Callable[[], bool] = lambda: True,
        snapshot_interval_ms: int = 5000,
    ) -> None:
        self.objects = object_store
        self.ports = ports
        self.metadata = ports.store  # the few calls made before serving, in a thread
        self.wal = wal
        self.broker_id = broker_id
        self.broker_epoch = broker_epoch
        self.log_cache_bytes = log_cache_bytes
        self.block_cache = BlockCache(block_cache_bytes)
        self.upload_interval = upload_interval_ms / 1000.0
        self.upload_bytes = upload_bytes
        self._upload_cap = upload_bytes  # smaller while the object store's disk is full
        self.block_bytes = block_bytes
        self.writer = ObjectWriter(object_store, block_bytes)
        self._indexes: OrderedDict[str, dict[int, list[IndexEntry]]] = OrderedDict()
        self._loading: dict[tuple[str, int], asyncio.Future[bytes]] = {}
        self._whole: dict[str, asyncio.Future[None]] = {}  # whole-object reads under way
        self.read_ahead_blocks = read_ahead_blocks
        self.on_fenced = on_fenced
        self.may_acknowledge = may_acknowledge
        self.logs: dict[int, PartitionLog] = {}  # stream_id -> log
        self._pending_upload_bytes = 0
        self._upload_lock = asyncio.Lock()
        self._last_upload = time.monotonic()
        self._last_snapshot = time.monotonic()
        self.snapshot_interval = snapshot_interval_ms / 1000.0
        self._object_seq = 0
        self.uploads = 0
        # an upload whose commit failed and whose outcome is not known yet
        self._unsettled: tuple[PreparedObject, list[tuple[PartitionLog, int]]] | None = None

    # -- lifecycle ---------------------------------------------------------------------
    def add_partition(self, rec: PartitionRecord, ranges: list[StreamRange]) -> PartitionLog:
        """Start serving a partition with the ranges read for it (a new partition has none;
        the caller reads them through the metadata port, never on the event loop here)."""
        plog = PartitionLog(
            rec.topic, rec.partition, rec.stream_id, rec.leader_epoch, rec.log_start_offset
        )
        plog.leader_id = rec.leader_id
        if rec.leader_id == self.broker_id:
            plog.load_ranges(ranges)
        self.logs[rec.stream_id] = plog
        return plog

    def remove_partition(self, stream_id: int) -> None:
        plog = self.logs.pop(stream_id, None)
        if plog is not None:
            plog.deleted = True
            plog.abandon(f"{plog.topic}-{plog.partition} was deleted")

    def replay(self, entries: list[WalEntry]) -> int:
        """Put durable WAL entries not yet in objects back in the log; return how many."""
        replayed = 0
        for e in entries:
            plog = self.logs.get(e.stream_id)
            if plog is None or plog.leader_id != self.broker_id or e.end_offset <= plog.next_offset:
                continue  # topic deleted, moved to another broker, or already committed
            if e.base_offset != plog.next_offset:
                log.error(
                    "WAL gap in stream %d: expected offset %d, found %d",
                    e.stream_id,
                    plog.next_offset,
                    e.base_offset,
                )
            data = memoryview(e.data)
            for pos, h in iter_headers(data):
                view = data[pos : pos + h.size]
                cached = CachedBatch(h.base_offset, h.last_offset + 1, h.max_timestamp, view)
                if h.producer_id >= 0:
                    cached.header = h
                    cached.marker = marker_type(h, view) if h.is_control else None
                    plog.has_producers = True
                    plog.producers.apply(h, h.base_offset, cached.marker, h.max_timestamp)
                plog.cache_append(cached)
            plog.next_offset = plog.high_watermark = e.end_offset
            self._pending_upload_bytes += len(data)
            replayed += 1
        return replayed

    async def close(self) -> None:
        await self.wal.close()
        try:
            await self.upload()
            await self.save_producer_snapshots()
        except Exception:  # the WAL still holds it; the next start uploads it
            log.exception("final upload failed; data stays in the WAL")

    # -- write path --------------------------------------------------------------------
    def append_guarded(
        self,
        plog: PartitionLog,
        view: memoryview,
        batches: list[tuple[int, BatchHeader]],
        deadline: float = math.inf,
    ) -> tuple[int, asyncio.Future[None]]:
        """The one way batches enter a partition (client produce and transaction markers):
        refused (``AppendRefused``) unless this broker leads the partition, may acknowledge,
        and the WAL can write; producer rules applied (a retried batch gets its original
        offsets, once durable). Returns (base offset, an observer of its durability)."""
        base, end = self._guarded(plog, view, batches, deadline)
        return base, plog.wait_durable(end)

    def append_observed(
        self,
        plog: PartitionLog,
        view: memoryview,
        batches: list[tuple[int, BatchHeader]],
        deadline: float,
        on_durable: DurableCallback,
    ) -> int:
        """``append_guarded`` with a callback for an observer (``PartitionLog.when_durable``):
        the produce path, whose answer then needs no event-loop turn per partition. Returns
        the base offset."""
        base, end = self._guarded(plog, view, batches, deadline)
        plog.when_durable(end, on_durable)
        return base

    def _guarded(
        self,
        plog: PartitionLog,
        view: memoryview,
        batches: list[tuple[int, BatchHeader]],
        deadline: float,
    ) -> tuple[int, int]:
        """The checks of ``append_guarded``, then the append: (base offset, end offset)."""
        if plog.leader_id != self.broker_id or plog.moving or not self.may_acknowledge():
            raise AppendRefused(ErrorCode.not_leader_or_follower)
        if not self.wal.healthy:
            raise AppendRefused(
                ErrorCode.kafka_storage_error, "the write-ahead log cannot accept writes"
            )
        first = batches[0][1]
        if first.is_control:
            verdict = plog.producers.check_marker(first.producer_id, first.producer_epoch)
        elif first.producer_id >= 0:
            verdict = _check_producer(plog, batches)
        else:
            verdict = APPEND
        if verdict.outcome is Outcome.REJECT:
            raise AppendRefused(verdict.error_code, verdict.message)
        if verdict.duplicate is not None:  # a retry: its original offsets, once durable
            return verdict.duplicate.base_offset, verdict.duplicate.last_offset + 1
        base = plog.next_offset
        return base, self._append(plog, view, batches, deadline)

    def append(
        self,
        plog: PartitionLog,
        view: memoryview,
        batches: list[tuple[int, BatchHeader]],
        deadline: float = math.inf,
    ) -> tuple[int, asyncio.Future[None]]:
        """Assign offsets in place (``view`` is writable and ours to keep) and hand the
        batches to the WAL, whose report completes them in the partition whatever the
        client does. Returns (base offset, an observer resolved once they are durable)."""
        base = plog.next_offset
        return base, plog.wait_durable(self._append(plog, view, batches, deadline))

    def _append(
        self,
        plog: PartitionLog,
        view: memoryview,
        batches: list[tuple[int, BatchHeader]],
        deadline: float,
    ) -> int:
        """``append`` without an observer: returns the end offset."""
        base = plog.next_offset
        end = plog.append(view, batches, int(time.time() * 1000))
        if self.wal.needs_upload:
            self._pending_upload_bytes += len(view)
        max_ts = max(h.max_timestamp for _, h in batches)
        self.wal.append(
            WalRecord(plog.stream_id, base, end, view, max_ts, self._wal_done(plog), deadline)
        )
        return end

    def _wal_done(self, plog: PartitionLog) -> Done:
        def done(rec: WalRecord, committed: StreamRange | None, exc: BaseException | None) -> None:
            if exc is None:
                plog.durable(rec.end_offset, committed)
                return
            if self.wal.needs_upload and rec.base_offset < plog.next_offset:
                self._pending_upload_bytes -= len(rec.data)
            plog.failed(rec.base_offset, exc)

        return done

    # -- producer state (idempotence, transactions) ---------------------------------------
    async def load_producer_state(self, plog: PartitionLog) -> None:
        """Rebuild a partition's producer state when it starts being led here: the latest
        snapshot, then the committed batches after it (at most a snapshot interval's worth).
        A partition without a snapshot never had an idempotent or transactional batch
        committed (one is saved right after the first): its state starts empty, and taking
        it over reads nothing, however large it is."""
        snap = await self.ports.producers.producer_snapshot(plog.stream_id)
        plog.snapshot_offset = -1
        if snap is None or snap[0] > plog.committed_end:
            plog.committed_producers = ProducerStateTable()
            plog.producers = ProducerStateTable()
            return
        table = ProducerStateTable.decode(snap[1])
        plog.committed_producers = table
        offset = max(snap[0], plog.log_start_offset)
        while offset < plog.committed_end:
            batches = await self.read(plog, offset, 8 << 20, upto=plog.committed_end)
            if not batches:
                break
            for b in batches:
                h = read_header(b)
                if h.base_offset >= offset and h.producer_id >= 0:
                    marker = marker_type(h, b) if h.is_control else None
                    table.apply(h, h.base_offset, marker, h.max_timestamp)
                offset = max(offset, h.last_offset + 1)
        plog.has_producers = True
        plog.producers = ProducerStateTable.decode(table.encode())
        plog.snapshot_offset = snap[0]

    async def save_producer_snapshots(
        self, force: bool = False, only: PartitionLog | None = None
    ) -> int:
        """Save the committed producer state of partitions whose state moved since their
        last snapshot (``force``: even when it did not). Returns how many."""
        saved = 0
        now_ms = int(time.time() * 1000)
        for plog in [only] if only is not None else list(self.logs.values()):
            if plog.leader_id != self.broker_id or plog.deleted or not plog.has_producers:
                continue
            if plog.committed_end == plog.snapshot_offset and not force:
                continue
            if not plog.committed_producers.producers and plog.snapshot_offset < 0:
                continue  # nothing committed yet: no snapshot needed
            end = plog.committed_end
            plog.committed_producers.expire(
                now_ms, PRODUCER_ID_EXPIRATION_MS, plog.log_start_offset
            )
            data = plog.committed_producers.encode()
            await self.ports.producers.save_producer_snapshot(plog.stream_id, end, data)
            plog.snapshot_offset = end
            saved += 1
        return saved

    async def snapshot_step(self) -> None:
        """Run every 0.1 s (runtime/timers.py): every interval, snapshot what changed; a
        partition's first snapshot at once."""
        if time.monotonic() - self._last_snapshot >= self.snapshot_interval:
            self._last_snapshot = time.monotonic()
            await self.save_producer_snapshots()
            return
        for plog in [
            p
            for p in self.logs.values()
            if p.snapshot_offset < 0 and p.committed_producers.producers
        ]:
            await self.save_producer_snapshots(only=plog)

    # -- read path ---------------------------------------------------------------------
    async def read(
        self,
        plog: PartitionLog,
        offset: int,
        max_bytes: int,
        upto: int | None = None,
        min_one: bool = True,
    ) -> list[memoryview | bytes]:
        """Batches from ``offset`` (the batch holding it first) up to ``max_bytes``; with
        ``min_one`` the first batch comes even when larger (KIP-74). Raises OffsetOutOfRange."""
        hw = plog.high_watermark if upto is None else upto
        if offset < plog.log_start_offset or offset > plog.high_watermark:
            raise OffsetOutOfRange(offset)
        if offset >= hw:
            return []
        while offset < hw:
            if offset >= plog.cache_start():
                return self._read_cache(plog, offset, max_bytes, hw, min_one)
            r = plog.range_for(offset)
            if r is None:
                raise OffsetOutOfRange(offset)
            try:
                out = await self._read_range(r, offset, max_bytes, hw, min_one)
            except ObjectNotFound:
                # compaction replaced the object and its grace period ended: re-read the
                # ranges from metadata and read the replacement. This broker's own compactor
                # may have swapped them in already while the read waited: then the refresh
                # finds nothing new, but the range holding the offset has changed.
                await self.refresh_ranges(plog)
                if plog.range_for(offset) == r and offset < plog.cache_start():
                    raise  # the same range, its object gone: not a swap
                continue
            if out is not None:
                return out  # (empty: the batch at offset does not fit what is left)
            # nothing at or after offset in this range (a compacted topic's removed
            # records): the next batch is in the next range
            offset = r.end_offset
        return []

    async def _read_range(
        self, r: StreamRange, offset: int, max_bytes: int, hw: int, min_one: bool
    ) -> list[memoryview | bytes] | None:
        """The range's batches from ``offset`` that fit ``max_bytes`` (the first whatever its
        size with ``min_one``); empty when the first does not fit (or is at or past ``hw``):
        the answer is then nothing, never a batch of a later range (the client would take it
        for a compacted gap and skip the records that did not fit); None when the range holds
        nothing at or after ``offset``."""
        blocks = await self._stream_blocks(r)
        out: list[memoryview | bytes] = []
        total = 0
        i = max(bisect_right([b.start_offset for b in blocks], offset) - 1, 0)
        for j in range(i, len(blocks)):
            view = memoryview(await self._block(r.object_key, blocks[j]))
            for pos, base, size, last in batch_spans(view):
                if last < offset:
                    continue
                if base >= hw or ((out or not min_one) and total + size > max_bytes):
                    self._read_ahead(r.object_key, blocks[j + 1 : j + 1 + self.read_ahead_blocks])
                    return out
                out.append(view[pos : pos + size])
                total += size
        return out or None

    async def refresh_ranges(self, plog: PartitionLog) -> bool:
        """Re-read a led partition's committed ranges (compaction swaps objects and
        retention drops ranges behind the leader's back). Ranges this broker committed after
        the read stay. Returns whether anything changed."""
        fetched = await self.ports.streams.stream_ranges(plog.stream_id)
        if plog.leader_id != self.broker_id:
            return False
        end = fetched[-1].end_offset if fetched else -1
        merged = fetched + [r for r in plog.ranges if r.start_offset >= end]
        if merged == plog.ranges:
            return False
        # cached batches the compactor rewrote (a compacted topic's) are served from the new
        # objects from now on: drop them from the front of the log cache
        known = set(plog.ranges)
        rewritten_end = max((r.end_offset for r in fetched if r not in known), default=-1)
        while plog.cache and plog.cache[0].end_offset <= min(rewritten_end, plog.committed_end):
            plog.cache_bytes -= len(plog.cache.pop(0).data)
            plog.cache_bases.pop(0)
        plog.ranges = merged
        plog.range_starts = [r.start_offset for r in merged]
        return True

    def _read_ahead(self, key: str, entries: list[IndexEntry]) -> None:
        """A catch-up reader will want the next blocks: start fetching them now."""
        for e in entries:
            if (key, e.position) not in self._loading and self.block_cache.get(
                key, e.position
            ) is None:
                fut = asyncio.ensure_future(self._load(key, e))
                fut.add_done_callback(_ignore_failure)  # a real read retries and reports
                self._loading[(key, e.position)] = fut

    def _read_cache(
        self, plog: PartitionLog, offset: int, max_bytes: int, hw: int, min_one: bool
    ) -> list[memoryview | bytes]:
        out: list[memoryview | bytes] = []
        total = 0
        cache = plog.cache
        for i in range(plog.cache_index(offset), len(cache)):
            b = cache[i]
            if b.base_offset >= hw:
                break
            n = len(b.data)
            if (out or not min_one) and total + n > max_bytes:
                break
            out.append(b.data)
            total += n
        return out

    def has_object(self, key: str) -> bool:
        """Whether the index of ``key`` is cached (its blocks may still be evicted)."""
        return key in self._indexes

    async def load_object(self, key: str) -> None:
        """Read a whole (small) object with one GET and cache its index and every block. A
        broker serving many partitions of one WAL object (zone replica reads) then pays one
        request, not one per partition's range; S3 bytes are free within a region, requests
        are not."""
        loading = self._whole.get(key)
        if loading is None:
            loading = asyncio.ensure_future(self._load_whole(key))
            self._whole[key] = loading
            loading.add_done_callback(lambda _f: self._whole.pop(key, None))
        await asyncio.shield(loading)

    async def _load_whole(self, key: str) -> None:
        data = memoryview(await self.objects.get(key))
        pos, size = parse_footer(bytes(data[-FOOTER_SIZE:]))
        index: dict[int, list[IndexEntry]] = {}
        for e in parse_index(bytes(data[pos : pos + size])):
            if e.stream_id == FORWARDED_STREAM_ID:  # another leader's, read there: not cached
                continue
            index.setdefault(e.stream_id, []).append(e)
            if self.block_cache.get(key, e.position) is None:
                self.block_cache.put(key, e.position, bytes(data[e.position : e.position + e.size]))
        self._indexes[key] = index
        if len(self._indexes) > 4096:
            self._indexes.popitem(last=False)

    async def _stream_blocks(self, r: StreamRange) -> list[IndexEntry]:
        """The blocks of ``r``'s stream in its object, from the object's (cached) index."""
        index = self._indexes.get(r.object_key)
        if index is None:
            footer = await self.objects.get(r.object_key, -FOOTER_SIZE)
            pos, size = parse_footer(footer)
            entries = parse_index(await self.objects.get(r.object_key, pos, pos + size))
            index = {}
            for e in entries:
                index.setdefault(e.stream_id, []).append(e)
            self._indexes[r.object_key] = index
            if len(self._indexes) > 4096:
                self._indexes.popitem(last=False)
        else:
            self._indexes.move_to_end(r.object_key)
        return index.get(r.stream_id, [])

    async def _block(self, key: str, e: IndexEntry) -> bytes:
        block = self.block_cache.get(key, e.position)
        if block is not None:
            return block
        loading = self._loading.get((key, e.position))
        if loading is None:  # one GET per block, however many readers want it
            loading = asyncio.ensure_future(self._load(key, e))
            self._loading[(key, e.position)] = loading
        return await asyncio.shield(loading)

    async def _load(self, key: str, e: IndexEntry) -> bytes:
        try:
            block = await self.objects.get(key, e.position, e.position + e.size)
            self.block_cache.put(key, e.position, block)
            return block
        finally:
            self._loading.pop((key, e.position), None)

    async def offset_for_timestamp(self, plog: PartitionLog, ts: int) -> tuple[int, int] | None:
        """First (offset, timestamp) in offset order with timestamp >= ts, or None."""
        ranges = plog.ranges
        try:
            return await self._offset_for_timestamp(plog, ts)
        except ObjectNotFound:
            # compaction replaced the object (here, or already known while this waited)
            if not await self.refresh_ranges(plog) and plog.ranges is ranges:
                raise
            return await self._offset_for_timestamp(plog, ts)

    async def _offset_for_timestamp(self, plog: PartitionLog, ts: int) -> tuple[int, int] | None:
        candidates: list[tuple[BatchHeader, memoryview]] = []
        for r in plog.ranges:
            if r.max_timestamp < ts or r.end_offset <= plog.log_start_offset:
                continue
            for e in await self._stream_blocks(r):
                if e.max_timestamp >= ts:
                    view = memoryview(await self._block(r.object_key, e))
                    candidates += [(h, view[p : p + h.size]) for p, h in iter_headers(view)]
                    break
            break
        cache_from = plog.cache_index(plog.committed_end) if plog.cache else 0
        candidates += [
            (h, b.data) for b in plog.cache[cache_from:] for _, h in iter_headers(b.data)
        ]
        hw, start = plog.high_watermark, plog.log_start_offset

        def scan() -> tuple[int, int] | None:  # decompresses: off the event loop
            for h, data in candidates:
                if h.base_offset >= hw or h.last_offset < start:
                    continue
                if h.max_timestamp >= ts and not h.is_control:
                    for off, rts in record_timestamps(h, data):
                        if rts >= ts and off >= start:
                            return off, rts
            return None

        return await asyncio.to_thread(scan)

    # -- upload ------------------------------------------------------------------------
    async def upload_step(self) -> None:
        """Run every 0.05 s (runtime/timers.py): evict, and upload when data is old enough
        or plentiful. A fenced broker's commits are refused: it stops."""
        self._evict()
        due = time.monotonic() - self._last_upload >= self.upload_interval
        if not self._pending_upload_bytes or not (
            due or self._pending_upload_bytes >= self.upload_bytes
        ):
            return
        self._last_upload = time.monotonic()
        try:
            await self.upload()
        except BrokerFenced:
            log.error("this broker was fenced: its commits are refused; stopping")
            if self.on_fenced:
                self.on_fenced()

    async def upload(self) -> int:
        """Upload durable, uncommitted data as one StreamSetObject of about ``upload_bytes``
        (the rest waits for the next round). Returns the object's size."""
        async with self._upload_lock:
            if self._unsettled is not None:
                size = self._unsettled[0].written.size
                if await self._settle_unsettled():
                    return size  # it is committed; the rest goes next round
            streams: list[tuple[int, Batches]] = []
            taken: list[tuple[PartitionLog, int]] = []
            size = 0
            for plog in list(self.logs.values()):
                if size >= self._upload_cap:
                    break
                start, hw = plog.committed_end, plog.high_watermark
                if hw <= start or not plog.cache or plog.leader_id != self.broker_id:
                    continue
                batches: list[tuple[int, int, int, memoryview]] = []
                nbytes = 0
                for b in plog.cache[plog.cache_index(start) :]:
                    if b.base_offset >= hw or (batches and size + nbytes >= self._upload_cap):
                        break
                    if b.base_offset >= start:
                        batches.append((b.base_offset, b.end_offset, b.max_timestamp, b.data))
                        nbytes += len(b.data)
                if not batches:
                    continue
                streams.append((plog.stream_id, batches))
                taken.append((plog, nbytes))
                size += nbytes
            if not taken:  # recount: bytes of deleted topics never get uploaded
                self._pending_upload_bytes = sum(
                    len(b.data)
                    for p in self.logs.values()
                    for b in p.cache[p.cache_index(p.committed_end) :]
                    if b.base_offset >= p.committed_end
                )
                return 0
            self._object_seq += 1
            key = (
                f"sso/{self.broker_id}-{self.broker_epoch}-{time.time_ns()}-{self._object_seq}.sso"
            )
            prepared = self.writer.prepare(key, streams)
            try:
                await self.writer.put_and_commit(prepared, self._commit_upload)
            except asyncio.CancelledError:
                # Its commit may still land (the metadata call runs on): the next upload, the
                # final one at shutdown included, settles it before taking the same offsets.
                self._unsettled = (prepared, taken)
                raise
            except Exception as exc:
                if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                    # smaller objects: committed, they free the WAL
                    self._upload_cap = max(MIN_UPLOAD_BYTES, self._upload_cap // 2)
                # The commit may have applied (an error after the write, a lost answer):
                # settle it before anything else is uploaded, or the same offsets would be
                # committed again under another key.
                log.info("upload %s: its commit failed (%s); settling", prepared.written.key, exc)
                self._unsettled = (prepared, taken)
                if not await self._settle_unsettled():
                    raise
                return prepared.written.size
            self._upload_cap = min(self.upload_bytes, self._upload_cap * 2)
            self._uploaded(prepared.written, taken)
            return prepared.written.size

    def _uploaded(self, written: WrittenObject, taken: list[tuple[PartitionLog, int]]) -> None:
        for r, (plog, nbytes) in zip(written.ranges, taken, strict=True):
            if plog.committed_end == r.start_offset:
                plog.add_range(r)
            self._pending_upload_bytes -= nbytes
        self.uploads += 1
        self.wal.trim(
            {s: p.committed_end for s, p in self.logs.items() if p.leader_id == self.broker_id}
        )
        self._evict()
        log.debug("uploaded %s: %d bytes, %d streams", written.key, written.size, len(taken))

    async def _settle_unsettled(self) -> bool:
        """Settle the upload whose commit failed: True if it landed after all (then it is
        recorded as uploaded), False if it never will. Raises while the store cannot say;
        every upload first retries this."""
        if self._unsettled is None:
            return False
        prepared, taken = self._unsettled
        committed = await self.ports.streams.abort_object_commit(prepared.written.key)
        self._unsettled = None
        if committed:
            log.info("upload %s committed although its commit failed", prepared.written.key)
            self._uploaded(prepared.written, taken)
        return bool(committed)

    async def _commit_upload(self, w: WrittenObject) -> None:
        await self.ports.streams.commit_object(
            self.broker_id, self.broker_epoch, w.key, w.size, w.ranges
        )

    def _evict(self) -> None:
        total = sum(p.cache_bytes for p in self.logs.values())
        if total <= self.log_cache_bytes:
            return
        for plog in sorted(self.logs.values(), key=lambda p: -p.cache_bytes):
            total -= plog.evict_uploaded(max(0, plog.cache_bytes - (total - self.log_cache_bytes)))
            if total <= self.log_cache_bytes:
                return
