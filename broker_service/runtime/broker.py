"""The broker: composes an ObjectStore, a MetadataStore and a WAL into a serving node.

It never branches on mode: embedded or cloud is decided by what it is handed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from broker_service.cluster.membership import Membership
from broker_service.config import BrokerConfig
from broker_service.kafka.groups.coordinator import GroupCoordinator
from broker_service.kafka.log_store import StreamStore
from broker_service.kafka.partition import PartitionLog
from broker_service.kafka.topic_config import (
    TOPIC_CONFIG_DEFAULTS,
    validate_configs,
    validate_topic_name,
)
from broker_service.kafka.txn.coordinator import TransactionCoordinator
from broker_service.metadata.errors import ConcurrentUpdate, UnknownTopic
from broker_service.metadata.ports import MetadataPorts
from broker_service.metadata.records import DRAINING, BrokerRecord, PartitionRecord, TopicRecord
from broker_service.metadata.store import MetadataStore
from broker_service.metrics import BrokerMetrics
from broker_service.security.manager import SecurityManager
from broker_service.stream.objectstore.base import ObjectStore
from broker_service.stream.wal import Wal, read_wal_dir

if TYPE_CHECKING:
    from broker_service.runtime.metrics_service import MetricsService
    from broker_service.runtime.timers import ControlLoops

log = logging.getLogger(__name__)


@dataclass(eq=False)
class TopicState:
    record: TopicRecord
    logs: list[PartitionLog] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def topic_id(self) -> uuid.UUID:
        return self.record.topic_id

    def max_message_bytes(self, broker_default: int) -> int:
        return int(self.record.configs.get("max.message.bytes", broker_default))


class NotLeader(Exception):
    pass


class ProducerIdAllocator:
    """Hands out producer ids from blocks reserved in the metadata store."""

    BLOCK = 1000

    def __init__(self, metadata: MetadataStore) -> None:
        self._metadata = metadata
        self._next = 0
        self._end = 0

    def next(self) -> int:
        if self._next >= self._end:
            self._next = self._metadata.allocate_producer_ids(self.BLOCK)
            self._end = self._next + self.BLOCK
        pid = self._next
        self._next += 1
        return pid


class Broker:
    def __init__(
        self,
        config: BrokerConfig,
        metadata: MetadataStore,
        object_store: ObjectStore,
        wal: Wal,
        metrics: BrokerMetrics | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics or BrokerMetrics(config.node_id)
        self.metadata = metadata
        # every metadata call from the event loop goes through these (their own threads)
        self.ports = MetadataPorts(metadata, workers=config.metadata_threads)
        self.object_store = object_store
        self.wal = wal
        self.cluster_id = ""
        self.me: BrokerRecord | None = None
        self.store: StreamStore | None = None
        self.topics: dict[str, TopicState] = {}
        self.topics_by_id: dict[uuid.UUID, TopicState] = {}
        self.producer_ids = ProducerIdAllocator(metadata)
        self.groups = GroupCoordinator(
            metadata,
            initial_rebalance_delay_ms=config.group_initial_rebalance_delay_ms,
            consumer_session_timeout_ms=config.group_consumer_session_timeout_ms,
        )
        self.txn = TransactionCoordinator(self)
        self.security = SecurityManager(config, metadata)
        self.fenced = False
        self.membership: Membership | None = None
        self.metrics_service: MetricsService | None = None
        self.control_loops: ControlLoops | None = None
        self._refresh = asyncio.Event()
        self._sync_lock = asyncio.Lock()
        self._last_sync_started = 0.0
        self._refresh_task: asyncio.Task[None] | None = None
        self._background: list[asyncio.Task[None]] = []

    @property
    def node_id(self) -> int:
        return self.config.node_id

    async def start(self) -> None:
        cfg = self.config
        host, port = cfg.advertised
        self.cluster_id = await self.ports.brokers.cluster_id()
        self.me = await self.ports.brokers.register_broker(
            cfg.node_id, host, port, cfg.rack, cfg.lease_ms
        )
        await self.security.start(cfg.node_id)
        self.store = StreamStore(
            self.object_store,
            self.metadata,
            self.wal,
            cfg.node_id,
            self.me.epoch,
            log_cache_bytes=cfg.log_cache_bytes,
            block_cache_bytes=cfg.block_cache_bytes,
            upload_interval_ms=cfg.upload_interval_ms,
            upload_bytes=cfg.upload_bytes,
            block_bytes=cfg.object_block_bytes,
            on_fenced=self._on_fenced,
            snapshot_interval_ms=cfg.producer_snapshot_interval_ms,
        )
        for rec in await self.ports.topics.topics():
            self._load_topic(rec)
        for state in self.topics.values():
            for plog in state.logs:
                if plog.leader_id == cfg.node_id:
                    await self.store.load_producer_state(plog)
        self.wal.bind(cfg.node_id, self.me.epoch)
        self.wal.on_fatal = self._on_wal_fatal
        entries = await self.wal.open()
        replayed = self.store.replay(entries)
        if replayed:
            log.info("recovered %d WAL entries not yet in objects; uploading", replayed)
            await self.store.upload()
        self.store.start()
        self.groups.start()
        self.txn.start()
        self.membership = Membership(
            self.ports,
            cfg.node_id,
            self.me.epoch,
            cfg.lease_ms,
            on_fenced=self._on_fenced,
            on_cluster_change=self._refresh.set,
        )
        self.membership.start()
        from broker_service.runtime.metrics_service import MetricsService
        from broker_service.runtime.timers import ControlLoops

        self.metrics_service = MetricsService(self)
        await self.metrics_service.start()
        self.control_loops = ControlLoops(self)
        self.control_loops.start()
        self._refresh_task = asyncio.get_running_loop().create_task(self._refresh_loop())
        loop = asyncio.get_running_loop()
        if cfg.compaction_interval_ms:
            self._background.append(loop.create_task(self._compaction_loop()))
        if cfg.ranges_refresh_ms:
            self._background.append(loop.create_task(self._ranges_refresh_loop()))
        log.info(
            "broker %d (epoch %d) of cluster %s: %d topics",
            cfg.node_id,
            self.me.epoch,
            self.cluster_id,
            len(self.topics),
        )

    async def stop(self) -> None:
        if self._refresh_task is not None:
            self._refresh_task.cancel()
        for task in self._background:
            task.cancel()
        if self.membership is not None:
            self.membership.stop()
        if self.control_loops is not None:
            self.control_loops.stop()
        if self.metrics_service is not None:
            await self.metrics_service.stop()
        self.security.stop()
        self.groups.stop()
        self.txn.stop()
        if self.store is not None:
            await self.store.close()
        self.ports.close()
        self.metadata.close()

    def _on_fenced(self) -> None:
        self.fenced = True

    def may_acknowledge(self) -> bool:
        """Only while this broker's lease is surely its own (see cluster/membership.py)."""
        return not self.fenced and (self.membership is None or self.membership.lease_valid())

    def live_brokers(self) -> list[BrokerRecord]:
        live = self.membership.live if self.membership is not None else []
        if self.me is not None and all(b.broker_id != self.node_id for b in live):
            live = [*live, self.me]
        return sorted(live, key=lambda b: b.broker_id)

    def coordinator_for(self, key: str) -> BrokerRecord:
        """The broker coordinating a group or transactional id: a stable hash of the key
        over the live brokers, so every broker gives the same answer."""
        live = self.live_brokers()
        return live[zlib.crc32(key.encode()) % len(live)]

    def coordinates(self, key: str) -> bool:
        return self.coordinator_for(key).broker_id == self.node_id

    async def refresh_live(self) -> None:
        """Re-read the live brokers from the metadata store (our view lags by up to lease/3)."""
        if self.membership is not None:
            live = await self.ports.brokers.live_brokers(int(time.time() * 1000))
            if [b.broker_id for b in live] != [b.broker_id for b in self.membership.live]:
                self.membership.live = live
                self.request_refresh()

    async def is_live(self, broker_id: int) -> bool:
        """Whether a broker is live, asking the metadata store when our view lacks it."""
        if any(b.broker_id == broker_id for b in self.live_brokers()):
            return True
        await self.refresh_live()
        return any(b.broker_id == broker_id for b in self.live_brokers())

    async def learn_unknown_topics(self) -> None:
        """A client names a topic this broker has not loaded yet (created through another
        broker less than a refresh ago): wait for a re-read of the metadata store that began
        after the request arrived, rather than answer UNKNOWN_TOPIC_OR_PARTITION. Requests
        arriving together share one re-read, so bogus names cannot storm the store."""
        asked = time.monotonic()
        async with self._sync_lock:
            if self._last_sync_started >= asked:
                return
            await self._sync_metadata()

    def request_refresh(self) -> None:
        """A client reached us for a partition we think is elsewhere: re-read soon."""
        self._refresh.set()

    async def hand_over(self, topic: str, partition: int, target: int) -> None:
        """Graceful move of a partition this broker leads: stop accepting, make everything
        acknowledged committed, then hand over with leader_epoch + 1. No data is copied: the
        new leader reads the committed ranges."""
        plog = self.partition(topic, partition)
        if plog is None:
            raise UnknownTopic(f"{topic}-{partition}")
        if plog.leader_id != self.node_id:
            raise NotLeader(f"{topic}-{partition} is led by broker {plog.leader_id}")
        if target == self.node_id:
            return
        if not await self.is_live(target):
            raise ValueError(f"broker {target} is not a live broker")
        assert self.store is not None
        plog.moving = True
        try:
            deadline = asyncio.get_running_loop().time() + 10
            while plog.high_watermark < plog.next_offset:  # in-flight batches become durable
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError("in-flight writes did not become durable")
                await asyncio.sleep(0.001)
            stalls = 0
            while plog.committed_end < plog.high_watermark:  # file WAL: upload what is left
                if await self.store.upload():
                    continue
                # nothing to upload yet durable data uncommitted: say what we see, retry a
                # little (seen once in CI, not reproduced), then give up the move
                stalls += 1
                log.warning(
                    "%s-%d: hand-over upload found nothing: committed %d, high watermark %d, "
                    "next %d, %d cached batches from %d",
                    topic,
                    partition,
                    plog.committed_end,
                    plog.high_watermark,
                    plog.next_offset,
                    len(plog.cache),
                    plog.cache_start(),
                )
                if stalls > 20:
                    raise RuntimeError("acknowledged data could not be committed")
                await asyncio.sleep(0.05)
            # the new leader starts from this snapshot: no batches to replay
            await self.store.save_producer_snapshots(force=True, only=plog)
            rec = await self.ports.topics.move_partition(
                topic,
                partition,
                self.node_id,
                plog.leader_epoch,
                target,
            )
        finally:
            plog.moving = False
        await self._leadership_changed(plog, rec)

    async def drain(self) -> int:
        """Graceful shutdown in a cluster: become DRAINING (no new partitions, not a
        coordinator any more) and hand every partition led here to the least-loaded live
        broker, so clients move at once instead of waiting for the lease to expire. Returns
        how many partitions moved; bounded by ``drain_timeout_ms``."""
        if self.me is None or self.store is None:
            return 0
        now_ms = int(time.time() * 1000)
        others = [
            b.broker_id
            for b in await self.ports.brokers.live_brokers(now_ms)
            if b.broker_id != self.node_id
        ]
        led = [p for s in self.topics.values() for p in s.logs if p.leader_id == self.node_id]
        if not others:
            return 0
        await self.ports.brokers.set_broker_state(self.node_id, self.me.epoch, DRAINING)
        if self.membership is not None:
            self.membership.live = [b for b in self.membership.live if b.broker_id in others]
        load = dict.fromkeys(others, 0)
        for s in self.topics.values():
            for p in s.logs:
                if p.leader_id in load:
                    load[p.leader_id] += 1
        moved = 0
        deadline = time.monotonic() + self.config.drain_timeout_ms / 1000
        log.info("draining: handing %d partitions to brokers %s", len(led), others)
        for plog in led:
            if time.monotonic() > deadline:
                log.warning("drain timed out; %d partitions left to recovery", len(led) - moved)
                break
            target = min(others, key=lambda b: (load[b], b))
            try:
                await self.hand_over(plog.topic, plog.partition, target)
            except Exception as exc:  # left to the lease-expiry recovery
                log.warning("%s-%d: hand-over failed: %s", plog.topic, plog.partition, exc)
                continue
            load[target] += 1
            moved += 1
        log.info("drained: %d partitions handed over", moved)
        return moved

    def controller_id(self) -> int:
        """No broker is special (every one runs the recovery check); clients still want a
        controller id, so report the lowest live one, the same on every broker."""
        return self.live_brokers()[0].broker_id

    # -- following the metadata store: topics and leaders changed by other brokers -------
    async def _refresh_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._refresh.wait(), 0.5)
            except TimeoutError:
                pass
            self._refresh.clear()
            try:
                await self.sync_metadata()
            except Exception:
                log.exception("metadata refresh failed; will retry")

    async def sync_metadata(self) -> None:
        async with self._sync_lock:  # one reconciliation at a time: they edit shared state
            await self._sync_metadata()

    async def _sync_metadata(self) -> None:
        self._last_sync_started = time.monotonic()
        self.groups.retain(self.coordinates)
        if not all(self.security.knows(b) for b in self.live_brokers()):
            await self.security.refresh_endpoints()  # a new broker: learn its listeners
        records = {t.name: t for t in await self.ports.topics.topics()}
        for name in [n for n in self.topics if n not in records]:
            self._forget_topic(name)
        for name, rec in records.items():
            state = self.topics.get(name)
            if state is None or state.topic_id != rec.topic_id:
                if state is not None:
                    self._forget_topic(name)
                assert self.store is not None
                for plog in self._load_topic(rec).logs:
                    if plog.leader_id == self.node_id:  # moved here before we saw the topic
                        await self.store.load_producer_state(plog)
                continue
            assert self.store is not None
            for p in rec.partitions[len(state.logs) :]:
                state.logs.append(self.store.add_partition(p, ranges=[]))
            state.record = rec
            for p, plog in zip(rec.partitions, state.logs, strict=False):
                if p.leader_id != plog.leader_id or p.leader_epoch != plog.leader_epoch:
                    await self._leadership_changed(plog, p)
                elif p.log_start_offset > plog.log_start_offset:
                    # retention (the compactor) or DeleteRecords on another broker moved it
                    plog.log_start_offset = min(p.log_start_offset, plog.high_watermark)

    # -- compaction: the same function the compaction Lambda calls --------------------------
    async def _compaction_loop(self) -> None:
        from broker_service.control.compaction import CompactionConfig, compact

        interval = self.config.compaction_interval_ms / 1000
        while True:
            await asyncio.sleep(interval * random.uniform(0.8, 1.2))  # brokers drift apart
            if self.fenced:
                return
            try:
                result = await compact(
                    self.metadata,
                    self.object_store,
                    CompactionConfig(),
                    owner=f"broker-{self.node_id}",
                )
                if result.skipped is None:
                    log.info("compaction: %s", result)
            except Exception:
                log.exception("compaction run failed; the next run resumes")

    async def _ranges_refresh_loop(self) -> None:
        interval = self.config.ranges_refresh_ms / 1000
        while True:
            await asyncio.sleep(interval)
            assert self.store is not None
            for plog in list(self.store.logs.values()):
                if plog.leader_id == self.node_id and not plog.deleted:
                    try:
                        await self.store.refresh_ranges(plog)
                    except Exception:
                        log.exception(
                            "refreshing the ranges of %s-%d failed", plog.topic, plog.partition
                        )

    async def delete_records(self, plog: PartitionLog, offset: int) -> int:
        """DeleteRecords: raise the log start offset (durably, in metadata) to ``offset``
        (-1: the high watermark); returns the new low watermark. The compactor drops the
        ranges below it and deletes their objects after the grace period."""
        target = plog.high_watermark if offset == -1 else offset
        rec = await self.ports.topics.set_log_start_offset(plog.topic, plog.partition, target)
        plog.log_start_offset = max(plog.log_start_offset, rec.log_start_offset)
        return plog.log_start_offset

    async def _leadership_changed(self, plog: PartitionLog, rec: PartitionRecord) -> None:
        assert self.store is not None
        previous = plog.leader_id
        if rec.leader_id != self.node_id:
            if previous == self.node_id:
                log.info("%s-%d: now led by broker %d", plog.topic, plog.partition, rec.leader_id)
            plog.leader_id, plog.leader_epoch = rec.leader_id, rec.leader_epoch
            plog.cache.clear()
            plog.cache_bases.clear()
            plog.cache_bytes = 0
            plog.wake()
            return
        ranges = await self.ports.streams.stream_ranges(plog.stream_id)
        plog.cache.clear()
        plog.cache_bases.clear()
        plog.cache_bytes = 0
        plog.log_start_offset = rec.log_start_offset
        plog.load_ranges(ranges)
        await self.store.load_producer_state(plog)
        recovered = await self._recover_file_wal(plog, previous)
        plog.leader_epoch = rec.leader_epoch
        plog.leader_id = self.node_id
        log.info(
            "%s-%d: now led here (epoch %d) from offset %d%s",
            plog.topic,
            plog.partition,
            rec.leader_epoch,
            plog.next_offset,
            f", {recovered} batches recovered from broker {previous}'s WAL" if recovered else "",
        )

    async def _recover_file_wal(self, plog: PartitionLog, previous: int) -> int:
        """With a file WAL on a shared disk, the previous leader's acknowledged batches that
        never reached an object are in its WAL: commit them before serving the partition."""
        assert self.store is not None
        if previous < 0 or previous == self.node_id or self.config.wal != "file":
            return 0
        wal_dir = self.config.data_dir / "wal" / f"broker-{previous}"
        if not wal_dir.exists():
            return 0
        entries = [
            e
            for e in await asyncio.to_thread(read_wal_dir, wal_dir)
            if e.stream_id == plog.stream_id
        ]
        plog.leader_id = self.node_id  # replay and upload only touch partitions led here
        n = self.store.replay(entries)
        if n:
            await self.store.upload()
        return n

    def _forget_topic(self, name: str) -> None:
        state = self.topics.pop(name, None)
        if state is None:
            return
        self.topics_by_id.pop(state.topic_id, None)
        assert self.store is not None
        for plog in state.logs:
            self.store.remove_partition(plog.stream_id)
        self.groups.forget_topic(name)

    def _on_wal_fatal(self, exc: BaseException) -> None:
        log.error("the WAL cannot make data durable any more (%s); this broker stops", exc)
        self.fenced = True

    def _load_topic(self, rec: TopicRecord, new: bool = False) -> TopicState:
        assert self.store is not None
        state = TopicState(
            rec, [self.store.add_partition(p, ranges=[] if new else None) for p in rec.partitions]
        )
        self.topics[rec.name] = state
        self.topics_by_id[rec.topic_id] = state
        return state

    # -- topic lifecycle (raise InvalidTopic / InvalidConfig / TopicAlreadyExists) ---------
    # Metadata calls run in a worker thread: on DynamoDB each is a network round trip, and
    # the event loop keeps serving everyone else meanwhile.
    async def create_topic(
        self, name: str, partitions: int, configs: dict[str, str | None]
    ) -> TopicState:
        validate_topic_name(name)
        checked = validate_configs(configs)
        rec = await self.ports.topics.create_topic(name, partitions, checked, self.node_id)
        rec = await self._spread_leaders(rec, 0)
        log.info(
            "created topic %s with %d partitions, led by brokers %s",
            name,
            partitions,
            sorted({p.leader_id for p in rec.partitions}),
        )
        return self._load_topic(rec, new=True)

    async def _spread_leaders(self, rec: TopicRecord, first: int) -> TopicRecord:
        """New partitions (from index ``first``) are created led by this broker; before
        anyone serves them, hand them round-robin to the live brokers, starting here, so a
        topic's load spreads over the cluster. They hold no data yet: nothing moves."""
        now_ms = int(time.time() * 1000)
        live = [b.broker_id for b in await self.ports.brokers.live_brokers(now_ms)]
        if len(live) < 2 or self.node_id not in live:
            return rec
        start = live.index(self.node_id)
        order = live[start:] + live[:start]
        moved = False
        for p in rec.partitions[first:]:
            target = order[(p.partition - first) % len(order)]
            if target == self.node_id or p.leader_id != self.node_id:
                continue
            try:
                await self.ports.topics.move_partition(
                    rec.name,
                    p.partition,
                    self.node_id,
                    p.leader_epoch,
                    target,
                )
                moved = True
            except ConcurrentUpdate:
                continue
        if not moved:
            return rec
        fresh = await self.ports.topics.topic(rec.name)
        return fresh if fresh is not None else rec

    async def delete_topic(self, name: str) -> TopicRecord:
        rec = await self.ports.topics.delete_topic(name)
        self._forget_topic(name)
        log.info("deleted topic %s", name)
        return rec

    async def add_partitions(self, name: str, total: int) -> TopicState:
        before = len(self.topics[name].logs) if name in self.topics else 0
        rec = await self.ports.topics.add_partitions(name, total, self.node_id)
        rec = await self._spread_leaders(rec, before)
        assert self.store is not None
        state = self.topics[name]
        for p in rec.partitions[len(state.logs) :]:
            state.logs.append(self.store.add_partition(p, ranges=[]))
        state.record = rec
        log.info("topic %s now has %d partitions", name, total)
        return state

    def topic_defaults(self) -> dict[str, str]:
        """Topic config defaults as this broker applies them."""
        return {**TOPIC_CONFIG_DEFAULTS, "max.message.bytes": str(self.config.message_max_bytes)}

    def partition(self, topic: str, index: int) -> PartitionLog | None:
        state = self.topics.get(topic)
        if state is None or not 0 <= index < len(state.logs):
            return None
        return state.logs[index]
