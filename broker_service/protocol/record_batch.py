"""A view over Kafka record batches (magic v2) that never decodes records on the hot path.

Layout of the 61-byte header (all big-endian)::

    0  baseOffset int64        8  batchLength int32     12 partitionLeaderEpoch int32
    16 magic int8              17 crc uint32 (CRC-32C of bytes 21..end)
    21 attributes int16        23 lastOffsetDelta int32 27 baseTimestamp int64
    35 maxTimestamp int64      43 producerId int64      51 producerEpoch int16
    53 baseSequence int32      57 recordCount int32

``baseOffset`` and ``partitionLeaderEpoch`` sit outside the CRC, so the broker assigns
offsets by rewriting them in place.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from crc32c import crc32c

from broker_service.protocol import errors as E

HEADER_SIZE = 61
LOG_OVERHEAD = 12  # baseOffset + batchLength: the bytes not counted by batchLength

_HEADER = struct.Struct(">qiibIhiqqqhii")
_I64 = struct.Struct(">q")
_I32 = struct.Struct(">i")
_I16 = struct.Struct(">h")
_U32 = struct.Struct(">I")

COMPRESSION_MASK = 0x07
TIMESTAMP_TYPE_MASK = 0x08
TRANSACTIONAL_FLAG = 0x10
CONTROL_FLAG = 0x20


class InvalidRecordBatch(ValueError, E.CorruptMessage):
    """The batch is structurally broken (maps to CORRUPT_MESSAGE)."""


class UnsupportedMagic(InvalidRecordBatch):
    """Message format v0/v1 (maps to UNSUPPORTED_FOR_MESSAGE_FORMAT)."""

    code = E.UnsupportedForMessageFormat.code


class InconsistentRecordBatch(InvalidRecordBatch):
    """A well-formed batch whose header contradicts itself (maps to INVALID_RECORD)."""

    code = E.InvalidRecord.code


@dataclass(frozen=True, slots=True)
class BatchHeader:
    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    @property
    def size(self) -> int:
        return self.batch_length + LOG_OVERHEAD

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def compression(self) -> int:
        return self.attributes & COMPRESSION_MASK

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_FLAG)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_FLAG)


def read_header(buf: memoryview | bytes, pos: int = 0) -> BatchHeader:
    if len(buf) - pos < HEADER_SIZE:
        raise InvalidRecordBatch("record batch shorter than its 61-byte header")
    return BatchHeader(*_HEADER.unpack_from(buf, pos))


def validate_batches(records: memoryview) -> list[tuple[int, BatchHeader]]:
    """Check every batch in a produce payload; return (position, header) for each.

    Raises ``InvalidRecordBatch`` for truncation, wrong magic, a bad CRC or an empty batch.
    """
    out: list[tuple[int, BatchHeader]] = []
    pos = 0
    end = len(records)
    while pos < end:
        h = read_header(records, pos)
        size = h.batch_length + LOG_OVERHEAD
        if h.batch_length < HEADER_SIZE - LOG_OVERHEAD or pos + size > end:
            raise InvalidRecordBatch("record batch length does not match the payload")
        if h.magic != 2:
            raise UnsupportedMagic(f"message format v{h.magic} is not supported (need v2)")
        if crc32c(records[pos + 21 : pos + size]) != h.crc:
            raise InvalidRecordBatch("record batch CRC-32C mismatch")
        if h.record_count <= 0 or h.last_offset_delta + 1 != h.record_count:
            raise InconsistentRecordBatch(
                f"record count {h.record_count} does not match lastOffsetDelta "
                f"{h.last_offset_delta}"
            )
        out.append((pos, h))
        pos += size
    if not out:
        raise InvalidRecordBatch("no record batch in the produce payload")
    return out


def set_base_offset(buf: bytearray | memoryview, pos: int, base_offset: int) -> None:
    _I64.pack_into(buf, pos, base_offset)


def set_leader_epoch(buf: bytearray | memoryview, pos: int, epoch: int) -> None:
    _I32.pack_into(buf, pos + 12, epoch)


def stamp_log_append_time(buf: bytearray | memoryview, pos: int, now_ms: int) -> None:
    """``message.timestamp.type=LogAppendTime``, in place as Kafka's LogValidator does it:
    the timestamp-type attribute bit set and maxTimestamp = the broker's clock (consumers
    then read it as every record's timestamp), the CRC recomputed; records are not decoded."""
    (length,) = _I32.unpack_from(buf, pos + 8)
    (attributes,) = _I16.unpack_from(buf, pos + 21)
    _I16.pack_into(buf, pos + 21, attributes | TIMESTAMP_TYPE_MASK)
    _I64.pack_into(buf, pos + 35, now_ms)
    _U32.pack_into(buf, pos + 17, crc32c(buf[pos + 21 : pos + LOG_OVERHEAD + length]))


_SPAN = struct.Struct(">qiibIhi")  # the header's first 27 bytes, up to lastOffsetDelta


def batch_spans(buf: memoryview | bytes) -> list[tuple[int, int, int, int]]:
    """(position, base_offset, size, last_offset) of each stored batch: the read path's
    light-weight walk (no CRC check, no header object)."""
    out = []
    pos = 0
    end = len(buf)
    unpack = _SPAN.unpack_from
    while pos + HEADER_SIZE <= end:
        base, length, _epoch, _magic, _crc, _attrs, delta = unpack(buf, pos)
        size = length + LOG_OVERHEAD
        if pos + size > end:
            break
        out.append((pos, base, size, base + delta))
        pos += size
    return out


def iter_headers(buf: memoryview | bytes) -> list[tuple[int, BatchHeader]]:
    """Headers of already-validated stored batches (no CRC check)."""
    out = []
    pos = 0
    end = len(buf)
    while pos + HEADER_SIZE <= end:
        h = read_header(buf, pos)
        size = h.batch_length + LOG_OVERHEAD
        if pos + size > end:
            break
        out.append((pos, h))
        pos += size
    return out
