"""Decode the records inside one batch: only for ListOffsets by timestamp, never on the
produce/fetch path. Yields (offset, timestamp) per record.
"""

from __future__ import annotations

from collections.abc import Iterator

from broker_service.protocol.decompress import RecordHeads, pieces
from broker_service.protocol.record_batch import HEADER_SIZE, TIMESTAMP_TYPE_MASK, BatchHeader

MAX_DECOMPRESSED = 64 << 20  # records a whole-batch reader (compaction) may hold at once


def decompress(codec: int, data: bytes | memoryview, max_output: int = MAX_DECOMPRESSED) -> bytes:
    """A batch's records section, whole (``TooLarge`` past ``max_output`` bytes)."""
    return b"".join(pieces(codec, data, max_output))


def record_timestamps(
    header: BatchHeader, batch: bytes | memoryview, max_output: int = 1 << 30
) -> Iterator[tuple[int, int]]:
    """(offset, timestamp) of each record, decompressing piece by piece (bounded memory,
    whatever the values hold; ``TooLarge`` past ``max_output`` decompressed bytes). A
    LogAppendTime batch's records all have its max timestamp (the broker's clock), as Kafka's
    DefaultRecordBatch reads them."""
    log_append = bool(header.attributes & TIMESTAMP_TYPE_MASK)
    heads = RecordHeads()
    seen = 0
    for piece in pieces(header.compression, batch[HEADER_SIZE : header.size], max_output):
        for ts_delta, off_delta, _key_len in heads.feed(piece):
            ts = header.max_timestamp if log_append else header.base_timestamp + ts_delta
            yield header.base_offset + off_delta, ts
            seen += 1
            if seen >= header.record_count:
                return
