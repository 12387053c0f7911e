"""StreamSetObject: the on-object-store format holding many streams' batches.

Format v1 (all integers big-endian)::

    data blocks   one contiguous block per stream: its record batches, offsets ascending
    index         u32 entry count, then per entry:
                  stream_id i64 | start_offset i64 | end_offset i64 (exclusive)
                  | position u64 | size u32
    footer        index_position u64 | index_size u32 | magic b"KSSO" | version u16  (18 bytes)

The metadata store records the same (stream, range, position, size) rows, so a reader goes
straight to a block with one ranged GET; the index makes an object self-describing for
compaction and for recovery tools.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAGIC = b"KSSO"
VERSION = 1
_FOOTER = struct.Struct(">QI4sH")
_ENTRY = struct.Struct(">qqqQI")
_COUNT = struct.Struct(">I")
FOOTER_SIZE = _FOOTER.size


@dataclass(frozen=True, slots=True)
class IndexEntry:
    stream_id: int
    start_offset: int
    end_offset: int
    position: int
    size: int


class StreamSetObjectBuilder:
    def __init__(self) -> None:
        self._parts: list[bytes | bytearray | memoryview] = []
        self._size = 0
        self.entries: list[IndexEntry] = []

    def add_block(
        self, stream_id: int, start: int, end: int, batches: list[bytes | memoryview]
    ) -> None:
        position = self._size
        for b in batches:
            self._parts.append(b)
            self._size += len(b)
        self.entries.append(IndexEntry(stream_id, start, end, position, self._size - position))

    def build(self) -> bytes:
        index = bytearray(_COUNT.pack(len(self.entries)))
        for e in self.entries:
            index += _ENTRY.pack(e.stream_id, e.start_offset, e.end_offset, e.position, e.size)
        footer = _FOOTER.pack(self._size, len(index), MAGIC, VERSION)
        return b"".join([*self._parts, bytes(index), footer])


def parse_index(obj: bytes) -> list[IndexEntry]:
    if len(obj) < FOOTER_SIZE:
        raise ValueError("object shorter than its footer")
    index_pos, index_size, magic, version = _FOOTER.unpack_from(obj, len(obj) - FOOTER_SIZE)
    if magic != MAGIC or version != VERSION:
        raise ValueError("not a stream-set object")
    (count,) = _COUNT.unpack_from(obj, index_pos)
    return [
        IndexEntry(*_ENTRY.unpack_from(obj, index_pos + 4 + i * _ENTRY.size)) for i in range(count)
    ]
