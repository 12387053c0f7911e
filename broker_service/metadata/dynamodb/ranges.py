"""Ranges packed into binary attributes (log entries, stream chunks).

DynamoDB bills a write per started KB of the item (twice in a transaction), so a WAL commit's
log entry and a fold's chunk cost what their packed ranges weigh. Neighbouring ranges are
alike: a WAL object's ranges lie back to back in it, a stream's ranges follow one another in
offsets, and their timestamps are milliseconds apart. A range is therefore written as seven
varints of its differences from the range before it in the same part (~12 bytes, against 52
for the fixed layout this replaced): 32 partitions' ranges fit one KB.

The object keys a part's ranges name are one binary attribute too (``pack_keys``): WAL object
keys share their prefix (``wal/<broker>-<epoch>-<time>``), so each is written as the length
of the prefix it shares with the key before it and the rest (~10 bytes instead of ~40): a
fold's chunk names one object per range. A list of strings (the earlier layout) is still read.

A part starts with ``_MAGIC``, whose byte 7 has its top bit set. Parts of the fixed layout
(``_FIXED``, still read) start with a stream id as a little-endian i64, whose byte 7 is never
above 0x3f (stream ids are positive counters), so the two never look alike.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from broker_service.metadata.dynamodb.base import MAX_TX_BYTES
from broker_service.metadata.records import StreamRange

_FIXED = struct.Struct("<qqqqqqI")  # the earlier layout: 6 x i64 + key index (u32), 52 bytes
_MAGIC = b"RNGv2\x00\x00\x82"
# The most bytes one range can take: 7 varints of up to 10 bytes.
_MAX_RANGE_BYTES = 70
# Bytes of ranges (and object keys) per item, under the 400 KB item limit with room for the
# other attributes.
PART_BYTES = 350_000
# Ranges one item (a chunk) is planned for, whatever they weigh: PART_BYTES of the worst case.
RANGES_PER_PART = PART_BYTES // _MAX_RANGE_BYTES  # 5000
MAX_RANGES_PER_OBJECT = (MAX_TX_BYTES - 200_000) // _MAX_RANGE_BYTES  # 54k; headroom for the rest


def _zigzag(v: int) -> int:
    return v << 1 if v >= 0 else ((-v) << 1) - 1


def _unzigzag(u: int) -> int:
    return u >> 1 if not u & 1 else -((u + 1) >> 1)


def _put_varint(buf: bytearray, u: int) -> None:
    while u > 0x7F:
        buf.append((u & 0x7F) | 0x80)
        u >>= 7
    buf.append(u)


class _Encoder:
    """One part: every range relative to the one before it in the part."""

    def __init__(self) -> None:
        self.buf = bytearray(_MAGIC)
        self.count = 0
        self._prev: StreamRange | None = None
        self._prev_key = 0

    def add(self, r: StreamRange, key: int) -> None:
        p = self._prev
        put, buf = _put_varint, self.buf
        put(buf, key)
        if p is None:
            fields = (r.stream_id, r.start_offset, r.end_offset - r.start_offset, r.position,
                      r.size, r.max_timestamp)  # fmt: skip
        else:
            same_stream = r.stream_id == p.stream_id
            same_key = key == self._prev_key
            fields = (
                r.stream_id - p.stream_id,
                r.start_offset - (p.end_offset if same_stream else p.start_offset),
                r.end_offset - r.start_offset,
                r.position - (p.position + p.size if same_key else 0),
                r.size,
                r.max_timestamp - p.max_timestamp,
            )
        for v in fields:
            put(buf, _zigzag(v))
        self._prev, self._prev_key = r, key
        self.count += 1


def _split(
    ranges: Sequence[StreamRange], keys: dict[str, int], first_budget: int
) -> list[bytes]:
    """Parts of at most ``first_budget`` bytes for the first, PART_BYTES for the others."""
    parts: list[bytes] = []
    enc, budget = _Encoder(), first_budget
    for r in ranges:
        if enc.count and len(enc.buf) + _MAX_RANGE_BYTES > budget:
            parts.append(bytes(enc.buf))
            enc, budget = _Encoder(), PART_BYTES
        enc.add(r, keys[r.object_key])
    if enc.count:
        parts.append(bytes(enc.buf))
    return parts


def pack_ranges(ranges: Sequence[StreamRange]) -> tuple[list[str], list[bytes]]:
    """Ranges -> (distinct object keys, binary parts of at most PART_BYTES each, the keys
    included in the first's budget: the first item carries them)."""
    keys: dict[str, int] = {}
    for r in ranges:
        keys.setdefault(r.object_key, len(keys))
    key_bytes = len(pack_keys(list(keys)))
    first_budget = max(PART_BYTES - key_bytes, 4 * _MAX_RANGE_BYTES)
    return list(keys), _split(ranges, keys, first_budget)


def fits_one_item(ranges: Sequence[StreamRange]) -> bool:
    """Whether ``ranges`` pack into one part (a stream chunk is one item)."""
    return len(pack_ranges(ranges)[1]) <= 1


def split_for_items(ranges: Sequence[StreamRange]) -> list[Sequence[StreamRange]]:
    """Consecutive slices of ``ranges`` that pack into one item each (stream chunks)."""
    out: list[Sequence[StreamRange]] = []
    start = 0
    while start < len(ranges):
        n = min(RANGES_PER_PART, len(ranges) - start)
        while n > 1 and not fits_one_item(ranges[start : start + n]):
            n //= 2  # many distinct object keys: their names weigh more than the ranges
        out.append(ranges[start : start + n])
        start += n
    return out


def pack_keys(keys: Sequence[str]) -> bytes:
    buf = bytearray()
    _put_varint(buf, len(keys))
    prev = b""
    for key in keys:
        k = key.encode()
        shared = 0
        limit = min(len(k), len(prev))
        while shared < limit and k[shared] == prev[shared]:
            shared += 1
        _put_varint(buf, shared)
        _put_varint(buf, len(k) - shared)
        buf += k[shared:]
        prev = k
    return bytes(buf)


def unpack_keys(value: bytes | Sequence[str] | None) -> list[str]:
    """An item's ``keys`` attribute: packed (bytes) or the earlier list of strings."""
    if value is None:
        return []
    if not isinstance(value, bytes | bytearray):
        return [str(k) for k in value]
    vals, i = _varints(value, 0, 1)
    (count,) = vals
    out: list[str] = []
    prev = b""
    for _ in range(count):
        (shared, rest), i = _varints(value, i, 2)
        k = prev[:shared] + bytes(value[i : i + rest])
        i += rest
        out.append(k.decode())
        prev = k
    return out


def _varints(data: bytes | bytearray, i: int, n: int) -> tuple[list[int], int]:
    """``n`` varints from ``data[i:]`` (all of them to the end when ``n`` is -1), and where
    they end."""
    out: list[int] = []
    end = len(data)
    while n and i < end:
        u = shift = 0
        while True:
            b = data[i]
            i += 1
            u |= (b & 0x7F) << shift
            if b < 0x80:
                break
            shift += 7
        out.append(u)
        n -= 1
    return out, i


def unpack_ranges(keys: Sequence[str], part: bytes) -> list[StreamRange]:
    if len(part) >= 8 and part[7] & 0x80:
        return _unpack_v2(keys, part)
    return [
        StreamRange(sid, start, end, keys[k], pos, size, ts)
        for sid, start, end, pos, size, ts, k in _FIXED.iter_unpack(part)
    ]


def _unpack_v2(keys: Sequence[str], part: bytes) -> list[StreamRange]:
    if part[: len(_MAGIC)] != _MAGIC:
        raise ValueError("not a packed-ranges part")
    vals, _ = _varints(part, len(_MAGIC), -1)
    if len(vals) % 7:
        raise ValueError("a packed-ranges part ends inside a range")
    out: list[StreamRange] = []
    p: StreamRange | None = None
    prev_key = 0
    uz = _unzigzag
    for j in range(0, len(vals), 7):
        k = vals[j]
        a, b, c, d, e, f = (uz(v) for v in vals[j + 1 : j + 7])
        if p is None:
            sid, start, pos, ts = a, b, d, f
        else:
            sid = p.stream_id + a
            start = b + (p.end_offset if sid == p.stream_id else p.start_offset)
            pos = d + (p.position + p.size if k == prev_key else 0)
            ts = p.max_timestamp + f
        p = StreamRange(sid, start, start + c, keys[k], pos, e, ts)
        prev_key = k
        out.append(p)
    return out
