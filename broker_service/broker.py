"""The broker: composes an ObjectStore, a MetadataStore and a WAL into a serving node.

It never branches on mode: embedded or cloud is decided by what it is handed.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field

from .cluster.topic_config import TOPIC_CONFIG_DEFAULTS, validate_configs, validate_topic_name
from .config import BrokerConfig
from .groups.coordinator import GroupCoordinator
from .metadata.base import BrokerRecord, MetadataStore, TopicRecord
from .storage.objectstore.base import ObjectStore
from .storage.partition_log import PartitionLog
from .storage.stream_store import StreamStore
from .storage.wal import Wal

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
    ) -> None:
        self.config = config
        self.metadata = metadata
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
        self.fenced = False

    @property
    def node_id(self) -> int:
        return self.config.node_id

    async def start(self) -> None:
        cfg = self.config
        host, port = cfg.advertised
        self.cluster_id = self.metadata.cluster_id()
        self.me = self.metadata.register_broker(cfg.node_id, host, port, cfg.rack, cfg.lease_ms)
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
        )
        for rec in self.metadata.topics():
            self._load_topic(rec)
        self.wal.bind(cfg.node_id, self.me.epoch)
        self.wal.on_fatal = self._on_wal_fatal
        entries = await self.wal.open()
        replayed = self.store.replay(entries)
        if replayed:
            log.info("recovered %d WAL entries not yet in objects; uploading", replayed)
            await self.store.upload()
        self.store.start()
        self.groups.start()
        log.info(
            "broker %d (epoch %d) of cluster %s: %d topics",
            cfg.node_id,
            self.me.epoch,
            self.cluster_id,
            len(self.topics),
        )

    async def stop(self) -> None:
        self.groups.stop()
        if self.store is not None:
            await self.store.close()
        self.metadata.close()

    def _on_fenced(self) -> None:
        self.fenced = True

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
        rec = await asyncio.to_thread(
            self.metadata.create_topic, name, partitions, checked, self.node_id
        )
        log.info("created topic %s with %d partitions", name, partitions)
        return self._load_topic(rec, new=True)

    async def delete_topic(self, name: str) -> TopicRecord:
        rec = await asyncio.to_thread(self.metadata.delete_topic, name)
        state = self.topics.pop(name, None)
        if state is not None:
            self.topics_by_id.pop(state.topic_id, None)
            assert self.store is not None
            for plog in state.logs:
                self.store.remove_partition(plog.stream_id)
        self.groups.forget_topic(name)
        log.info("deleted topic %s", name)
        return rec

    async def add_partitions(self, name: str, total: int) -> TopicState:
        rec = await asyncio.to_thread(self.metadata.add_partitions, name, total, self.node_id)
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
