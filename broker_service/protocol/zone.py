"""Private requests between brokers for zone awareness (DESIGN.md section 10), sans-I/O.

They are served only to other brokers: never advertised in ApiVersions, refused without the
cluster's ClusterAction permission when ACLs are on (as Kafka's inter-broker APIs are), and
keyed far above Kafka's API keys. Header v1 (non-flexible), body hand-written, big-endian,
strings as Kafka's (i16 length, -1 for null):

ZoneForwardProduce v0 (key 32100): an in-zone broker made batches durable in an object and
asks the partition's leader to append them::

    request   timeout_ms i32 | acks i16 | object_key string
              | items i32 count of (topic string | partition i32 | position i64 | size i32)
    response  items i32 count of (error_code i16 | base_offset i64 | log_append_time i64
              | log_start_offset i64 | error_message string)   -- one per request item

ReplicaState v0 (key 32101): a broker serving committed data of partitions it does not lead
asks their leader what is committed (pointers only, never bytes), long-polled::

    request   max_wait_ms i32 | partitions i32 count of (topic string | partition i32
              | from_offset i64 | aborted_from i64)
    response  partitions i32 count of (error_code i16 | leader_epoch i32
              | log_start_offset i64 | high_watermark i64 | last_stable_offset i64
              | committed_end i64
              | ranges i32 count of (start i64 | end i64 | object_key string | position i64
                                     | size i64 | max_timestamp i64)
              | aborted i32 count of (producer_id i64 | first_offset i64 | last_offset i64))

``ranges`` are the leader's committed ranges from the one holding ``from_offset`` on (at most
``MAX_RANGES``); ``aborted`` its aborted transactions ending at or after ``aborted_from``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from broker_service.protocol.primitives import ByteReader, ProtocolError, pack_i32, string

ZONE_FORWARD_PRODUCE = 32100
REPLICA_STATE = 32101
PRIVATE_KEYS = frozenset({ZONE_FORWARD_PRODUCE, REPLICA_STATE})
MAX_RANGES = 1000  # per partition per ReplicaState answer

_ITEM_RESULT = struct.Struct(">hqqq")
_RANGE_HEAD = struct.Struct(">qq")
_RANGE_TAIL = struct.Struct(">qqq")
_ABORTED = struct.Struct(">qqq")
_PART_STATE = struct.Struct(">hiqqqq")


@dataclass(frozen=True, slots=True)
class ForwardItem:
    topic: str
    partition: int
    position: int
    size: int


@dataclass(frozen=True, slots=True)
class ForwardRequest:
    timeout_ms: int
    acks: int
    object_key: str
    items: list[ForwardItem]


@dataclass(slots=True)
class ForwardResult:
    error_code: int = 0
    base_offset: int = -1
    log_append_time: int = -1
    log_start_offset: int = -1
    error_message: str | None = None


def _count(r: ByteReader, min_size: int) -> int:
    n = r.i32()
    if n < 0 or n * min_size > r.remaining():
        raise ProtocolError(f"array length {n} exceeds the frame")
    return n


def _str(r: ByteReader) -> str:
    s = r.string(False)
    if s is None:
        raise ProtocolError("null string")
    return s


def encode_forward_request(req: ForwardRequest) -> bytes:
    out = bytearray(struct.pack(">ih", req.timeout_ms, req.acks))
    out += string(req.object_key, False)
    out += pack_i32(len(req.items))
    for it in req.items:
        out += string(it.topic, False) + struct.pack(">iqi", it.partition, it.position, it.size)
    return bytes(out)


def parse_forward_request(frame: memoryview | bytes, offset: int = 0) -> ForwardRequest:
    r = ByteReader(frame, offset)
    timeout_ms, acks = r.i32(), r.i16()
    key = _str(r)
    items = []
    for _ in range(_count(r, 18)):
        topic = _str(r)
        items.append(ForwardItem(topic, r.i32(), r.i64(), r.i32()))
    return ForwardRequest(timeout_ms, acks, key, items)


def encode_forward_response(results: list[ForwardResult]) -> bytes:
    out = bytearray(pack_i32(len(results)))
    for res in results:
        out += _ITEM_RESULT.pack(
            res.error_code, res.base_offset, res.log_append_time, res.log_start_offset
        )
        out += string(res.error_message, False)
    return bytes(out)


def parse_forward_response(body: memoryview | bytes, offset: int = 0) -> list[ForwardResult]:
    r = ByteReader(body, offset)
    out = []
    for _ in range(_count(r, _ITEM_RESULT.size + 2)):
        code, base, append_time, start = (r.i16(), r.i64(), r.i64(), r.i64())
        out.append(ForwardResult(code, base, append_time, start, r.string(False)))
    return out


# -- ReplicaState ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ReplicaAsk:
    topic: str
    partition: int
    from_offset: int
    aborted_from: int


@dataclass(frozen=True, slots=True)
class ReplicaStateRequest:
    max_wait_ms: int
    partitions: list[ReplicaAsk]


@dataclass(frozen=True, slots=True)
class RangeInfo:
    start_offset: int
    end_offset: int
    object_key: str
    position: int
    size: int
    max_timestamp: int


@dataclass(slots=True)
class PartitionState:
    error_code: int = 0
    leader_epoch: int = -1
    log_start_offset: int = -1
    high_watermark: int = -1
    last_stable_offset: int = -1
    committed_end: int = -1
    ranges: list[RangeInfo] = field(default_factory=list)
    aborted: list[tuple[int, int, int]] = field(default_factory=list)  # pid, first, last


def encode_replica_request(req: ReplicaStateRequest) -> bytes:
    out = bytearray(pack_i32(req.max_wait_ms) + pack_i32(len(req.partitions)))
    for p in req.partitions:
        out += string(p.topic, False)
        out += struct.pack(">iqq", p.partition, p.from_offset, p.aborted_from)
    return bytes(out)


def parse_replica_request(frame: memoryview | bytes, offset: int = 0) -> ReplicaStateRequest:
    r = ByteReader(frame, offset)
    max_wait = r.i32()
    asks = []
    for _ in range(_count(r, 22)):
        topic = _str(r)
        asks.append(ReplicaAsk(topic, r.i32(), r.i64(), r.i64()))
    return ReplicaStateRequest(max_wait, asks)


def encode_replica_response(states: list[PartitionState]) -> bytes:
    out = bytearray(pack_i32(len(states)))
    for s in states:
        out += _PART_STATE.pack(
            s.error_code, s.leader_epoch, s.log_start_offset, s.high_watermark,
            s.last_stable_offset, s.committed_end,
        )  # fmt: skip
        out += pack_i32(len(s.ranges))
        for rg in s.ranges:
            out += _RANGE_HEAD.pack(rg.start_offset, rg.end_offset)
            out += string(rg.object_key, False)
            out += _RANGE_TAIL.pack(rg.position, rg.size, rg.max_timestamp)
        out += pack_i32(len(s.aborted))
        for a in s.aborted:
            out += _ABORTED.pack(*a)
    return bytes(out)


def parse_replica_response(body: memoryview | bytes, offset: int = 0) -> list[PartitionState]:
    r = ByteReader(body, offset)
    out = []
    for _ in range(_count(r, _PART_STATE.size + 8)):
        s = PartitionState(r.i16(), r.i32(), r.i64(), r.i64(), r.i64(), r.i64())
        for _ in range(_count(r, 42)):
            start, end = r.i64(), r.i64()
            key = _str(r)
            s.ranges.append(RangeInfo(start, end, key, r.i64(), r.i64(), r.i64()))
        for _ in range(_count(r, _ABORTED.size)):
            s.aborted.append((r.i64(), r.i64(), r.i64()))
        out.append(s)
    return out
