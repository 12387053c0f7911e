"""Transaction markers: the control batches a partition leader writes when a transaction ends.

A marker is a batch with the transactional and control attribute bits set, the producer's id
and epoch, and one record whose key is (version int16 = 0, type int16: 0 abort, 1 commit)
and whose value is (version int16 = 0, coordinator epoch int32).
"""

from __future__ import annotations

import struct

from crc32c import crc32c

from broker_service.protocol.primitives import ByteReader, varint
from broker_service.protocol.record_batch import (
    CONTROL_FLAG,
    HEADER_SIZE,
    TRANSACTIONAL_FLAG,
    BatchHeader,
)

ABORT = 0
COMMIT = 1

_HEADER_AFTER_CRC = struct.Struct(">hiqqqhii")  # attributes .. recordCount


def build_marker(
    producer_id: int, producer_epoch: int, commit: bool, coordinator_epoch: int, timestamp: int
) -> bytearray:
    """One control batch (base offset 0, to be assigned by the log)."""
    key = struct.pack(">hh", 0, COMMIT if commit else ABORT)
    value = struct.pack(">hi", 0, coordinator_epoch)
    body = (
        b"\x00"  # record attributes
        + varint(0)  # timestamp delta
        + varint(0)  # offset delta
        + varint(len(key))
        + key
        + varint(len(value))
        + value
        + varint(0)  # headers
    )
    record = varint(len(body)) + body
    after_crc = (
        _HEADER_AFTER_CRC.pack(
            TRANSACTIONAL_FLAG | CONTROL_FLAG,
            0,  # lastOffsetDelta
            timestamp,
            timestamp,
            producer_id,
            producer_epoch,
            -1,  # baseSequence
            1,  # recordCount
        )
        + record
    )
    batch_length = 4 + 1 + 4 + len(after_crc)  # leader epoch + magic + crc + rest
    return bytearray(struct.pack(">qiibI", 0, batch_length, -1, 2, crc32c(after_crc)) + after_crc)


def marker_type(header: BatchHeader, batch: bytes | memoryview) -> int | None:
    """ABORT or COMMIT for a stored control batch (control records are never compressed);
    None when the record is not a transaction marker."""
    r = ByteReader(bytes(batch[HEADER_SIZE : header.size]))
    try:
        r.varint()  # record length
        r.i8()  # attributes
        r.varint()  # timestamp delta
        r.varint()  # offset delta
        if r.varint() < 4:
            return None
        r.i16()  # key version
        kind = r.i16()
    except Exception:
        return None
    return kind if kind in (ABORT, COMMIT) else None
