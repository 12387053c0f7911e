"""What the metadata store holds: records and state constants shared by every domain.

Plain frozen dataclasses, no behaviour beyond (de)serialising a transaction record.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field, replace

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


# Compactor shards (control/compaction.py): shard k's lease epochs are k modulo this. Shard 0's
# epochs are multiples of it; a table from before shards held epochs 1, 2, ... for the one
# lease, and the next acquire of shard 0 moves on to the next multiple.
MAX_COMPACTOR_SHARDS = 64


def compactor_shard(epoch: int) -> int:
    return epoch % MAX_COMPACTOR_SHARDS


def next_compactor_epoch(seen: int, shard: int) -> int:
    """The smallest epoch above ``seen`` that names ``shard``."""
    if not 0 <= shard < MAX_COMPACTOR_SHARDS:
        raise ValueError(f"compactor shard {shard} not in 0..{MAX_COMPACTOR_SHARDS - 1}")
    base = seen - seen % MAX_COMPACTOR_SHARDS + shard
    return base if base > seen else base + MAX_COMPACTOR_SHARDS


@dataclass(frozen=True, slots=True)
class CompactorLease:
    """Who compacts now: one run at a time per compactor shard, fenced by ``epoch`` (bumped by
    every acquire). An epoch names its shard (``compactor_shard``), so a swap checks the lease
    of the shard that made it."""

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
