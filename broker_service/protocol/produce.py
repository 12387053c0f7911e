"""Produce request parsing and response building by hand (versions 3-11), zero-copy.

The records of each partition come back as a ``memoryview`` into the request frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from broker_service.protocol.primitives import (
    ByteReader,
    array_len,
    pack_i16,
    pack_i32,
    pack_i64,
    string,
)


@dataclass(frozen=True, slots=True)
class ProducePartition:
    index: int
    records: memoryview | None


@dataclass(frozen=True, slots=True)
class ProduceTopic:
    name: str
    partitions: list[ProducePartition]


@dataclass(frozen=True, slots=True)
class ProduceRequest:
    transactional_id: str | None
    acks: int
    timeout_ms: int
    topics: list[ProduceTopic]


@dataclass(slots=True)
class ProducePartitionResult:
    index: int
    error_code: int = 0
    base_offset: int = -1
    log_append_time: int = -1
    log_start_offset: int = -1
    error_message: str | None = None
    # KIP-467: (index in the batch, message) of each record that failed the batch (v8+)
    record_errors: list[tuple[int, str | None]] = field(default_factory=list)


def parse_produce(frame: memoryview | bytes, offset: int, version: int) -> ProduceRequest:
    flexible = version >= 9
    r = ByteReader(frame, offset)
    tid = r.string(flexible)
    acks = r.i16()
    timeout = r.i32()
    topics = []
    for _ in range(r.array_len(flexible)):
        name = r.string(flexible) or ""
        parts = []
        for _ in range(r.array_len(flexible)):
            idx = r.i32()
            records = r.bytes_(flexible)
            if flexible:
                r.skip_tagged_fields()
            parts.append(ProducePartition(idx, records))
        if flexible:
            r.skip_tagged_fields()
        topics.append(ProduceTopic(name, parts))
    if flexible:
        r.skip_tagged_fields()
    return ProduceRequest(tid, acks, timeout, topics)


def build_produce_response(
    version: int,
    topics: list[tuple[str, list[ProducePartitionResult]]],
    throttle_ms: int = 0,
) -> bytes:
    flexible = version >= 9
    out = bytearray(array_len(len(topics), flexible))
    for name, parts in topics:
        out += string(name, flexible)
        out += array_len(len(parts), flexible)
        for p in parts:
            out += pack_i32(p.index)
            out += pack_i16(p.error_code)
            out += pack_i64(p.base_offset)
            out += pack_i64(p.log_append_time)
            if version >= 5:
                out += pack_i64(p.log_start_offset)
            if version >= 8:
                out += array_len(len(p.record_errors), flexible)
                for batch_index, message in p.record_errors:
                    out += pack_i32(batch_index)
                    out += string(message, flexible)
                    if flexible:
                        out += b"\x00"
                out += string(p.error_message, flexible)
            if flexible:
                out += b"\x00"
        if flexible:
            out += b"\x00"
    out += pack_i32(throttle_ms)
    if flexible:
        out += b"\x00"
    return bytes(out)
