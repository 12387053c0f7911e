"""Ranges packed into binary attributes (log entries, stream chunks): 52 bytes each."""

from __future__ import annotations

import struct
from collections.abc import Sequence

from broker_service.metadata.dynamodb.base import MAX_TX_BYTES, _chunks
from broker_service.metadata.records import StreamRange

# One packed range: stream_id, start, end, position, size, max_timestamp (i64) + key index (u32).
_RANGE = struct.Struct("<qqqqqqI")
RANGES_PER_PART = 7000  # 7000 * 52 B = 364 KB per part item, under the 400 KB item limit
MAX_RANGES_PER_OBJECT = (MAX_TX_BYTES - 200_000) // _RANGE.size  # 73k; headroom for the rest


def pack_ranges(ranges: Sequence[StreamRange]) -> tuple[list[str], list[bytes]]:
    """Ranges -> (distinct object keys, binary parts of at most RANGES_PER_PART ranges)."""
    keys: dict[str, int] = {}
    parts: list[bytes] = []
    for chunk in _chunks(ranges, RANGES_PER_PART):
        buf = bytearray()
        for r in chunk:
            k = keys.setdefault(r.object_key, len(keys))
            buf += _RANGE.pack(
                r.stream_id, r.start_offset, r.end_offset, r.position, r.size, r.max_timestamp, k
            )
        parts.append(bytes(buf))
    return list(keys), parts


def unpack_ranges(keys: Sequence[str], part: bytes) -> list[StreamRange]:
    return [
        StreamRange(sid, start, end, keys[k], pos, size, ts)
        for sid, start, end, pos, size, ts, k in _RANGE.iter_unpack(part)
    ]
