"""``__consumer_offsets`` as Kafka writes it: the group's partition, and the OffsetCommit and
GroupMetadata key/value records of Kafka's GroupMetadataManager (the formats lag monitors
such as Burrow decode). Pure functions over bytes.

Committed offsets stay authoritative in the metadata store; this topic mirrors every commit,
offset deletion and classic group change so tools that read it see what Kafka shows them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from crc32c import crc32c

OFFSETS_TOPIC = "__consumer_offsets"
# Kafka's offsets topic configs (GroupCoordinator.offsetsTopicConfigs)
OFFSETS_TOPIC_CONFIGS = {
    "cleanup.policy": "compact",
    "compression.type": "producer",
    "segment.bytes": "104857600",
}
INTERNAL_TOPICS = frozenset({OFFSETS_TOPIC})

OFFSET_COMMIT_KEY_VERSION = 1
OFFSET_COMMIT_VALUE_VERSION = 3  # offset, leader epoch, metadata, commit timestamp
GROUP_METADATA_KEY_VERSION = 2
GROUP_METADATA_VALUE_VERSION = 3  # with group instance ids (static membership)

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_BATCH_AFTER_CRC = struct.Struct(">hiqqqhii")  # attributes .. recordCount

Record = tuple[bytes, bytes | None]  # key, value (None: a tombstone)


def java_string_hash(s: str) -> int:
    """Java's String.hashCode: over UTF-16 code units, in int32 arithmetic."""
    units = s.encode("utf-16-be")
    h = 0
    for i in range(0, len(units), 2):
        h = (31 * h + ((units[i] << 8) | units[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def partition_for(group_id: str, partitions: int) -> int:
    """Kafka's ``Utils.abs(groupId.hashCode) % offsets.topic.num.partitions`` (``Utils.abs``
    masks the sign bit, unlike Math.abs)."""
    return (java_string_hash(group_id) & 0x7FFFFFFF) % partitions


def _string(value: str | None) -> bytes:
    if value is None:
        return _I16.pack(-1)
    data = value.encode()
    return _I16.pack(len(data)) + data


def _bytes(value: bytes) -> bytes:
    return _I32.pack(len(value)) + value


def offset_commit_key(group_id: str, topic: str, partition: int) -> bytes:
    return (
        _I16.pack(OFFSET_COMMIT_KEY_VERSION)
        + _string(group_id)
        + _string(topic)
        + _I32.pack(partition)
    )


def offset_commit_value(
    offset: int, leader_epoch: int, metadata: str | None, commit_ms: int
) -> bytes:
    return (
        _I16.pack(OFFSET_COMMIT_VALUE_VERSION)
        + _I64.pack(offset)
        + _I32.pack(leader_epoch)
        + _string(metadata or "")
        + _I64.pack(commit_ms)
    )


def group_metadata_key(group_id: str) -> bytes:
    return _I16.pack(GROUP_METADATA_KEY_VERSION) + _string(group_id)


@dataclass(frozen=True, slots=True)
class MemberMetadata:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    subscription: bytes
    assignment: bytes


def group_metadata_value(
    protocol_type: str,
    generation: int,
    protocol: str | None,
    leader: str | None,
    state_ms: int,
    members: Sequence[MemberMetadata],
) -> bytes:
    out = bytearray(_I16.pack(GROUP_METADATA_VALUE_VERSION))
    out += _string(protocol_type) + _I32.pack(generation) + _string(protocol) + _string(leader)
    out += _I64.pack(state_ms) + _I32.pack(len(members))
    for m in members:
        out += _string(m.member_id) + _string(m.group_instance_id) + _string(m.client_id)
        out += _string(m.client_host)
        out += _I32.pack(m.rebalance_timeout_ms) + _I32.pack(m.session_timeout_ms)
        out += _bytes(m.subscription) + _bytes(m.assignment)
    return bytes(out)


def _varint(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)  # zigzag
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def build_batch(records: Iterable[Record], timestamp_ms: int) -> bytearray:
    """One uncompressed v2 batch (base offset 0: the log assigns offsets), no producer."""
    body = bytearray()
    n = 0
    for key, value in records:
        rec = b"\x00" + _varint(0) + _varint(n) + _varint(len(key)) + key
        rec += _varint(-1) if value is None else _varint(len(value)) + value
        rec += _varint(0)  # headers
        body += _varint(len(rec)) + rec
        n += 1
    after_crc = _BATCH_AFTER_CRC.pack(0, n - 1, timestamp_ms, timestamp_ms, -1, -1, -1, n) + body
    head = struct.pack(">qiibI", 0, 4 + 1 + 4 + len(after_crc), -1, 2, crc32c(after_crc))
    return bytearray(head + after_crc)
