"""StreamStore: the write and read paths over WAL + log cache + object store + metadata.

Write: batches get offsets, enter the log cache, and are queued on the WAL; the high
watermark moves (and producers are answered) only when the WAL says they are durable.
Upload: durable data not yet in objects is packed into one StreamSetObject, PUT, then
committed to metadata conditionally on this broker's epoch; then the WAL is trimmed.
Read: recent offsets from the log cache, older ones from objects through the block cache.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable

from broker_service.kafka.partition import CachedBatch, PartitionLog
from broker_service.kafka.producer_state import ProducerStateTable
from broker_service.metadata.errors import BrokerFenced
from broker_service.metadata.records import PartitionRecord, StreamRange
from broker_service.metadata.store import MetadataStore
from broker_service.protocol.control_batch import marker_type
from broker_service.protocol.record_batch import (
    BatchHeader,
    batch_spans,
    iter_headers,
    read_header,
    set_base_offset,
    set_leader_epoch,
)
from broker_service.protocol.records import record_timestamps
from broker_service.stream.block_cache import BlockCache
from broker_service.stream.object_format import (
    FOOTER_SIZE,
    IndexEntry,
    StreamSetObjectBuilder,
    parse_footer,
    parse_index,
)
from broker_service.stream.objectstore.base import ObjectNotFound, ObjectStore
from broker_service.stream.wal import Wal, WalEntry

log = logging.getLogger(__name__)


PRODUCER_ID_EXPIRATION_MS = 86_400_000  # Kafka's producer.id.expiration.ms default


class OffsetOutOfRange(Exception):
    pass


def _on_durable(plog: PartitionLog, end: int, fut: asyncio.Future[StreamRange | None]) -> None:
    if fut.cancelled() or fut.exception() is not None:
        return
    committed = fut.result()
    if committed is not None and committed.end_offset > plog.committed_end:
        plog.add_range(committed)  # the WAL itself committed the object holding it
    plog.advance_high_watermark(end)


def _apply_producer(plog: PartitionLog, h: BatchHeader, base: int, batch: memoryview) -> None:
    if h.producer_id < 0:
        return
    plog.has_producers = True
    marker = marker_type(h, batch) if h.is_control else None
    plog.producers.apply(h, base, marker, h.max_timestamp)


def _ignore_failure(fut: asyncio.Future[bytes]) -> None:
    if not fut.cancelled():
        fut.exception()


class StreamStore:
    def __init__(
        self,
        object_store: ObjectStore,
        metadata: MetadataStore,
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
        snapshot_interval_ms: int = 5000,
    ) -> None:
        self.objects = object_store
        self.metadata = metadata
        self.wal = wal
        self.broker_id = broker_id
        self.broker_epoch = broker_epoch
        self.log_cache_bytes = log_cache_bytes
        self.block_cache = BlockCache(block_cache_bytes)
        self.upload_interval = upload_interval_ms / 1000.0
        self.upload_bytes = upload_bytes
        self.block_bytes = block_bytes
        self._indexes: OrderedDict[str, dict[int, list[IndexEntry]]] = OrderedDict()
        self._loading: dict[tuple[str, int], asyncio.Future[bytes]] = {}
        self.read_ahead_blocks = read_ahead_blocks
        self.on_fenced = on_fenced
        self.logs: dict[int, PartitionLog] = {}  # stream_id -> log
        self._pending_upload_bytes = 0
        self._upload_lock = asyncio.Lock()
        self._upload_task: asyncio.Task[None] | None = None
        self._snapshot_task: asyncio.Task[None] | None = None
        self.snapshot_interval = snapshot_interval_ms / 1000.0
        self._object_seq = 0
        self.uploads = 0

    # -- lifecycle ---------------------------------------------------------------------
    def add_partition(
        self, rec: PartitionRecord, ranges: list[StreamRange] | None = None
    ) -> PartitionLog:
        """Start serving a partition; ``ranges`` when known (a new partition has none)."""
        plog = PartitionLog(
            rec.topic, rec.partition, rec.stream_id, rec.leader_epoch, rec.log_start_offset
        )
        plog.leader_id = rec.leader_id
        if rec.leader_id == self.broker_id:
            plog.load_ranges(
                self.metadata.stream_ranges(rec.stream_id) if ranges is None else ranges
            )
        self.logs[rec.stream_id] = plog
        return plog

    def remove_partition(self, stream_id: int) -> None:
        plog = self.logs.pop(stream_id, None)
        if plog is not None:
            plog.deleted = True
            plog.wake()

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
                plog.cache_append(
                    CachedBatch(h.base_offset, h.last_offset + 1, h.max_timestamp, view)
                )
                _apply_producer(plog, h, h.base_offset, view)
            plog.next_offset = plog.high_watermark = e.end_offset
            self._pending_upload_bytes += len(data)
            replayed += 1
        return replayed

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._upload_task = loop.create_task(self._upload_loop())
        self._snapshot_task = loop.create_task(self._snapshot_loop())

    async def close(self) -> None:
        for task in (self._upload_task, self._snapshot_task):
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        await self.wal.close()
        try:
            await self.upload()
            await self.save_producer_snapshots()
        except Exception:  # the WAL still holds it; the next start uploads it
            log.exception("final upload failed; data stays in the WAL")

    # -- write path --------------------------------------------------------------------
    def append(
        self, plog: PartitionLog, view: memoryview, batches: list[tuple[int, BatchHeader]]
    ) -> tuple[int, asyncio.Future[StreamRange | None]]:
        """Assign offsets in place (``view`` is writable and ours to keep) and queue the
        batches for durability. Returns (base offset, future resolved when durable)."""
        base = plog.next_offset
        buf = view
        offset = base
        for pos, h in batches:
            set_base_offset(buf, pos, offset)
            set_leader_epoch(buf, pos, plog.leader_epoch)
            end = offset + h.last_offset_delta + 1
            batch = view[pos : pos + h.size]
            plog.cache_append(CachedBatch(offset, end, h.max_timestamp, batch))
            if h.producer_id >= 0:
                _apply_producer(plog, h, offset, batch)
            offset = end
        plog.next_offset = offset
        if self.wal.needs_upload:
            self._pending_upload_bytes += len(view)
        fut = self.wal.append(plog.stream_id, base, offset, view)
        fut.add_done_callback(functools.partial(_on_durable, plog, offset))
        return base, fut

    # -- producer state (idempotence, transactions) ---------------------------------------
    async def load_producer_state(self, plog: PartitionLog) -> None:
        """Rebuild a partition's producer state when it starts being led here: the latest
        snapshot, then the committed batches after it (at most a snapshot interval's worth).
        A partition without a snapshot never had an idempotent or transactional batch
        committed (one is saved right after the first): its state starts empty, and taking
        it over reads nothing, however large it is."""
        snap = await asyncio.to_thread(self.metadata.producer_snapshot, plog.stream_id)
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
            await asyncio.to_thread(self.metadata.save_producer_snapshot, plog.stream_id, end, data)
            plog.snapshot_offset = end
            saved += 1
        return saved

    async def _snapshot_loop(self) -> None:
        """Every interval, snapshot what changed; within 0.1 s, a partition's first one."""
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.1)
            due = time.monotonic() - last >= self.snapshot_interval
            try:
                if due:
                    last = time.monotonic()
                    await self.save_producer_snapshots()
                else:
                    for plog in [
                        p
                        for p in self.logs.values()
                        if p.snapshot_offset < 0 and p.committed_producers.producers
                    ]:
                        await self.save_producer_snapshots(only=plog)
            except Exception:
                log.warning("saving producer snapshots failed; will retry", exc_info=True)

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
                # ranges from metadata (once) and read the replacement
                if not await self.refresh_ranges(plog):
                    raise
                continue
            if out:
                return out
            # nothing at or after offset in this range (a compacted topic's removed
            # records): the next batch is in the next range
            offset = r.end_offset
        return []

    async def _read_range(
        self, r: StreamRange, offset: int, max_bytes: int, hw: int, min_one: bool
    ) -> list[memoryview | bytes]:
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
        return out

    async def refresh_ranges(self, plog: PartitionLog) -> bool:
        """Re-read a led partition's committed ranges (compaction swaps objects and
        retention drops ranges behind the leader's back). Ranges this broker committed after
        the read stay. Returns whether anything changed."""
        fetched = await asyncio.to_thread(self.metadata.stream_ranges, plog.stream_id)
        if plog.leader_id != self.broker_id:
            return False
        end = fetched[-1].end_offset if fetched else -1
        merged = fetched + [r for r in plog.ranges if r.start_offset >= end]
        if merged == plog.ranges:
            return False
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
        try:
            return await self._offset_for_timestamp(plog, ts)
        except ObjectNotFound:
            if not await self.refresh_ranges(plog):  # compaction replaced the object
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
        for h, data in candidates:
            if h.base_offset >= plog.high_watermark or h.last_offset < plog.log_start_offset:
                continue
            if h.max_timestamp >= ts and not h.is_control:
                for off, rts in record_timestamps(h, data):
                    if rts >= ts and off >= plog.log_start_offset:
                        return off, rts
        return None

    # -- upload ------------------------------------------------------------------------
    async def _upload_loop(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.05)
            self._evict()
            due = time.monotonic() - last >= self.upload_interval
            if self._pending_upload_bytes and (
                due or self._pending_upload_bytes >= self.upload_bytes
            ):
                try:
                    await self.upload()
                except BrokerFenced:
                    log.error("this broker was fenced: its commits are refused; stopping")
                    if self.on_fenced:
                        self.on_fenced()
                    return
                except Exception:
                    log.exception("upload failed; will retry (data is safe in the WAL)")
                last = time.monotonic()

    async def upload(self) -> int:
        """Upload durable, uncommitted data as one StreamSetObject of about ``upload_bytes``
        (the rest waits for the next round). Returns the object's size."""
        async with self._upload_lock:
            builder = StreamSetObjectBuilder(self.block_bytes)
            taken: list[tuple[PartitionLog, int]] = []
            for plog in list(self.logs.values()):
                if builder.size >= self.upload_bytes:
                    break
                start, hw = plog.committed_end, plog.high_watermark
                if hw <= start or not plog.cache:
                    continue
                batches: list[tuple[int, int, int, memoryview]] = []
                for b in plog.cache[plog.cache_index(start) :]:
                    if b.base_offset >= hw or (batches and builder.size >= self.upload_bytes):
                        break
                    batches.append((b.base_offset, b.end_offset, b.max_timestamp, b.data))
                builder.add_stream(plog.stream_id, batches)
                taken.append((plog, sum(len(x[3]) for x in batches)))
            if not taken:  # recount: bytes of deleted topics never get uploaded
                self._pending_upload_bytes = sum(
                    len(b.data)
                    for p in self.logs.values()
                    for b in p.cache[p.cache_index(p.committed_end) :]
                    if b.base_offset >= p.committed_end
                )
                return 0
            parts = builder.build()
            size = sum(len(p) for p in parts)
            self._object_seq += 1
            key = (
                f"sso/{self.broker_id}-{self.broker_epoch}-{time.time_ns()}-{self._object_seq}.sso"
            )
            await self.objects.put(key, parts)
            ranges = [
                StreamRange(
                    s.stream_id,
                    s.start_offset,
                    s.end_offset,
                    key,
                    s.position,
                    s.size,
                    s.max_timestamp,
                )
                for s in builder.spans
            ]
            await asyncio.to_thread(
                self.metadata.commit_object, self.broker_id, self.broker_epoch, key, size, ranges
            )
            for r, (plog, nbytes) in zip(ranges, taken, strict=True):
                plog.add_range(r)
                self._pending_upload_bytes -= nbytes
            self.uploads += 1
            self.wal.trim(
                {s: p.committed_end for s, p in self.logs.items() if p.leader_id == self.broker_id}
            )
            self._evict()
            log.debug("uploaded %s: %d bytes, %d streams", key, size, len(ranges))
            return size

    def _evict(self) -> None:
        total = sum(p.cache_bytes for p in self.logs.values())
        if total <= self.log_cache_bytes:
            return
        for plog in sorted(self.logs.values(), key=lambda p: -p.cache_bytes):
            total -= plog.evict_uploaded(max(0, plog.cache_bytes - (total - self.log_cache_bytes)))
            if total <= self.log_cache_bytes:
                return
