"""Fetch response building by hand (versions 4-16): record batches are passed through as
buffers, never copied into a response body. Returns a list for ``transport.writelines``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from broker_service.protocol.primitives import (
    array_len,
    bytes_len,
    pack_i16,
    pack_i32,
    pack_i64,
    string,
)


@dataclass(slots=True)
class FetchPartitionResult:
    index: int
    error_code: int = 0
    high_watermark: int = -1
    last_stable_offset: int = -1
    log_start_offset: int = -1
    records: list[memoryview | bytes] = field(default_factory=list)
    aborted: list[tuple[int, int]] = field(default_factory=list)  # (producer id, first offset)
    preferred_read_replica: int = -1  # KIP-392 (v11+): fetch from this broker instead

    @property
    def size(self) -> int:
        return sum(len(b) for b in self.records)


@dataclass(slots=True)
class FetchTopicResult:
    name: str
    topic_id: uuid.UUID
    partitions: list[FetchPartitionResult]


def build_fetch_response(
    version: int,
    topics: list[FetchTopicResult],
    throttle_ms: int = 0,
    error_code: int = 0,
    session_id: int = 0,
) -> list[memoryview | bytes]:
    flexible = version >= 12
    head = bytearray(pack_i32(throttle_ms))
    if version >= 7:
        head += pack_i16(error_code) + pack_i32(session_id)
    head += array_len(len(topics), flexible)
    out: list[memoryview | bytes] = []
    for t in topics:
        head += t.topic_id.bytes if version >= 13 else string(t.name, flexible)
        head += array_len(len(t.partitions), flexible)
        for p in t.partitions:
            head += pack_i32(p.index) + pack_i16(p.error_code) + pack_i64(p.high_watermark)
            head += pack_i64(p.last_stable_offset)
            if version >= 5:
                head += pack_i64(p.log_start_offset)
            head += array_len(len(p.aborted), flexible)  # aborted_transactions
            for producer_id, first_offset in p.aborted:
                head += pack_i64(producer_id) + pack_i64(first_offset)
                if flexible:
                    head += b"\x00"
            if version >= 11:
                head += pack_i32(p.preferred_read_replica)
            size = p.size
            head += bytes_len(size, flexible)
            if size:
                out.append(bytes(head))
                out.extend(p.records)
                head = bytearray()
            if flexible:
                head += b"\x00"
        if flexible:
            head += b"\x00"
    if flexible:
        head += b"\x00"
    out.append(bytes(head))
    return out
