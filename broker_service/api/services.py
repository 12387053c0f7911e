"""What the handlers may use of the broker: one narrow port, the same for every API module.

``runtime.broker.Broker`` provides it (it composes the parts); the handlers never import the
runtime. Each attribute is a part with its own module: topics and partitions (kafka/topics.py,
kafka/partition.py), the log (kafka/log_store.py), groups (kafka/groups/), transactions
(kafka/txn/), security (security/manager.py), placement and liveness (cluster/membership.py).
"""

from __future__ import annotations

import uuid
from typing import Protocol

from broker_service.cluster.rpc import BrokerRpc
from broker_service.config import BrokerConfig
from broker_service.kafka.configs import ConfigView
from broker_service.kafka.groups.coordinator import GroupCoordinator
from broker_service.kafka.log_store import StreamStore
from broker_service.kafka.partition import PartitionLog
from broker_service.kafka.replicas import ReplicaReads
from broker_service.kafka.topics import TopicState
from broker_service.kafka.txn.coordinator import TransactionCoordinator
from broker_service.kafka.zone_forward import ZoneForwarder
from broker_service.metadata.ports import MetadataPorts
from broker_service.metadata.records import BrokerRecord, TopicRecord
from broker_service.metadata.store import MetadataStore
from broker_service.metrics import BrokerMetrics
from broker_service.security.manager import SecurityManager


class BrokerServices(Protocol):
    config: BrokerConfig
    metrics: BrokerMetrics
    metadata: MetadataStore
    ports: MetadataPorts
    security: SecurityManager
    groups: GroupCoordinator
    txn: TransactionCoordinator
    cluster_id: str
    rpc: BrokerRpc
    configs: ConfigView
    forwarder: ZoneForwarder | None  # zone-forwarded produce (api/zones.py)
    replicas: ReplicaReads | None  # committed data of partitions led elsewhere

    @property
    def node_id(self) -> int: ...

    @property
    def store(self) -> StreamStore | None: ...

    # -- topics and partitions -------------------------------------------------------------
    @property
    def topics(self) -> dict[str, TopicState]: ...

    @property
    def topics_by_id(self) -> dict[uuid.UUID, TopicState]: ...

    def partition(self, topic: str, index: int) -> PartitionLog | None: ...

    def topic_defaults(self) -> dict[str, str]: ...

    def request_refresh(self) -> None: ...

    async def learn_unknown_topics(self) -> None: ...

    async def sync_metadata(self) -> None: ...

    async def create_topic(
        self, name: str, partitions: int, configs: dict[str, str | None]
    ) -> TopicState: ...

    async def delete_topic(self, name: str) -> TopicRecord: ...

    async def add_partitions(self, name: str, total: int) -> TopicState: ...

    async def hand_over(self, topic: str, partition: int, target: int) -> None: ...

    async def delete_records(self, plog: PartitionLog, offset: int) -> int: ...

    # -- groups: coordinated by the leader of their __consumer_offsets partition -------------
    def group_coordinator(self, group_id: str) -> BrokerRecord | None: ...

    def coordinates_group(self, group_id: str) -> bool: ...

    async def ensure_offsets_topic(self) -> None: ...

    def append_internal(self, topic: str, partition: int, records: bytearray) -> bool: ...

    # -- the cluster -----------------------------------------------------------------------
    def may_acknowledge(self) -> bool: ...

    def live_brokers(self) -> list[BrokerRecord]: ...

    def listed_brokers(self) -> list[BrokerRecord]: ...

    def registered_brokers(self) -> list[BrokerRecord]: ...

    def coordinator_for(self, key: str) -> BrokerRecord: ...

    def coordinates(self, key: str) -> bool: ...

    def controller_id(self) -> int: ...

    async def refresh_live(self) -> None: ...

    async def is_live(self, broker_id: int) -> bool: ...
