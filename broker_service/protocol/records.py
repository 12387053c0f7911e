"""Decode the records inside one batch: only for ListOffsets by timestamp, never on the
produce/fetch path. Yields (offset, timestamp) per record.
"""

from __future__ import annotations

import gzip
import struct

from broker_service.protocol.primitives import ByteReader
from broker_service.protocol.record_batch import HEADER_SIZE, TIMESTAMP_TYPE_MASK, BatchHeader

_XERIAL_MAGIC = b"\x82SNAPPY\x00"


def _snappy(data: bytes) -> bytes:
    import cramjam

    if data.startswith(_XERIAL_MAGIC):  # Java client's xerial framing: 16-byte header, chunks
        out = bytearray()
        pos = 16
        while pos + 4 <= len(data):
            (n,) = struct.unpack_from(">i", data, pos)
            out += bytes(cramjam.snappy.decompress_raw(data[pos + 4 : pos + 4 + n]))
            pos += 4 + n
        return bytes(out)
    return bytes(cramjam.snappy.decompress_raw(data))


def decompress(codec: int, data: bytes) -> bytes:
    if codec == 0:
        return data
    if codec == 1:
        return gzip.decompress(data)
    if codec == 2:
        return _snappy(data)
    if codec == 3:
        import cramjam

        return bytes(cramjam.lz4.decompress(data))
    if codec == 4:
        import cramjam

        return bytes(cramjam.zstd.decompress(data))
    raise ValueError(f"unknown compression codec {codec}")


def record_timestamps(header: BatchHeader, batch: bytes | memoryview) -> list[tuple[int, int]]:
    """(offset, timestamp) per record; a LogAppendTime batch's records all have its max
    timestamp (the broker's clock), as Kafka's DefaultRecordBatch reads them."""
    body = decompress(header.compression, bytes(batch[HEADER_SIZE : header.size]))
    log_append = bool(header.attributes & TIMESTAMP_TYPE_MASK)
    r = ByteReader(body)
    out = []
    for _ in range(header.record_count):
        length = r.varint()
        start = r.pos
        r.i8()  # attributes
        ts_delta = r.varint()
        off_delta = r.varint()
        ts = header.max_timestamp if log_append else header.base_timestamp + ts_delta
        out.append((header.base_offset + off_delta, ts))
        r.pos = start + length
    return out
