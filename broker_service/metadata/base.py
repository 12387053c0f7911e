"""The MetadataStore contract: all cluster state lives here, never on a broker's disk.

Embedded mode uses ``SqliteMetadataStore``; the cloud issue adds a DynamoDB store behind the
same interface.
"""

from __future__ import annotations

import json
import uuid
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, replace


class MetadataError(Exception):
    pass


class TopicAlreadyExists(MetadataError):
    pass


class UnknownTopic(MetadataError):
    pass


class ObjectAlreadyCommitted(MetadataError):
    """The object key is committed already (a retried commit whose first answer was lost)."""


class BrokerFenced(MetadataError):
    """Refused because the broker's epoch is stale or its state is FENCED (a fenced broker
    must stop serving; it may re-register to get a new epoch)."""


class UnknownBroker(MetadataError):
    """No broker with that id ever registered."""


class ConcurrentUpdate(MetadataError):
    """A compare-and-set lost: the record no longer has the expected epoch / leader (someone
    else fenced the broker or moved the partition first). Re-read and decide again."""


# Broker states. ACTIVE: serving, eligible for new partitions. DRAINING: shutting down
# gracefully; keeps its lease and may still commit (flush) while it hands its partitions over,
# but gets no new ones. FENCED: declared dead by a recoverer; every commit / renewal with its
# old epoch fails, and it must re-register (new epoch) to serve again.
ACTIVE = "ACTIVE"
DRAINING = "DRAINING"
FENCED = "FENCED"
SERVING_STATES = frozenset({ACTIVE, DRAINING})


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
class CompactorLease:
    """Who compacts now: one run at a time, fenced by ``epoch`` (bumped by every acquire)."""

    epoch: int
    owner: str
    expiry_ms: int


@dataclass(frozen=True, slots=True)
class GroupRecord:
    """What outlives a coordinator: a group's identity; members re-join after a move."""

    group_id: str
    group_type: str  # "classic" or "consumer" (KIP-848)
    protocol_type: str


# Transaction states, as Kafka's transaction coordinator names them.
TXN_EMPTY = "Empty"
TXN_ONGOING = "Ongoing"
TXN_PREPARE_COMMIT = "PrepareCommit"
TXN_PREPARE_ABORT = "PrepareAbort"
TXN_COMPLETE_COMMIT = "CompleteCommit"
TXN_COMPLETE_ABORT = "CompleteAbort"


@dataclass(frozen=True, slots=True)
class TxnRecord:
    """A transactional id's durable state. ``version`` is the compare-and-set token: every
    save names the version it read, so two coordinators (one a zombie) cannot both win.
    ``txn_seq`` counts transactions, so a pending offset commit knows which one it joined."""

    transactional_id: str
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    state: str = TXN_EMPTY
    partitions: tuple[tuple[str, int], ...] = ()
    groups: tuple[str, ...] = ()
    # group -> offsets committed in this transaction (visible when it commits)
    pending_offsets: tuple[tuple[str, tuple[CommittedOffset, ...]], ...] = ()
    txn_seq: int = 0
    start_ms: int = -1
    update_ms: int = 0
    version: int = 0

    def to_json(self) -> str:
        d = asdict(self)
        d.pop("version")
        return json.dumps(d, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, version: int) -> TxnRecord:
        d = json.loads(text)
        return cls(
            **{
                **d,
                "partitions": tuple((t, p) for t, p in d["partitions"]),
                "groups": tuple(d["groups"]),
                "pending_offsets": tuple(
                    (g, tuple(CommittedOffset(**o) for o in offs))
                    for g, offs in d["pending_offsets"]
                ),
                "version": version,
            }
        )

    def with_(self, **changes: object) -> TxnRecord:
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class ScramCredential:
    """A salted, iterated SCRAM credential (RFC 5802): never the password itself."""

    mechanism: str  # "SCRAM-SHA-256" or "SCRAM-SHA-512"
    salt: bytes
    stored_key: bytes
    server_key: bytes
    iterations: int


@dataclass(frozen=True, slots=True)
class AclBinding:
    """One Kafka ACL, with Kafka's numeric codes (resource type, pattern type, operation,
    permission type: see security/acl.py)."""

    resource_type: int
    resource_name: str
    pattern_type: int
    principal: str
    host: str
    operation: int
    permission_type: int


# A client-quota entity: ((entity_type, name or None for the default), ...) sorted by type,
# e.g. (("client-id", None), ("user", "alice")).
QuotaEntity = tuple[tuple[str, str | None], ...]


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
    def forget_broker(self, broker_id: int, expected_epoch: int) -> bool:
        """Delete a fenced broker's record (with its broker info and listener endpoints),
        only if it is still FENCED at ``expected_epoch``; False (nothing deleted) otherwise.

        For ids never handed out again (``allocate_broker_id``): a re-registration of a
        forgotten id would start its epochs over. Recovery forgets only such brokers, once
        they lead no partition (control/recovery.py)."""

    @abstractmethod
    def live_brokers(self, now_ms: int) -> list[BrokerRecord]:
        """ACTIVE brokers whose lease expires after ``now_ms``, by id (a consistent read)."""

    # -- partition leadership -----------------------------------------------------------
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
    def create_topic(
        self, name: str, num_partitions: int, configs: dict[str, str], leader_id: int
    ) -> TopicRecord: ...

    @abstractmethod
    def delete_topic(self, name: str) -> TopicRecord: ...

    @abstractmethod
    def add_partitions(self, name: str, new_total: int, leader_id: int) -> TopicRecord: ...

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

        Conditional on the broker's epoch and its state being ACTIVE or DRAINING (a draining
        broker still flushes what it acknowledged); raises ``BrokerFenced`` otherwise.
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

    # -- transactions ----------------------------------------------------------------------
    @abstractmethod
    def transaction(self, transactional_id: str) -> TxnRecord | None: ...

    @abstractmethod
    def transactions(self) -> list[TxnRecord]: ...

    @abstractmethod
    def save_transaction(self, rec: TxnRecord) -> TxnRecord:
        """Store ``rec`` if the stored version is still ``rec.version`` (0: must not exist);
        return it with the new version. Raises ConcurrentUpdate otherwise."""

    @abstractmethod
    def producer_snapshot(self, stream_id: int) -> tuple[int, bytes] | None:
        """The latest producer-state snapshot of a stream: (offset it covers up to, data)."""

    @abstractmethod
    def save_producer_snapshot(self, stream_id: int, offset: int, data: bytes) -> bool:
        """Store a snapshot unless one covering a later offset is stored; True if stored.
        Snapshots only describe committed data, so any broker's is valid for its offset."""

    @abstractmethod
    def allocate_broker_id(self) -> int:
        """A broker (node) id never handed out before in this cluster, >= 1 (for brokers
        started with ``BROKER_NODE_ID=auto``, e.g. Fargate tasks)."""

    # -- broker info (control plane) ----------------------------------------------------
    @abstractmethod
    def set_broker_info(self, broker_id: int, epoch: int, info: dict[str, str]) -> None:
        """Replace what a broker tells the control plane about itself (its ECS task ARN,
        private IP, metrics URL). Conditional on ``epoch`` and a serving state
        (``BrokerFenced`` otherwise), so a fenced broker cannot claim a task it lost."""

    @abstractmethod
    def broker_info(self) -> dict[int, dict[str, str]]:
        """Every broker's info, by broker id (brokers that never set any are absent)."""

    # -- compaction and retention (control/compaction.py) ---------------------------------
    @abstractmethod
    def acquire_compactor_lease(self, owner: str, lease_ms: int, now_ms: int) -> CompactorLease:
        """Take the compactor lease with a new epoch if it is free or expired at ``now_ms``;
        ``ConcurrentUpdate`` if another run holds it. Every acquire bumps the epoch, so a run
        that outlived its lease is fenced even when the same owner takes it again."""

    @abstractmethod
    def release_compactor_lease(self, epoch: int) -> None:
        """End the lease early (only if ``epoch`` still holds it; otherwise a no-op)."""

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
        named are marked released at ``now_ms`` (their grace period restarts).

        ``ConcurrentUpdate`` (nothing written) if the compactor lease is no longer
        ``compactor_epoch`` or expired at ``now_ms``, or any old range is gone or changed."""

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

    # -- security: SCRAM credentials, ACLs, client quotas, listener endpoints ------------
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

    @abstractmethod
    def save_broker_endpoints(self, broker_id: int, endpoints: dict[str, tuple[str, int]]) -> None:
        """The advertised endpoint of each of the broker's listeners (by listener name)."""

    @abstractmethod
    def broker_endpoints(self) -> dict[int, dict[str, tuple[str, int]]]:
        """broker id -> listener name -> (host, port), for every broker that saved some."""
