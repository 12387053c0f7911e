"""The composition root: builds a broker's parts from an ObjectStore, a MetadataStore and a
WAL, starts them in order, runs their timers, and stops them.

It never branches on mode: embedded or cloud is decided by what it is handed. The handlers
(api/) see it through ``api.services.BrokerServices``; what they ask is answered by the parts:
topics (kafka/topics.py), leadership (kafka/leadership.py), the log (kafka/log_store.py),
membership and coordinator placement (cluster/membership.py), groups, transactions, security.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from broker_service.api import reassignment
from broker_service.cluster.membership import Membership
from broker_service.cluster.rpc import FORWARDED_BY, BrokerRpc
from broker_service.config import BrokerConfig
from broker_service.control.compaction import compact
from broker_service.kafka.configs import ConfigView, refresh_cluster_configs, static_broker_values
from broker_service.kafka.groups import offsets_topic
from broker_service.kafka.groups.coordinator import GroupCoordinator
from broker_service.kafka.leadership import Leadership, NotLeader
from broker_service.kafka.log_store import AppendRefused, StreamStore
from broker_service.kafka.partition import PartitionLog
from broker_service.kafka.producer_ids import ProducerIdAllocator
from broker_service.kafka.replicas import ReplicaReads
from broker_service.kafka.topics import Topics, TopicState
from broker_service.kafka.txn.coordinator import TransactionCoordinator
from broker_service.kafka.zone_forward import ZoneForwarder
from broker_service.metadata.errors import TopicAlreadyExists
from broker_service.metadata.ports import MetadataPorts
from broker_service.metadata.records import BrokerRecord, TopicRecord
from broker_service.metadata.store import MetadataStore
from broker_service.metrics import BrokerMetrics
from broker_service.protocol.record_batch import validate_batches
from broker_service.runtime.control_loops import ControlLoops
from broker_service.runtime.metrics_service import MetricsService
from broker_service.runtime.timers import Timers
from broker_service.security.manager import SecurityManager
from broker_service.stream.objectstore.base import ObjectStore
from broker_service.stream.wal import Wal

log = logging.getLogger(__name__)


def _retrieved(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


__all__ = ["Broker", "NotLeader", "TopicState"]


class Broker:
    def __init__(
        self,
        config: BrokerConfig,
        metadata: MetadataStore,
        object_store: ObjectStore,
        wal: Wal,
        metrics: BrokerMetrics | None = None,
        ports: MetadataPorts | None = None,
    ) -> None:
        self.config = config
        # every metadata call from the event loop goes through these (threads of their own)
        self.ports = ports or MetadataPorts(metadata, workers=config.metadata_threads)
        self.metrics = metrics or BrokerMetrics(config.node_id)
        self.metadata = metadata
        self.object_store = object_store
        self.wal = wal
        wal.stages = self.metrics.stages  # the WAL's stages of a produce (metrics/stages.py)
        self.cluster_id = ""
        self._compaction_turn = 0  # the compactor shard the next timer run takes
        self.me: BrokerRecord | None = None
        self.store: StreamStore | None = None
        self.producer_ids = ProducerIdAllocator(metadata)
        self.configs = ConfigView(static_broker_values(config))
        self.groups = GroupCoordinator(
            self.ports,
            initial_rebalance_delay_ms=config.group_initial_rebalance_delay_ms,
            consumer_session_timeout_ms=config.group_consumer_session_timeout_ms,
        )
        self.groups.mirror = self._mirror_group
        self.groups.partition_counts = lambda: {n: len(t.logs) for n, t in self.topics.items()}
        self.txn = TransactionCoordinator(self)
        self.security = SecurityManager(config, self.ports)
        self._fenced = False
        self.membership: Membership | None = None
        self._topics: Topics | None = None
        self.leadership: Leadership | None = None
        self.metrics_service = MetricsService(self)
        self.control_loops = ControlLoops(self)
        self.timers = Timers()
        self._live_reread = 0.0  # when _learn_leaders last re-read the live brokers
        self.rpc = BrokerRpc(
            self._endpoint,
            self.security.inter_broker_security,
            f"{FORWARDED_BY}{config.node_id}",
            self.metrics.inter_broker,  # bytes by API: on AWS every one crosses an AZ
        )
        self.forwarder: ZoneForwarder | None = None
        self.replicas: ReplicaReads | None = None

    @property
    def node_id(self) -> int:
        return self.config.node_id

    # -- start and stop ------------------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.config
        host, port = cfg.advertised
        self.cluster_id = await self.ports.brokers.cluster_id()
        self.configs.static = static_broker_values(cfg, self.security.listeners)  # ports bound
        await refresh_cluster_configs(self.ports, self.configs)
        # only this broker alters its own (the node id names the resource): read once
        self.configs.own = await self.ports.topics.broker_configs(cfg.node_id)
        self.me = me = await self.ports.brokers.register_broker(
            cfg.node_id, host, port, cfg.rack, cfg.lease_ms
        )
        self.membership = membership = Membership(
            self.ports, me, cfg.lease_ms, self._on_fenced, self.request_refresh
        )
        starting = asyncio.ensure_future(self._renew_while_starting(membership))
        try:
            await self._start_parts(me)
        finally:
            starting.cancel()
        self._timers()
        self.timers.start()
        log.info(
            "broker %d (epoch %d) of cluster %s: %d topics",
            cfg.node_id,
            me.epoch,
            self.cluster_id,
            len(self.topic_registry.by_name),
        )

    async def _renew_while_starting(self, membership: Membership) -> None:
        """Loading the topics, ranges and producer states of what this broker leads can
        outlast the lease (a slow store, many partitions): keep renewing it meanwhile, or
        the other brokers fence this one before it serves anything."""
        while True:
            await asyncio.sleep(membership.renew_interval_s)
            try:
                await membership.renew()
            except Exception:
                log.warning("lease renewal while starting failed", exc_info=True)

    async def _start_parts(self, me: BrokerRecord) -> None:
        cfg = self.config
        membership = self.membership
        assert membership is not None
        await self.security.start(cfg.node_id)
        self.store = store = StreamStore(
            self.object_store,
            self.ports,
            self.wal,
            cfg.node_id,
            me.epoch,
            log_cache_bytes=cfg.log_cache_bytes,
            block_cache_bytes=cfg.block_cache_bytes,
            upload_interval_ms=cfg.upload_interval_ms,
            upload_bytes=cfg.upload_bytes,
            block_bytes=cfg.object_block_bytes,
            on_fenced=self._on_fenced,
            may_acknowledge=self.may_acknowledge,
            snapshot_interval_ms=cfg.producer_snapshot_interval_ms,
        )
        self.forwarder = ZoneForwarder(
            self.object_store,
            self.rpc,
            block_bytes=cfg.object_block_bytes,
            linger_ms=cfg.effective_zone_forward_linger_ms,
            max_group_bytes=cfg.zone_forward_max_bytes,
            on_not_leader=self.request_refresh,
            wal=self.wal,  # the object WAL carries forwarded batches in its own flushes
        )
        self.forwarder.bind(cfg.node_id, me.epoch)
        self.replicas = ReplicaReads(
            store, self.rpc, self.ports, on_not_leader=self.request_refresh
        )
        self.leadership = Leadership(
            self.ports,
            store,
            cfg.node_id,
            shared_wal_dir=cfg.data_dir / "wal" if cfg.wal == "file" else None,
            drain_timeout_ms=cfg.drain_timeout_ms,
            is_live=membership.is_live,
            topics=lambda: self.topic_registry,
            on_draining=membership.leaving,
        )
        self._topics = Topics(
            self.ports,
            store,
            cfg.node_id,
            live_ids=self._live_ids,
            on_leader_changed=self.leadership.changed,
            on_forget=self.groups.forget_topic,
            before_sync=self._before_sync,
            leaders_seen=self._learn_leaders,
        )
        await membership.refresh_live()
        await self._topics.load_all()
        self.wal.bind(cfg.node_id, me.epoch)
        self.wal.on_fatal = self._on_wal_fatal
        replayed = store.replay(await self.wal.open())
        if replayed:
            log.info("recovered %d WAL entries not yet in objects; uploading", replayed)
            try:
                await store.upload()
            except Exception as exc:  # e.g. a full disk: serve reads, the upload timer retries
                log.warning("uploading the recovered WAL entries failed (%s); will retry", exc)
        await self.groups.start()
        await self.metrics_service.start()

    def _timers(self) -> None:
        """Every background step of the broker, and how often it runs."""
        cfg, t = self.config, self.timers
        store, membership, topics = self.store, self.membership, self._topics
        assert store is not None and membership is not None and topics is not None
        t.every("lease renewal", membership.renew_interval_s, membership.renew, first_s=0)
        t.every("recovery check", membership.recover_interval_s, membership.check_others)
        t.every("metadata refresh", 0.5, topics.sync, wake=topics.refresh_wanted)
        t.every("upload", 0.05, store.upload_step)
        t.every("producer snapshots", 0.1, store.snapshot_step)
        t.every("group timeouts", 0.25, self.groups.expire_step)
        t.every("transaction timeouts", 1.0, self.txn.expiry_step)
        t.every("ACL and quota refresh", cfg.security_refresh_ms / 1000, self.security.refresh)
        t.every("metrics", cfg.metrics_interval_s, self.metrics_service.tick, aligned=True)
        t.every("compaction", cfg.compaction_interval_ms / 1000, self._compact, jitter=0.2,
                active=lambda: not self.fenced)  # fmt: skip
        t.every("range refresh", cfg.ranges_refresh_ms / 1000, self._refresh_ranges)
        controller = self.control_loops
        if cfg.auto_balance:
            t.every("balancer", cfg.balance_interval_s, controller.balance_step,
                    active=controller.acting)  # fmt: skip
        t.every("autoscaler", cfg.autoscaler_interval_s, controller.autoscale_step,
                active=controller.acting)  # fmt: skip

    async def stop(self) -> None:
        await self.timers.stop()
        if self.forwarder is not None:
            await self.forwarder.close()
        if self.replicas is not None:
            self.replicas.close()
        self.rpc.close()
        await self.metrics_service.stop()
        self.groups.stop()
        if self.store is not None:
            await self.store.close()
        await self._leave_cluster()
        self.ports.close()
        self.metadata.close()
        self.object_store.close()

    async def _leave_cluster(self) -> None:
        """A drained broker, its WAL flushed, fences its own registration as its stop's last
        step: as Kafka fences a broker when its controlled shutdown ends, the others stop
        listing it at their next look instead of a lease later (it was listed while it
        drained), and recovery moves at once anything it could not hand over. A restart
        registers again under the next epoch."""
        if self.leadership is None or self.leadership.drained_epoch is None:
            return
        try:
            await self.ports.brokers.fence_broker(self.node_id, self.leadership.drained_epoch)
            log.info("broker %d left the cluster (its registration fenced)", self.node_id)
        except Exception as exc:  # the lease runs out instead
            log.warning("could not fence this broker's registration on stop: %s", exc)

    async def drain(self) -> int:
        """Graceful shutdown in a cluster (SIGTERM): hand every partition to the others."""
        if self.me is None or self.leadership is None or self.membership is None:
            return 0
        moved = await self.leadership.drain(self.me)
        return moved

    # -- timer steps owned here ----------------------------------------------------------------
    async def _compact(self) -> None:
        """The same function the compaction Lambda calls. With COMPACTION_SHARDS > 1 the
        timer takes the shards in turn (a fixed shard would leave the others' objects
        unmerged where no other compactor runs)."""
        config = self.config.compaction
        if config.shards > 1:
            self._compaction_turn += 1
            config = config.model_copy(update={"shard": self._compaction_turn % config.shards})
        result = await compact(
            self.metadata, self.object_store, config, owner=f"broker-{self.node_id}"
        )
        if result.skipped is None:
            log.info("compaction: %s", result)
        if result.swaps:  # serve the rewritten objects, not the cached batches
            await self._refresh_ranges()

    async def _refresh_ranges(self) -> None:
        """Compaction swaps objects behind the leader's back: re-read led partitions' ranges."""
        assert self.store is not None
        for plog in list(self.store.logs.values()):
            if plog.leader_id == self.node_id and not plog.deleted:
                await self.store.refresh_ranges(plog)

    async def _before_sync(self) -> None:
        self.groups.retain(self.coordinates_group)
        await refresh_cluster_configs(self.ports, self.configs)
        if not all(self.security.knows(b) for b in self.listed_brokers()):
            await self.security.refresh_endpoints()  # a new broker: learn its listeners

    async def _learn_leaders(self, topics: list[TopicRecord]) -> None:
        """A partition led by a broker our live view lacks (it started less than a lease
        renewal ago): re-read the live brokers, so Metadata never names a leader it does not
        list. At most once a second: a dead leader stays unknown until recovery moves it."""
        known = {b.broker_id for b in self.listed_brokers()}
        if any(p.leader_id >= 0 and p.leader_id not in known
               for t in topics for p in t.partitions):  # fmt: skip
            if time.monotonic() - self._live_reread >= 1.0:
                self._live_reread = time.monotonic()
                await self.refresh_live()

    def _endpoint(self, broker_id: int) -> tuple[str, int] | None:
        """Where this broker reaches another: its registered endpoint, if live or draining."""
        b = next((b for b in self.listed_brokers() if b.broker_id == broker_id), None)
        return (b.host, b.port) if b is not None else None

    async def _live_ids(self) -> list[int]:
        """Live brokers read afresh (new topics spread over brokers that just joined too)."""
        assert self.membership is not None
        await self.membership.refresh_live()
        return [b.broker_id for b in self.membership.live_brokers()]

    # -- fencing -----------------------------------------------------------------------------
    @property
    def fenced(self) -> bool:
        return self._fenced or (self.membership is not None and self.membership.fenced)

    def _on_fenced(self) -> None:
        self._fenced = True

    def _on_wal_fatal(self, exc: BaseException) -> None:
        log.error("the WAL cannot make data durable any more (%s); this broker stops", exc)
        self._fenced = True

    # -- what the handlers use (api/services.py) ------------------------------------------------
    @property
    def topic_registry(self) -> Topics:
        assert self._topics is not None
        return self._topics

    @property
    def topics(self) -> dict[str, TopicState]:
        return self._topics.by_name if self._topics is not None else {}

    @property
    def topics_by_id(self) -> dict[uuid.UUID, TopicState]:
        return self._topics.by_id if self._topics is not None else {}

    def partition(self, topic: str, index: int) -> PartitionLog | None:
        return self._topics.partition(topic, index) if self._topics is not None else None

    def topic_defaults(self) -> dict[str, str]:
        return self.configs.topic_defaults()

    def request_refresh(self) -> None:
        if self._topics is not None:
            self._topics.request_refresh()

    async def learn_unknown_topics(self) -> None:
        await self.topic_registry.learn_unknown()

    async def sync_metadata(self) -> None:
        await self.topic_registry.sync()

    async def create_topic(
        self, name: str, partitions: int, configs: dict[str, str | None]
    ) -> TopicState:
        return await self.topic_registry.create(name, partitions, configs)

    async def delete_topic(self, name: str) -> TopicRecord:
        return await self.topic_registry.delete(name)

    async def add_partitions(self, name: str, total: int) -> TopicState:
        return await self.topic_registry.add_partitions(name, total)

    async def hand_over(self, topic: str, partition: int, target: int) -> None:
        assert self.leadership is not None
        await self.leadership.hand_over(topic, partition, target)

    async def move_partition(
        self, topic: str, partition: int, target: int
    ) -> tuple[int, str | None]:
        """A reassignment asked in process (the embedded balancer): as AlterPartitionReassignments
        would do it, without a connection to ourselves."""
        code, message = await reassignment.move_partition(self, topic, partition, [target], False)
        return int(code), message

    async def delete_records(self, plog: PartitionLog, offset: int) -> int:
        assert self.leadership is not None
        return await self.leadership.delete_records(plog, offset)

    # -- groups follow __consumer_offsets, as in Kafka: a group's coordinator is the leader of
    # its partition (partition_for), so the group's records are appended where they are led.
    def _offsets_log(self, group_id: str) -> PartitionLog | None:
        state = self.topics.get(offsets_topic.OFFSETS_TOPIC)
        if state is None or not state.logs:
            return None
        return state.logs[offsets_topic.partition_for(group_id, len(state.logs))]

    def group_coordinator(self, group_id: str) -> BrokerRecord | None:
        """The live leader of the group's __consumer_offsets partition (None: not yet known,
        or not live: COORDINATOR_NOT_AVAILABLE, and the client asks again)."""
        plog = self._offsets_log(group_id)
        if plog is None:
            return None
        return next((b for b in self.live_brokers() if b.broker_id == plog.leader_id), None)

    def coordinates_group(self, group_id: str) -> bool:
        plog = self._offsets_log(group_id)
        return plog is not None and plog.leader_id == self.node_id and not plog.moving

    async def ensure_offsets_topic(self) -> None:
        """Create __consumer_offsets on first use (Kafka's offsets.topic.num.partitions and
        configs), whichever broker gets there first."""
        name = offsets_topic.OFFSETS_TOPIC
        if name in self.topics:
            return
        await self.learn_unknown_topics()
        if name in self.topics:
            return
        try:
            await self.create_topic(
                name,
                self.config.offsets_topic_partitions,
                dict(offsets_topic.OFFSETS_TOPIC_CONFIGS),
            )
        except TopicAlreadyExists:
            await self.sync_metadata()

    def append_internal(self, topic: str, partition: int, records: bytearray) -> bool:
        """Append a batch the broker wrote itself (an internal topic's records) to a partition
        led here; False, writing nothing, when it is not (it moved meanwhile)."""
        plog = self.partition(topic, partition)
        if self.store is None or plog is None:
            return False
        view = memoryview(records)
        try:
            _, fut = self.store.append_guarded(plog, view, validate_batches(view))
        except AppendRefused:
            return False
        fut.add_done_callback(_retrieved)  # nobody waits: the partition completes it anyway
        return True

    def _mirror_group(self, group_id: str, records: list[offsets_topic.Record]) -> None:
        if not records:  # a batch holds at least one record
            return
        plog = self._offsets_log(group_id)
        batch = offsets_topic.build_batch(records, int(time.time() * 1000))
        if plog is None or not self.append_internal(plog.topic, plog.partition, batch):
            log.debug("group %s: %d records not mirrored (partition not led here)",
                      group_id, len(records))  # fmt: skip

    def may_acknowledge(self) -> bool:
        return not self._fenced and (self.membership is None or self.membership.may_acknowledge())

    def live_brokers(self) -> list[BrokerRecord]:
        if self.membership is None:
            return [self.me] if self.me is not None else []
        return self.membership.live_brokers()

    def listed_brokers(self) -> list[BrokerRecord]:
        if self.membership is None:
            return self.live_brokers()
        return self.membership.listed_brokers()

    def registered_brokers(self) -> list[BrokerRecord]:
        if self.membership is None:
            return self.live_brokers()
        return self.membership.registered

    def coordinator_for(self, key: str) -> BrokerRecord:
        assert self.membership is not None
        return self.membership.coordinator_for(key)

    def coordinates(self, key: str) -> bool:
        return self.membership is not None and self.membership.coordinates(key)

    def controller_id(self) -> int:
        return self.live_brokers()[0].broker_id

    async def refresh_live(self) -> None:
        if self.membership is not None:
            await self.membership.refresh_live()

    async def is_live(self, broker_id: int) -> bool:
        return self.membership is not None and await self.membership.is_live(broker_id)
