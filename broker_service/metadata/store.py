"""The metadata store's contract: one small interface per domain, and their composition.

Callers depend on the narrowest domain they use (a transaction coordinator needs a
``TxnStore``, not the whole store); a backend (``metadata/sqlite``, ``metadata/dynamodb``)
implements ``MetadataStore``, which is all of them plus ``close``. The records and errors live
in ``records.py`` and ``errors.py``; ``ports.py`` puts an async facade over these.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from broker_service.metadata.records import (
    AclBinding,
    BrokerRecord,
    CommittedOffset,
    CompactorLease,
    GroupRecord,
    PartitionRecord,
    QuotaEntity,
    ScramCredential,
    StreamRange,
    TopicRecord,
    TxnRecord,
)


class BrokerRegistry(ABC):
    """Brokers: identity, epochs, leases, fencing, and what they tell the control plane."""

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
    def renew_lease(self, broker_id: int, epoch: int, lease_ms: int) -> BrokerRecord:
        """Set the broker's lease expiry to now + ``lease_ms``.

        Only while its epoch is ``epoch`` and its state is ACTIVE or DRAINING; raises
        ``BrokerFenced`` otherwise (stale epoch, FENCED, or never registered).
        """

    @abstractmethod
    def fence_broker(self, broker_id: int, expected_epoch: int) -> BrokerRecord:
        """Declare a broker dead: epoch + 1 and state FENCED, atomically, only if its epoch is
        still ``expected_epoch``.

        Of several recoverers racing on the same epoch exactly one succeeds; the others (and a
        fence of a broker that re-registered meanwhile) get ``ConcurrentUpdate``. Unknown
        brokers raise ``UnknownBroker``. Afterwards commits and renewals with the old epoch raise
        ``BrokerFenced``.
        """

    @abstractmethod
    def set_broker_state(self, broker_id: int, epoch: int, state: str) -> BrokerRecord:
        """The broker itself switches between ACTIVE and DRAINING (graceful shutdown).

        Conditional on ``epoch`` and a non-FENCED state (``BrokerFenced`` otherwise); any other
        target state is a ``ValueError`` (fencing goes through ``fence_broker``).
        """

    @abstractmethod
    def live_brokers(self, now_ms: int) -> list[BrokerRecord]:
        """ACTIVE brokers whose lease expires after ``now_ms``, by id (a consistent read)."""

    @abstractmethod
    def allocate_broker_id(self) -> int:
        """A broker (node) id never handed out before in this cluster, >= 1 (for brokers
        started with ``BROKER_NODE_ID=auto``, e.g. Fargate tasks)."""

    @abstractmethod
    def set_broker_info(self, broker_id: int, epoch: int, info: dict[str, str]) -> None:
        """Replace what a broker tells the control plane about itself (its ECS task ARN,
        private IP, metrics URL). Conditional on ``epoch`` and a serving state
        (``BrokerFenced`` otherwise), so a fenced broker cannot claim a task it lost."""

    @abstractmethod
    def broker_info(self) -> dict[int, dict[str, str]]:
        """Every broker's info, by broker id (brokers that never set any are absent)."""

    @abstractmethod
    def save_broker_endpoints(self, broker_id: int, endpoints: dict[str, tuple[str, int]]) -> None:
        """The advertised endpoint of each of the broker's listeners (by listener name)."""

    @abstractmethod
    def broker_endpoints(self) -> dict[int, dict[str, tuple[str, int]]]:
        """broker id -> listener name -> (host, port), for every broker that saved some."""

    @abstractmethod
    def forget_broker(self, broker_id: int, expected_epoch: int) -> bool:
        """Delete a fenced broker's record (with its broker info and listener endpoints),
        only if it is still FENCED at ``expected_epoch``; False (nothing deleted) otherwise.

        For ids never handed out again (``allocate_broker_id``): a re-registration of a
        forgotten id would start its epochs over. Recovery forgets only such brokers, once
        they lead no partition (control/recovery.py)."""


def placement(leader_ids: Sequence[int]) -> tuple[int, ...]:
    """The leaders new partitions are handed round-robin, checked: the ``i``-th partition a
    ``create_topic`` or ``add_partitions`` call creates is led by ``leader_ids[i % n]``."""
    leaders = tuple(leader_ids)
    if not leaders:
        raise ValueError("new partitions need at least one leader")
    return leaders


class TopicCatalog(ABC):
    """Topics and partitions: names, configs, stream ids, leadership, log start offsets."""

    @abstractmethod
    def create_topic(
        self, name: str, num_partitions: int, configs: dict[str, str], leader_ids: Sequence[int]
    ) -> TopicRecord:
        """A new topic, placed in the one write that creates it (as Kafka's controller
        places it): partition ``p`` is led by ``leader_ids[p % len(leader_ids)]`` at leader
        epoch 0, so no broker ever sees it led elsewhere first."""

    @abstractmethod
    def delete_topic(self, name: str) -> TopicRecord: ...

    @abstractmethod
    def add_partitions(self, name: str, new_total: int, leader_ids: Sequence[int]) -> TopicRecord:
        """Grow a topic to ``new_total`` partitions (nothing if it has as many already), in
        one write: the ``i``-th new partition (partition ``current + i``) is led by
        ``leader_ids[i % len(leader_ids)]`` at leader epoch 0."""

    @abstractmethod
    def topics(self) -> list[TopicRecord]: ...

    @abstractmethod
    def topic(self, name: str) -> TopicRecord | None: ...

    @abstractmethod
    def move_partition(
        self,
        topic: str,
        partition: int,
        expected_leader: int,
        expected_leader_epoch: int,
        new_leader: int,
    ) -> PartitionRecord:
        """Compare-and-set leadership: leader = ``new_leader``, leader_epoch + 1, only if the
        partition is still led by ``expected_leader`` at ``expected_leader_epoch``
        (``ConcurrentUpdate`` otherwise; ``UnknownTopic`` for a missing topic/partition).

        O(1): the stream id, its ranges and the log start offset are untouched (no data moves).
        """

    @abstractmethod
    def partitions_led_by(self, broker_id: int) -> list[PartitionRecord]:
        """Partitions whose leader is ``broker_id``, by (topic, partition)."""

    @abstractmethod
    def set_log_start_offset(self, topic: str, partition: int, offset: int) -> PartitionRecord:
        """Raise the partition's log start offset to ``offset``; never lowers it (a smaller
        value is a no-op). Returns the partition as stored. ``UnknownTopic`` if missing,
        ``ValueError`` for a negative offset. The caller keeps it <= the high watermark."""

    @abstractmethod
    def set_topic_configs(
        self, name: str, expected: dict[str, str], configs: dict[str, str]
    ) -> TopicRecord:
        """Compare-and-set a topic's config overrides: ``configs`` replace them if they are
        still ``expected`` (``ConcurrentUpdate`` otherwise, ``UnknownTopic`` if missing)."""

    @abstractmethod
    def cluster_configs(self) -> dict[str, str]:
        """Cluster-wide dynamic broker configs (Kafka's ``--entity-default`` broker configs)."""

    @abstractmethod
    def set_cluster_configs(self, expected: dict[str, str], configs: dict[str, str]) -> None:
        """Compare-and-set of ``cluster_configs`` (``ConcurrentUpdate`` if not ``expected``)."""

    @abstractmethod
    def broker_configs(self, broker_id: int) -> dict[str, str]:
        """One broker's own dynamic configs (``--entity-type brokers --entity-name ID``)."""

    @abstractmethod
    def set_broker_configs(
        self, broker_id: int, expected: dict[str, str], configs: dict[str, str]
    ) -> None:
        """Compare-and-set of ``broker_configs`` (``ConcurrentUpdate`` if not ``expected``)."""


class StreamObjects(ABC):
    """Committed objects and the per-stream ranges they hold (the WAL's commit point)."""

    @abstractmethod
    def commit_object(
        self,
        broker_id: int,
        broker_epoch: int,
        object_key: str,
        object_size: int,
        ranges: list[StreamRange],
        deadline_ms: int | None = None,
    ) -> None:
        """Atomically record an uploaded object and its stream ranges.

        Conditional on the broker's epoch and its state being ACTIVE or DRAINING (a draining
        broker still flushes what it acknowledged); raises ``BrokerFenced`` otherwise. With
        ``deadline_ms`` (wall clock), refused with ``CommitDeadlinePassed`` when that time
        has passed before it is written (SQLite: inside the transaction; DynamoDB: before
        every attempt, botocore's retries included). ``ObjectAlreadyCommitted`` when the key
        has a record (committed, or aborted by ``abort_object_commit``).
        """

    @abstractmethod
    def abort_object_commit(self, object_key: str) -> bool:
        """Settle a commit whose outcome is unknown: unless ``object_key`` has a record,
        write it ABORTED, so no commit of that key can ever land afterwards (a late one
        fails its condition). True if the key turned out COMMITTED (the commit landed: it is
        durable), False if it is aborted. Idempotent."""

    @abstractmethod
    def stream_ranges(self, stream_id: int) -> list[StreamRange]: ...


class ProducerStore(ABC):
    """Producer ids and the per-stream producer-state snapshots."""

    @abstractmethod
    def allocate_producer_ids(self, count: int) -> int:
        """Reserve ``count`` consecutive producer ids, unique cluster-wide; return the first."""

    @abstractmethod
    def producer_snapshot(self, stream_id: int) -> tuple[int, bytes] | None:
        """The latest producer-state snapshot of a stream: (offset it covers up to, data)."""

    @abstractmethod
    def save_producer_snapshot(self, stream_id: int, offset: int, data: bytes) -> bool:
        """Store a snapshot unless one covering a later offset is stored; True if stored.
        Snapshots only describe committed data, so any broker's is valid for its offset."""


class GroupStore(ABC):
    """Consumer groups and their committed offsets."""

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


class TxnStore(ABC):
    """Transaction coordinator state, one record per transactional id (compare-and-set)."""

    @abstractmethod
    def transaction(self, transactional_id: str) -> TxnRecord | None: ...

    @abstractmethod
    def transactions(self) -> list[TxnRecord]: ...

    @abstractmethod
    def save_transaction(self, rec: TxnRecord) -> TxnRecord:
        """Store ``rec`` if the stored version is still ``rec.version`` (0: must not exist);
        return it with the new version. Raises ConcurrentUpdate otherwise."""


class CompactionStore(ABC):
    """Compaction and retention (control/compaction.py): lease, range swaps, object lifecycle."""

    @abstractmethod
    def acquire_compactor_lease(
        self, owner: str, lease_ms: int, now_ms: int, shard: int = 0
    ) -> CompactorLease:
        """Take compactor shard ``shard``'s lease with a new epoch (``next_compactor_epoch``:
        it names the shard) if it is free or expired at ``now_ms``; ``ConcurrentUpdate`` if
        another run holds it. Every acquire bumps the epoch, so a run that outlived its lease
        is fenced even when the same owner takes it again. Shards' leases are independent."""

    @abstractmethod
    def release_compactor_lease(self, epoch: int) -> None:
        """End the lease of ``epoch``'s shard early (only if ``epoch`` still holds it;
        otherwise a no-op)."""

    @abstractmethod
    def replace_stream_ranges(
        self,
        compactor_epoch: int,
        stream_id: int,
        old: list[StreamRange],
        new: list[StreamRange],
        object_key: str | None,
        object_size: int,
        now_ms: int,
    ) -> None:
        """Compare-and-set swap of one stream's ranges: ``old`` (exactly as stored) become
        ``new`` (stored in the new object ``object_key``, recorded as committed), atomically.
        ``new`` empty and ``object_key`` None drops ``old`` (retention). The objects ``old``
        named are not marked released: garbage collection marks what no range names.

        ``ConcurrentUpdate`` (nothing written) if the lease of ``compactor_epoch``'s shard is
        no longer ``compactor_epoch`` or expired at ``now_ms``, or any old range is gone or
        changed (a swap of another shard got there first)."""

    @abstractmethod
    def committed_objects(self, keys: list[str]) -> set[str]:
        """Which of ``keys`` have a committed object record."""

    @abstractmethod
    def released_objects(self) -> dict[str, int]:
        """Objects marked released (no longer referenced, or about to be): key -> since ms."""

    @abstractmethod
    def mark_released(self, keys: list[str], now_ms: int) -> None:
        """Mark objects released at ``now_ms`` unless already marked (keeps the older mark)."""

    @abstractmethod
    def unmark_released(self, keys: list[str]) -> None:
        """Drop release marks (an object found referenced again)."""

    @abstractmethod
    def forget_objects(self, keys: list[str]) -> None:
        """Delete object records and release marks (the objects themselves are deleted from
        the object store afterwards; an object left behind is an orphan and swept later)."""


class SecurityStore(ABC):
    """SCRAM credentials, ACLs and client quotas."""

    @abstractmethod
    def put_scram_credential(self, user: str, credential: ScramCredential) -> None:
        """Create or replace ``user``'s credential for ``credential.mechanism``."""

    @abstractmethod
    def delete_scram_credential(self, user: str, mechanism: str) -> bool:
        """Remove it; False if there was none."""

    @abstractmethod
    def scram_credentials(self, user: str | None = None) -> list[tuple[str, ScramCredential]]:
        """(user, credential) pairs, of one user or of all, by user then mechanism."""

    @abstractmethod
    def create_acls(self, acls: list[AclBinding]) -> None:
        """Store ACLs (storing one that exists already is a no-op)."""

    @abstractmethod
    def delete_acls(self, acls: list[AclBinding]) -> None:
        """Remove exactly these ACLs (absent ones are ignored)."""

    @abstractmethod
    def acls(self) -> list[AclBinding]:
        """Every stored ACL."""

    @abstractmethod
    def alter_client_quota(
        self, entity: QuotaEntity, set_values: dict[str, float], remove: list[str]
    ) -> None:
        """Set and remove quota values of one entity (an entity left with none is gone)."""

    @abstractmethod
    def client_quotas(self) -> list[tuple[QuotaEntity, dict[str, float]]]:
        """Every entity with at least one quota value."""


class MetadataStore(
    BrokerRegistry,
    TopicCatalog,
    StreamObjects,
    ProducerStore,
    GroupStore,
    TxnStore,
    CompactionStore,
    SecurityStore,
):
    """Every domain in one store: what a backend implements and a broker is handed."""

    @abstractmethod
    def close(self) -> None: ...
