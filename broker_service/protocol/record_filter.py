"""Record-level view of one stored batch for log compaction (``cleanup.policy=compact``).

Off the hot path: the compactor decodes a batch's records to learn their keys, then writes
the batch again with only the records it keeps. As in Kafka's log cleaner, the rewritten batch
keeps its baseOffset, lastOffsetDelta, timestamps and producer fields (so offsets and the
producer's last sequence stay what they were); only the record count, the records, the
length and the CRC change. Kept records are copied as they are (their offset deltas stay
relative to the unchanged base offset).
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass

from crc32c import crc32c

from broker_service.protocol.primitives import ByteReader
from broker_service.protocol.record_batch import (
    HEADER_SIZE,
    LOG_OVERHEAD,
    TIMESTAMP_TYPE_MASK,
    BatchHeader,
)
from broker_service.protocol.records import decompress

_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class StoredRecord:
    offset: int
    timestamp: int
    key: bytes | None
    is_tombstone: bool  # null value
    raw: bytes  # the record as encoded (length varint included)


def records_of(header: BatchHeader, batch: bytes | memoryview) -> list[StoredRecord]:
    body = decompress(header.compression, bytes(batch[HEADER_SIZE : header.size]))
    log_append = bool(header.attributes & TIMESTAMP_TYPE_MASK)  # every record: max timestamp
    r = ByteReader(body)
    out = []
    for _ in range(header.record_count):
        begin = r.pos
        length = r.varint()
        start = r.pos
        r.i8()  # attributes
        ts_delta = r.varint()
        off_delta = r.varint()
        key_len = r.varint()
        key = bytes(body[r.pos : r.pos + key_len]) if key_len >= 0 else None
        r.pos += max(key_len, 0)
        value_len = r.varint()
        r.pos = start + length
        out.append(
            StoredRecord(
                header.base_offset + off_delta,
                header.max_timestamp if log_append else header.base_timestamp + ts_delta,
                key,
                value_len < 0,
                bytes(body[begin : r.pos]),
            )
        )
    return out


def _compress(codec: int, data: bytes) -> bytes:
    if codec == 0:
        return data
    if codec == 1:
        return gzip.compress(data)
    import cramjam

    if codec == 2:
        return bytes(cramjam.snappy.compress_raw(data))
    if codec == 3:
        return bytes(cramjam.lz4.compress(data))
    if codec == 4:
        return bytes(cramjam.zstd.compress(data))
    raise ValueError(f"unknown compression codec {codec}")


def rebuild_batch(
    header: BatchHeader, batch: bytes | memoryview, kept: list[StoredRecord]
) -> bytes:
    """The batch with only ``kept`` records (a subset of its own, in order): same header
    fields except recordCount, batchLength and CRC; compressed with the batch's codec."""
    body = _compress(header.compression, b"".join(r.raw for r in kept))
    out = bytearray(batch[:HEADER_SIZE])
    out += body
    _I32.pack_into(out, 8, len(out) - LOG_OVERHEAD)  # batchLength
    _I32.pack_into(out, 57, len(kept))  # recordCount
    _U32.pack_into(out, 17, crc32c(bytes(out[21:])))
    return bytes(out)
