"""Compaction and retention: what the compaction Lambda calls and embedded brokers run on a
timer (``BROKER_COMPACTION_INTERVAL_MS``).

One run, under the compactor lease (a fenced identity in the metadata store):

1. **Retention** (``cleanup.policy`` with ``delete``): ``retention.ms`` and
   ``retention.bytes`` raise the partition's log start offset to a range boundary
   (DeleteRecords raises it directly); ranges wholly below the log start offset are dropped.
2. **Merge**: runs of small ranges of one stream (from WAL / stream-set objects shared by many
   partitions) are copied, batch bytes unchanged, into one per-stream object of about
   ``target_object_bytes``. Every partition's merges are planned first and run oldest first
   across partitions, so each shared object is read with one GET (``compaction_reads``).
   Compacted topics (``cleanup.policy=compact``) are rewritten keeping the latest record per
   key (tombstones go after ``delete.retention.ms``).
3. **Swap**: each new object is committed with ``replace_stream_ranges``, a compare-and-set on
   the exact old ranges and on the lease epoch: a concurrent writer or compactor makes it fail
   and the stream is skipped (retried next run). Offsets never change.
4. **Delete**: objects no range refers to any more are marked released and deleted from the
   object store only after ``replaced_grace_ms`` (readers may still hold them); objects that
   were written but never committed are deleted once older than ``orphan_grace_ms``.

Work is bounded by ``time_budget_s`` and ``max_bytes_per_run``; everything lives in the
metadata store, so the next run resumes where this one stopped.

A tenant writing faster than one compactor merges runs ``shards`` of them at once, each under
a lease of its own: shard k merges the ranges held by the WAL objects written in time buckets
k, k + shards, ... (``shard_bucket_ms``), so each WAL object is still read by one run, with one
GET; swaps of one stream by two shards meet at its compare-and-set (the later one is retried
next run). Shard 0 alone does retention, compacted topics, merges of merged objects and
garbage collection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from broker_service.config.compaction import CompactionConfig
from broker_service.control.compaction_reads import SpanReader, read_windows
from broker_service.metadata.errors import ConcurrentUpdate, MetadataError, UnknownTopic
from broker_service.metadata.records import (
    MAX_COMPACTOR_SHARDS,
    PartitionRecord,
    StreamRange,
    TopicRecord,
)
from broker_service.metadata.store import MetadataStore
from broker_service.protocol.configs import parse_topic
from broker_service.protocol.control_batch import ABORT, marker_type
from broker_service.protocol.decompress import TooLarge
from broker_service.protocol.record_batch import BatchHeader, iter_headers
from broker_service.protocol.record_filter import StoredRecord, rebuild_batch, records_of
from broker_service.stream.object_writer import ObjectWriter, WrittenObject
from broker_service.stream.objectstore.base import ObjectStore

log = logging.getLogger(__name__)

# A swap is one DynamoDB transaction of at most 100 actions: the lease check, the new object,
# the stream's head and the chunks that change (those holding old ranges, ~64 ranges each,
# replaced; a swap across more of them first merges them, the ranges unchanged). It marks no
# old object (garbage collection does, once no range names it), so the number of old objects
# costs nothing: 640 ranges reach 64 MiB objects in one merge from ranges of 100 KB, a
# 32-partition broker's share of a WAL object at 80 MB/s (80, when a swap also marked each old
# object released, left 8.7 MB objects there that were merged again, and wrote 70 WRU per WAL
# object; tests/contract/test_compaction_metadata.py swaps this many).
MAX_SWAP_RANGES = 640

# Compaction's own objects (``so/<stream id>/...``) are nearly all the bucket: 4 million at
# 1 GiB/s with 72 h retention, minutes of LIST requests. A run lists every other prefix (WAL
# uploads and forwarded batches live minutes: few) and one shard of its own, by the first
# digit of the stream id, in turn by lease epoch: each object is listed every ten runs (orphans,
# objects emptied by a run that did not finish). What a run empties itself it retires at once.
COMPACTED_PREFIX = "so/"
LISTING_SHARDS = 10


@dataclass
class CompactionResult:
    lease_epoch: int = -1
    skipped: str | None = None  # why nothing ran (another run holds the lease)
    streams: int = 0
    swaps: int = 0
    ranges_merged: int = 0
    gets: int = 0  # object GETs (a shared object once per run where the read buffer allows)
    bytes_read: int = 0
    bytes_written: int = 0
    records_removed: int = 0  # compacted topics: superseded records and expired tombstones
    retention_moves: list[tuple[str, int, int]] = field(default_factory=list)  # topic, p, lso
    ranges_dropped: int = 0
    conflicts: int = 0  # swaps refused by the compare-and-set (retried next run)
    objects_released: int = 0
    objects_deleted: int = 0
    orphans_deleted: int = 0
    budget_exhausted: bool = False
    seconds: float = 0.0


def object_created_ms(key: str) -> int | None:
    """When an object was written, from its key (``<a>-<b>-<time_ns>-<seq>.sso``, the form
    every writer uses); None for a key of another form (never treated as an orphan)."""
    name = key.rsplit("/", 1)[-1]
    parts = name.split("-")
    if len(parts) != 4 or not name.endswith(".sso"):
        return None
    try:
        return int(parts[2]) // 1_000_000
    except ValueError:
        return None


class _Run:
    def __init__(
        self,
        metadata: MetadataStore,
        objects: ObjectStore,
        config: CompactionConfig,
        owner: str,
        now_ms: int | None,
    ) -> None:
        self.metadata = metadata
        self.objects = objects
        self.config = config
        self.owner = owner
        self.fixed_now = now_ms
        self.result = CompactionResult()
        self.started = time.monotonic()
        self.started_wall = time.time()
        self.lease_deadline = 0.0
        self.lease_deadline_wall = 0.0
        self.epoch = -1
        self._seq = 0
        self.defaults: dict[str, str] = {}  # cluster-wide dynamic defaults of topic configs
        self.reader = SpanReader(objects, config.read_buffer_bytes)
        # label, stream, ranges: what every partition could merge, planned all together
        self._candidates: list[tuple[str, int, list[StreamRange]]] = []
        self._swapped_out: set[str] = set()  # objects whose ranges this run's swaps replaced
        self.shard = config.shard if config.shards > 1 else 0
        if self.shard >= config.shards:
            raise ValueError(f"compactor shard {config.shard} of {config.shards}")

    def mine(self, r: StreamRange) -> bool:
        """Whether this shard merges ``r``: every range when there is one shard; else the
        ranges of WAL objects of this shard's time buckets, and in shard 0 merged objects
        and what other shards left once older than ``shard_sweep_after_ms``."""
        c = self.config
        if c.shards == 1:
            return True
        created = None if compacted_output(r) else object_created_ms(r.object_key)
        if created is None:
            return self.shard == 0
        if (created // c.shard_bucket_ms) % c.shards == self.shard:
            return True
        return self.shard == 0 and self.now_ms() - created >= c.shard_sweep_after_ms

    def now_ms(self) -> int:
        if self.fixed_now is not None:
            return self.fixed_now + int((time.monotonic() - self.started) * 1000)
        return int(time.time() * 1000)

    def out_of_budget(self) -> bool:
        c = self.config
        if (
            time.monotonic() - self.started > c.time_budget_s
            or self.reader.bytes_read >= c.max_bytes_per_run
        ):
            self.result.budget_exhausted = True
        return self.result.budget_exhausted

    def lease_valid(self) -> bool:
        """By both clocks: the store times the lease by the wall clock, and a paused host
        resumes with its wall clock stepped forward and its monotonic one where it stopped."""
        return time.monotonic() < self.lease_deadline and time.time() < self.lease_deadline_wall

    def _config(self, topic: TopicRecord, name: str) -> Any:
        """A topic config's typed effective value (its override, else the cluster default)."""
        return parse_topic(topic.configs, name, self.defaults)

    async def _md(self, fn, *args):  # type: ignore[no-untyped-def]
        return await asyncio.to_thread(fn, *args)

    # -- the run ---------------------------------------------------------------------------
    async def run(self) -> CompactionResult:
        try:
            lease = await self._md(
                self.metadata.acquire_compactor_lease,
                self.owner,
                self.config.lease_ms,
                self.now_ms(),
                self.shard,
            )
        except ConcurrentUpdate as exc:
            self.result.skipped = str(exc)
            log.info("compaction skipped: %s", exc)
            return self.result
        # our own clock bounds the lease (minus a margin for the clocks of other runs)
        self.lease_deadline = self.started + self.config.lease_ms / 1000 * 0.9
        self.lease_deadline_wall = self.started_wall + self.config.lease_ms / 1000 * 0.9
        self.epoch = self.result.lease_epoch = lease.epoch
        try:
            finish = getattr(self.metadata, "finish_pending_commits", None)
            if finish is not None:  # DynamoDB: index interrupted commits before touching ranges
                await self._md(finish)
            listed = await self._list_objects() if self.shard == 0 else []
            self.defaults = await self._md(self.metadata.cluster_configs)
            topics = await self._md(self.metadata.topics)
            for topic in topics:
                for p in topic.partitions:
                    if self.out_of_budget() or not self.lease_valid():
                        break
                    try:
                        await self._partition(topic, p)
                    except ConcurrentUpdate as exc:
                        self.result.conflicts += 1
                        log.info("%s-%d: %s; retried next run", topic.name, p.partition, exc)
                    except UnknownTopic:
                        continue
            await self._merge_planned()
            if self.lease_valid() and self.shard == 0:
                # compaction's own objects this run emptied, listed or not (a shard per run)
                emptied = {k for k in self._swapped_out if k.startswith(COMPACTED_PREFIX)}
                await self._collect_garbage(sorted(set(listed) | emptied))
        finally:
            try:
                await self._md(self.metadata.release_compactor_lease, self.epoch)
            except MetadataError:
                log.exception("could not release the compactor lease (it expires anyway)")
        self.result.gets, self.result.bytes_read = self.reader.gets, self.reader.bytes_read
        self.result.seconds = time.monotonic() - self.started
        return self.result

    async def _list_objects(self) -> list[str]:
        """Every object but compaction's own, and one shard of those (``LISTING_SHARDS``)."""
        turn = self.epoch // MAX_COMPACTOR_SHARDS  # epochs step by MAX_COMPACTOR_SHARDS
        shard = f"{COMPACTED_PREFIX}{turn % LISTING_SHARDS}"
        keys: list[str] = []
        for top in await self.objects.list_tops():
            if top == COMPACTED_PREFIX:
                keys += await self.objects.list(shard)
            elif top.endswith("/"):
                keys += await self.objects.list(top)
            else:
                keys.append(top)
        return keys

    async def _partition(self, topic: TopicRecord, p: PartitionRecord) -> None:
        ranges: list[StreamRange] = await self._md(self.metadata.stream_ranges, p.stream_id)
        self.result.streams += 1
        if self.shard != 0:  # retention and compacted topics are shard 0's
            if "compact" not in self._config(topic, "cleanup.policy"):
                lso = p.log_start_offset
                live = [r for r in ranges if r.end_offset > lso]
                self._candidates.append((f"{topic.name}-{p.partition}", p.stream_id, live))
            return
        lso = await self._retention(topic, p, ranges)
        below = [r for r in ranges if r.end_offset <= lso]
        for chunk in _chunks(below, MAX_SWAP_RANGES):
            await self._md(
                self.metadata.replace_stream_ranges,
                self.epoch,
                p.stream_id,
                list(chunk),
                [],
                None,
                0,
                self.now_ms(),
            )
            self.result.ranges_dropped += len(chunk)
            self._swapped_out.update(r.object_key for r in chunk)
        ranges = [r for r in ranges if r.end_offset > lso]
        policy = self._config(topic, "cleanup.policy")
        if "compact" in policy:
            await self._compact_keys(topic, p, ranges)
        else:  # merged after every partition is planned (_merge_planned)
            self._candidates.append((f"{topic.name}-{p.partition}", p.stream_id, ranges))

    async def _merge_planned(self) -> None:
        """Every partition's merges, cut at read windows (``read_windows``) and run window by
        window, oldest first: the ranges one WAL object holds for many partitions are read
        together, the object with one GET."""
        small = self.config.target_object_bytes // 2
        windows = read_windows(
            (r for _, _, ranges in self._candidates for r in ranges
             if r.size < small and self.mine(r)),
            self.config.read_buffer_bytes,
            lambda key: (object_created_ms(key) or 0, key),
        )
        planned: list[tuple[str, int, list[StreamRange]]] = []
        for label, stream_id, ranges in self._candidates:
            for run in self._merge_runs(ranges, windows):
                planned.append((label, stream_id, run))
                self.reader.plan(run)
        self._candidates = []
        last = max(windows.values(), default=-1) + 1  # runs of unshared objects go last

        def in_window_order(x: tuple[str, int, list[StreamRange]]) -> tuple[int, int, int]:
            window = min((windows.get(r.object_key, last) for r in x[2]), default=last)
            return window, object_created_ms(x[2][0].object_key) or 0, x[1]

        planned.sort(key=in_window_order)
        for i, (label, stream_id, run) in enumerate(planned):
            if self.out_of_budget() or not self.lease_valid():
                for _, _, rest in planned[i:]:
                    self.reader.unplan(rest)
                return
            try:
                await self._rewrite(stream_id, run, None)
            except ConcurrentUpdate as exc:
                self.result.conflicts += 1
                log.info("%s: %s; retried next run", label, exc)
            except UnknownTopic:
                continue

    async def _retention(
        self, topic: TopicRecord, p: PartitionRecord, ranges: list[StreamRange]
    ) -> int:
        """Raise the log start offset per retention.ms / retention.bytes; return it."""
        lso = p.log_start_offset
        if "delete" not in self._config(topic, "cleanup.policy"):
            return lso
        live = [r for r in ranges if r.end_offset > lso]
        new = lso
        retention_ms = self._config(topic, "retention.ms")
        if retention_ms >= 0:
            cutoff = self.now_ms() - retention_ms
            for r in live:
                if r.max_timestamp >= cutoff:
                    break
                new = max(new, r.end_offset)
        retention_bytes = self._config(topic, "retention.bytes")
        if retention_bytes >= 0:
            total = sum(r.size for r in live)
            for r in live:  # like Kafka: drop oldest while what is left still exceeds it
                if total - r.size < retention_bytes:
                    break
                total -= r.size
                new = max(new, r.end_offset)
        if new > lso:
            rec = await self._md(self.metadata.set_log_start_offset, topic.name, p.partition, new)
            self.result.retention_moves.append((topic.name, p.partition, rec.log_start_offset))
            log.info("%s-%d: retention moved the log start to %d", topic.name, p.partition, new)
            return int(rec.log_start_offset)
        return lso

    def _merge_runs(
        self, ranges: Sequence[StreamRange], windows: dict[str, int] | None = None
    ) -> list[list[StreamRange]]:
        """Consecutive small ranges grouped up to the target size (two or more each), none
        across two read windows (``windows``: shared object -> window)."""
        target = self.config.target_object_bytes
        windows = windows or {}
        runs: list[list[StreamRange]] = []
        run: list[StreamRange] = []
        size = 0
        run_window: int | None = None
        for r in ranges:
            contiguous = not run or run[-1].end_offset == r.start_offset
            full = size + r.size > target or len(run) >= MAX_SWAP_RANGES
            window = windows.get(r.object_key)
            crosses = window is not None and run_window is not None and window != run_window
            big = r.size >= target // 2 or not self.mine(r)  # another shard's: a cut too
            if big or not contiguous or full or crosses:
                if len(run) > 1:
                    runs.append(run)
                run, size, run_window = [], 0, None
                if big:
                    continue
            run.append(r)
            size += r.size
            if run_window is None:
                run_window = window
        if len(run) > 1:
            runs.append(run)
        return runs

    async def _rewrite(
        self,
        stream_id: int,
        run: list[StreamRange],
        batches: list[tuple[int, int, int, bytes]] | None,
    ) -> None:
        """Write ``run``'s batches (as stored, or ``batches`` when filtered) as one object
        and swap it in."""
        if batches is None:
            batches = []
            for data in await self.reader.read_run(run):
                view = memoryview(data)
                batches += [
                    (h.base_offset, h.last_offset + 1, h.max_timestamp, bytes(view[p : p + h.size]))
                    for p, h in iter_headers(view)
                ]
        if not batches:
            return
        self._seq += 1
        name = f"{self.epoch}-{stream_id}-{time.time_ns()}-{self._seq}.sso"
        key = f"{COMPACTED_PREFIX}{stream_id}/{name}"

        async def swap(w: WrittenObject) -> None:  # compare-and-set of the stream's ranges
            await self._md(self.metadata.replace_stream_ranges, self.epoch, stream_id, run,
                           w.ranges, w.key, w.size, self.now_ms())  # fmt: skip

        # coverage stays exactly the old ranges' (offsets never move)
        coverage = {stream_id: (run[0].start_offset, run[-1].end_offset)}
        writer = ObjectWriter(self.objects, self.config.block_bytes)
        prepared = writer.prepare(
            key, [(stream_id, batches)], coverage=coverage
        )
        size = prepared.written.size
        try:
            await writer.put_and_commit(prepared, swap)
        except Exception:
            # Refused, or the outcome is unknown (an error after the swap applied, a lost
            # answer): settle it. Committed: the swap landed and readers need the object.
            # Aborted: it never will, so the object is an orphan, deleted at once (no reader
            # can know its key).
            if not await self._md(self.metadata.abort_object_commit, key):
                await self.objects.delete(key)
                raise
            log.info("swap of %s landed although it failed: kept", key)
        self.result.swaps += 1
        self.result.ranges_merged += len(run)
        self._swapped_out.update(r.object_key for r in run)
        self.result.bytes_written += size

    # -- cleanup.policy=compact -----------------------------------------------------------
    async def _compact_keys(
        self, topic: TopicRecord, p: PartitionRecord, ranges: list[StreamRange]
    ) -> None:
        """Keep the latest record per key in the cleanable ranges (``cleanable_ranges``: the
        topic's compaction lags and dirty ratio decide); drop tombstones older than
        delete.retention.ms."""
        cleanable = cleanable_ranges(
            ranges,
            self.now_ms(),
            self._config(topic, "min.compaction.lag.ms"),
            self._config(topic, "max.compaction.lag.ms"),
            self._config(topic, "min.cleanable.dirty.ratio"),
        )
        if not cleanable:
            return
        total = sum(r.size for r in ranges)
        if (
            self.reader.bytes_read + total > self.config.max_bytes_per_run
            or total > self.config.max_compacted_partition_bytes
        ):
            # the key map needs the whole partition in one run, in memory
            log.warning(
                "%s-%d: %d bytes exceed this run's byte budget or "
                "COMPACTION_MAX_COMPACTED_PARTITION_BYTES; not compacted",
                topic.name,
                p.partition,
                total,
            )
            return
        delete_retention = self._config(topic, "delete.retention.ms")
        horizon = self.now_ms() - delete_retention
        stored: dict[int, list[tuple[BatchHeader, bytes]]] = {}
        latest: dict[bytes, int] = {}
        last_batch_of_producer: dict[int, int] = {}  # producer id -> base offset
        for r, data in zip(ranges, await self.reader.read_run(ranges), strict=True):
            view = memoryview(data)
            stored[r.start_offset] = [
                (h, bytes(view[pos : pos + h.size])) for pos, h in iter_headers(view)
            ]
        everything = [b for r in ranges for b in stored[r.start_offset]]
        aborted, open_txn = _transaction_outcomes(everything)
        for h, raw in everything:
            if h.producer_id >= 0:
                last_batch_of_producer[h.producer_id] = h.base_offset
            if h.is_control or h.base_offset in aborted or h.base_offset in open_txn:
                continue  # aborted or undecided records never supersede anything
            try:
                records = await asyncio.to_thread(records_of, h, raw)
            except TooLarge:
                continue  # its keys supersede nothing: older records with them are kept
            for rec in records:
                if rec.key is not None:
                    latest[rec.key] = rec.offset
        keep_last = set(last_batch_of_producer.values())
        runs = self._merge_runs(cleanable) or []
        merged = {r.start_offset for run in runs for r in run}
        runs += [[r] for r in cleanable if r.start_offset not in merged]
        for run in sorted(runs, key=lambda x: x[0].start_offset):
            if not self.lease_valid():
                return
            out: list[tuple[int, int, int, bytes]] = []
            removed = 0
            for r in run:
                for h, raw in stored[r.start_offset]:
                    batch: bytes | None
                    if h.base_offset in open_txn:
                        batch, n = raw, 0  # its transaction is undecided: not cleanable yet
                    elif h.base_offset in aborted:
                        batch, n = _drop_aborted(h, raw, h.base_offset in keep_last)
                    else:
                        batch, n = await asyncio.to_thread(
                            _filter_batch, h, raw, latest, horizon, h.base_offset in keep_last
                        )
                    removed += n
                    if batch is not None:
                        out.append((h.base_offset, h.last_offset + 1, h.max_timestamp, batch))
            if removed == 0 and len(run) == 1 and compacted_output(run[0]):
                continue  # already clean and already alone: nothing to gain
            if not out:  # everything in it is superseded: keep its last batch (offsets stay)
                h, raw = stored[run[-1].start_offset][-1]
                out = [(h.base_offset, h.last_offset + 1, h.max_timestamp, raw)]
            await self._rewrite(p.stream_id, run, out)
            self.result.records_removed += removed

    # -- deleting objects ----------------------------------------------------------------
    async def _collect_garbage(self, listed: list[str]) -> None:
        live: set[str] = set()
        for topic in await self._md(self.metadata.topics):
            for p in topic.partitions:
                live.update(
                    r.object_key for r in await self._md(self.metadata.stream_ranges, p.stream_id)
                )
        now = self.now_ms()
        released = await self._md(self.metadata.released_objects)
        unreferenced = [k for k in listed if k not in live]
        committed = await self._md(self.metadata.committed_objects, unreferenced)
        relive = [k for k in released if k in live]
        if relive:  # committed after an earlier run looked: not garbage
            await self._md(self.metadata.unmark_released, relive)
        # Swaps mark nothing: the objects they emptied are marked here, in the same run, so
        # their grace period starts seconds after the swap. Only those (committed long ago,
        # never committed again) may go in this run too; an object found unreferenced only by
        # the listing may be a commit landing right now (it was not in ``live`` when read):
        # it goes in a later run, after the ``relive`` check above had its chance.
        fresh = [k for k in unreferenced if k in committed and k not in released]
        if fresh:
            await self._md(self.metadata.mark_released, fresh, now)
            self.result.objects_released += len(fresh)
            released = {**released, **{k: now for k in fresh if k in self._swapped_out}}
        doomed = [
            k
            for k, since in released.items()
            if k not in live and now - since >= self.config.replaced_grace_ms
        ]
        orphans = [
            k
            for k in unreferenced
            if k not in committed
            and (created := object_created_ms(k)) is not None
            and now - created >= self.config.orphan_grace_ms
        ]
        if not self.lease_valid():
            return
        if doomed:
            # metadata first: a crash before the object delete leaves an orphan, swept later
            await self._md(self.metadata.forget_objects, doomed)
            for k in doomed:  # listed or not (a shard not listed this run): gone if missing
                await self.objects.delete(k)
            self.result.objects_deleted += len(doomed)
        for k in orphans:
            await self.objects.delete(k)
            log.info("deleted orphan object %s (written, never committed)", k)
        self.result.orphans_deleted += len(orphans)


def compacted_output(r: StreamRange) -> bool:
    """A range written by this compactor (``_rewrite``'s per-stream objects): already clean."""
    return r.object_key.startswith(COMPACTED_PREFIX)


def cleanable_ranges(
    ranges: Sequence[StreamRange], now_ms: int, min_lag_ms: int, max_lag_ms: int, ratio: float
) -> list[StreamRange]:
    """The ranges a compacted partition's cleaning may rewrite now (empty: not now), as
    Kafka's LogCleanerManager decides it from the topic's configs:

    - the newest range waits, like Kafka's active segment, unless its records are older than
      ``max.compaction.lag.ms`` (Kafka rolls the segment then);
    - ranges with records younger than ``min.compaction.lag.ms`` are not cleanable, nor any
      after them;
    - it runs when a cleanable dirty range (not yet compacted) is overdue by
      ``max.compaction.lag.ms``, or when dirty bytes reach ``min.cleanable.dirty.ratio`` of
      the cleanable bytes.

    A range's age is its newest record's timestamp: a range spans one upload interval, so a
    record is compacted within max.compaction.lag.ms plus that and one compaction interval."""

    def overdue(r: StreamRange) -> bool:
        return r.max_timestamp >= 0 and now_ms - r.max_timestamp > max_lag_ms

    candidates = list(ranges) if ranges and overdue(ranges[-1]) else list(ranges[:-1])
    cleanable: list[StreamRange] = []
    for r in candidates:
        if now_ms - r.max_timestamp < min_lag_ms:
            break
        cleanable.append(r)
    dirty = [r for r in cleanable if not compacted_output(r)]
    if not dirty:
        return []
    if any(overdue(r) for r in dirty):
        return cleanable
    dirty_bytes = sum(r.size for r in dirty)
    total = sum(r.size for r in cleanable)
    return cleanable if total and dirty_bytes / total >= ratio else []


def _transaction_outcomes(
    batches: Sequence[tuple[BatchHeader, bytes]],
) -> tuple[set[int], set[int]]:
    """Base offsets of transactional data batches whose transaction was aborted, and of
    those whose transaction has no marker yet (in offset order, per producer id)."""
    pending: dict[int, list[int]] = {}
    aborted: set[int] = set()
    for h, raw in batches:
        if not h.is_transactional:
            continue
        if h.is_control:
            marker = marker_type(h, raw)
            done = pending.pop(h.producer_id, [])
            if marker == ABORT:
                aborted.update(done)
        else:
            pending.setdefault(h.producer_id, []).append(h.base_offset)
    return aborted, {b for bases in pending.values() for b in bases}


def _drop_aborted(h: BatchHeader, raw: bytes, producer_last: bool) -> tuple[bytes | None, int]:
    """Records of aborted transactions go (as in Kafka's cleaner); a producer's last batch
    stays as an empty batch."""
    if producer_last:
        return (rebuild_batch(h, raw, []) if h.record_count else raw), h.record_count
    return None, h.record_count


def _filter_batch(
    h: BatchHeader,
    raw: bytes,
    latest: dict[bytes, int],
    horizon_ms: int,
    producer_last: bool,
) -> tuple[bytes | None, int]:
    """(the batch to keep or None, records removed). Control batches stay as they are; a
    producer's last batch is kept even when emptied (its sequence state)."""
    if h.is_control:
        return raw, 0
    try:
        records = records_of(h, raw)
    except TooLarge:
        return raw, 0  # beyond the memory a rewrite may take: kept whole
    kept: list[StoredRecord] = [
        rec
        for rec in records
        if rec.key is None  # keyless records cannot be compacted; Kafka refuses them
        or (
            latest.get(rec.key) == rec.offset
            and not (rec.is_tombstone and rec.timestamp < horizon_ms)
        )
    ]
    removed = len(records) - len(kept)
    if removed == 0:
        return raw, 0
    if not kept and not producer_last:
        return None, removed
    return rebuild_batch(h, raw, kept), removed


def _chunks(seq: Sequence[StreamRange], n: int) -> list[list[StreamRange]]:
    return [list(seq[i : i + n]) for i in range(0, len(seq), n)]


async def compact(
    metadata: MetadataStore,
    objects: ObjectStore,
    config: CompactionConfig | None = None,
    *,
    owner: str = "compactor",
    now_ms: int | None = None,
) -> CompactionResult:
    """One compaction run (see the module docstring). Safe to call concurrently from any
    number of processes: one holds the lease, the others return ``skipped``."""
    return await _Run(metadata, objects, config or CompactionConfig(), owner, now_ms).run()
