"""StreamSetObject: the on-object-store format holding many streams' batches.

Format v1 (all integers big-endian)::

    data blocks   each block: whole record batches of one stream, offsets ascending, at most
                  ``block_bytes`` unless one batch is larger; a stream's blocks are contiguous
    index         u32 entry count, then one entry per block:
                  stream_id i64 | start_offset i64 | end_offset i64 (exclusive)
                  | position u64 | size u32 | max_timestamp i64
    footer        index_position u64 | index_size u32 | magic b"KSSO" | version u16  (18 bytes)

The metadata store records one row per (stream, object): the stream's offset range and the
byte span of its blocks. A reader loads the object's index once (footer, then index: two small
ranged GETs, cached), then fetches only the blocks it needs; so metadata stays small however
large objects get, and a catch-up read never pulls more than a block or two per fetch.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

MAGIC = b"KSSO"
VERSION = 1
_FOOTER = struct.Struct(">QI4sH")
_ENTRY = struct.Struct(">qqqQIq")
_COUNT = struct.Struct(">I")
FOOTER_SIZE = _FOOTER.size

Buffer = bytes | bytearray | memoryview

# The stream id in the index of a section no stream range will ever name: zone-forwarded
# batches riding in a WAL object (stream/wal/object.py), read by position by the leader they
# are forwarded to. Stream ids are positive, so a reader looking up a stream's blocks in the
# index never takes these bytes (with no offsets yet, their index offsets are 0..count).
FORWARDED_STREAM_ID = -1


@dataclass(frozen=True, slots=True)
class IndexEntry:
    stream_id: int
    start_offset: int
    end_offset: int
    position: int
    size: int
    max_timestamp: int


@dataclass(frozen=True, slots=True)
class StreamSpan:
    """Where one stream's blocks sit in the object (what the metadata store records)."""

    stream_id: int
    start_offset: int
    end_offset: int
    position: int
    size: int
    max_timestamp: int


class StreamSetObjectBuilder:
    def __init__(self, block_bytes: int = 1 << 20) -> None:
        self.block_bytes = block_bytes
        self._parts: list[Buffer] = []
        self._size = 0
        self.entries: list[IndexEntry] = []
        self.spans: list[StreamSpan] = []

    @property
    def size(self) -> int:
        return self._size

    def add_stream(self, stream_id: int, batches: Sequence[tuple[int, int, int, Buffer]]) -> None:
        """Append one stream's batches, given as (base_offset, end_offset, max_ts, bytes)."""
        span_pos = self._size
        block_start = 0
        block_pos = self._size
        block_bytes = 0
        block_ts = -1
        for i, (base, _end, ts, data) in enumerate(batches):
            if block_bytes and block_bytes + len(data) > self.block_bytes:
                self._close_block(stream_id, batches[block_start][0], base, block_pos, block_ts)
                block_start, block_pos, block_bytes, block_ts = i, self._size, 0, -1
            self._parts.append(data)
            self._size += len(data)
            block_bytes += len(data)
            block_ts = max(block_ts, ts)
        if block_bytes:
            self._close_block(
                stream_id, batches[block_start][0], batches[-1][1], block_pos, block_ts
            )
        first, last = batches[0][0], batches[-1][1]
        max_ts = max(ts for _, _, ts, _ in batches)
        self.spans.append(
            StreamSpan(stream_id, first, last, span_pos, self._size - span_pos, max_ts)
        )

    def _close_block(self, stream_id: int, start: int, end: int, pos: int, ts: int) -> None:
        self.entries.append(IndexEntry(stream_id, start, end, pos, self._size - pos, ts))

    def build(self) -> list[Buffer]:
        """The object as a list of buffers (no join: the data is written as it is)."""
        index = bytearray(_COUNT.pack(len(self.entries)))
        for e in self.entries:
            index += _ENTRY.pack(
                e.stream_id, e.start_offset, e.end_offset, e.position, e.size, e.max_timestamp
            )
        footer = _FOOTER.pack(self._size, len(index), MAGIC, VERSION)
        return [*self._parts, bytes(index), footer]


def parse_footer(footer: bytes) -> tuple[int, int]:
    """(index_position, index_size) from the last FOOTER_SIZE bytes of an object."""
    if len(footer) != FOOTER_SIZE:
        raise ValueError("object shorter than its footer")
    index_pos, index_size, magic, version = _FOOTER.unpack(footer)
    if magic != MAGIC or version != VERSION:
        raise ValueError("not a stream-set object (bad magic or version)")
    return index_pos, index_size


def parse_index(index: bytes) -> list[IndexEntry]:
    (count,) = _COUNT.unpack_from(index, 0)
    if 4 + count * _ENTRY.size > len(index):
        raise ValueError("stream-set object index is truncated")
    return [IndexEntry(*_ENTRY.unpack_from(index, 4 + i * _ENTRY.size)) for i in range(count)]


def parse_object(obj: bytes) -> list[IndexEntry]:
    """Index of a whole object held in memory (tools, tests)."""
    index_pos, index_size = parse_footer(obj[-FOOTER_SIZE:])
    return parse_index(obj[index_pos : index_pos + index_size])
