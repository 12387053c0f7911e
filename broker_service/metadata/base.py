"""The MetadataStore contract: all cluster state lives here, never on a broker's disk.

Embedded mode uses ``SqliteMetadataStore``; the cloud issue adds a DynamoDB store behind the
same interface.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field


class MetadataError(Exception):
    pass


class TopicAlreadyExists(MetadataError):
    pass


class UnknownTopic(MetadataError):
    pass


class ObjectAlreadyCommitted(MetadataError):
    """The object key is committed already (a retried commit whose first answer was lost)."""


class BrokerFenced(MetadataError):
    """A commit was refused because the broker's epoch is stale or it is not ACTIVE."""


@dataclass(frozen=True, slots=True)
class BrokerRecord:
    broker_id: int
    host: str
    port: int
    rack: str | None
    epoch: int
    state: str
    lease_expiry_ms: int


@dataclass(frozen=True, slots=True)
class PartitionRecord:
    topic: str
    partition: int
    stream_id: int
    leader_id: int
    leader_epoch: int
    log_start_offset: int


@dataclass(frozen=True, slots=True)
class TopicRecord:
    name: str
    topic_id: uuid.UUID
    configs: dict[str, str] = field(default_factory=dict)
    partitions: tuple[PartitionRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class StreamRange:
    """Offsets [start_offset, end_offset) of one stream stored at a byte range of an object."""

    stream_id: int
    start_offset: int
    end_offset: int
    object_key: str
    position: int
    size: int
    max_timestamp: int = -1


@dataclass(frozen=True, slots=True)
class CommittedOffset:
    topic: str
    partition: int
    offset: int
    leader_epoch: int
    metadata: str | None
    commit_ms: int = 0


@dataclass(frozen=True, slots=True)
class GroupRecord:
    """What outlives a coordinator: a group's identity; members re-join after a move."""

    group_id: str
    group_type: str  # "classic" or "consumer" (KIP-848)
    protocol_type: str


class MetadataStore(ABC):
    @abstractmethod
    def cluster_id(self) -> str: ...

    @abstractmethod
    def register_broker(
        self, broker_id: int, host: str, port: int, rack: str | None, lease_ms: int
    ) -> BrokerRecord:
        """Register (or re-register) a broker with a fresh epoch, state ACTIVE."""

    @abstractmethod
    def brokers(self) -> list[BrokerRecord]: ...

    @abstractmethod
    def create_topic(
        self, name: str, num_partitions: int, configs: dict[str, str], leader_id: int
    ) -> TopicRecord: ...

    @abstractmethod
    def delete_topic(self, name: str) -> TopicRecord: ...

    @abstractmethod
    def add_partitions(self, name: str, new_total: int, leader_id: int) -> TopicRecord: ...

    @abstractmethod
    def topics(self) -> list[TopicRecord]: ...

    @abstractmethod
    def topic(self, name: str) -> TopicRecord | None: ...

    @abstractmethod
    def commit_object(
        self,
        broker_id: int,
        broker_epoch: int,
        object_key: str,
        object_size: int,
        ranges: list[StreamRange],
    ) -> None:
        """Atomically record an uploaded object and its stream ranges.

        Conditional on the broker's epoch and ACTIVE state; raises ``BrokerFenced`` otherwise.
        """

    @abstractmethod
    def stream_ranges(self, stream_id: int) -> list[StreamRange]: ...

    @abstractmethod
    def allocate_producer_ids(self, count: int) -> int:
        """Reserve ``count`` consecutive producer ids, unique cluster-wide; return the first."""

    # -- consumer groups ---------------------------------------------------------------
    @abstractmethod
    def save_group(self, group: GroupRecord) -> None: ...

    @abstractmethod
    def groups(self) -> list[GroupRecord]: ...

    @abstractmethod
    def delete_group(self, group_id: str) -> None:
        """Forget the group and all its committed offsets."""

    @abstractmethod
    def commit_offsets(self, group_id: str, offsets: list[CommittedOffset]) -> None:
        """Durably store offsets (one transaction)."""

    @abstractmethod
    def committed_offsets(self, group_id: str) -> list[CommittedOffset]: ...

    @abstractmethod
    def delete_offsets(self, group_id: str, partitions: list[tuple[str, int]]) -> None: ...

    @abstractmethod
    def close(self) -> None: ...
