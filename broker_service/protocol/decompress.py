"""Decompressed record bytes in bounded pieces, sans-I/O.

A batch may carry a value that decompresses to hundreds of MiB (a 512 MiB zstd value fits in a
510 KB batch): what reads records off the produce/fetch path (timestamp lookups, log
compaction) takes the records section piece by piece, never the whole of it at once, and
refuses beyond ``max_output`` (``TooLarge``). Codecs as Kafka numbers them: 0 none, 1 gzip,
2 snappy (raw or the Java client's xerial framing), 3 lz4 (frame format), 4 zstd.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

PIECE = 64 * 1024
_XERIAL_MAGIC = b"\x82SNAPPY\x00"


class TooLarge(ValueError):
    """The records decompress to more than the caller allows."""


def pieces(codec: int, data: bytes | memoryview, max_output: int) -> Iterator[bytes]:
    total = 0
    for piece in _pieces(codec, bytes(data)):
        total += len(piece)
        if total > max_output:
            raise TooLarge(f"records decompress to more than {max_output} bytes")
        if piece:
            yield piece


def _pieces(codec: int, data: bytes) -> Iterator[bytes]:
    if codec == 0:
        for i in range(0, len(data), PIECE):
            yield data[i : i + PIECE]
    elif codec == 1:
        yield from _zlib(data)
    elif codec == 2:
        yield from _snappy(data)
    elif codec == 3:
        yield from _lz4(data)
    elif codec == 4:
        yield from _zstd(data)
    else:
        raise ValueError(f"unknown compression codec {codec}")


def _zlib(data: bytes) -> Iterator[bytes]:
    d = zlib.decompressobj(wbits=47)  # gzip or zlib header, detected
    pending = data
    while pending:
        out = d.decompress(pending, PIECE)
        yield out
        pending = d.unconsumed_tail
        if d.eof:
            return
    yield d.flush()


def _snappy(data: bytes) -> Iterator[bytes]:
    import cramjam

    if not data.startswith(_XERIAL_MAGIC):  # raw snappy: one block, its length up front
        yield _bounded_raw_snappy(data)
        return
    pos = 16  # xerial: magic, version, compatible version; then [length][block] chunks
    while pos + 4 <= len(data):
        (n,) = struct.unpack_from(">i", data, pos)
        yield bytes(cramjam.snappy.decompress_raw(data[pos + 4 : pos + 4 + n]))
        pos += 4 + n


def _bounded_raw_snappy(data: bytes) -> bytes:
    import cramjam

    size = 0
    shift = 0
    for b in data[:5]:  # the uncompressed length, a varint at the front
        size |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    if size > 64 << 20:
        raise TooLarge(f"a raw snappy block of {size} bytes")
    return bytes(cramjam.snappy.decompress_raw(data))


def _lz4(data: bytes) -> Iterator[bytes]:
    import lz4.frame

    d = lz4.frame.LZ4FrameDecompressor()
    out = d.decompress(data, max_length=PIECE)
    yield out
    while not d.eof and d.needs_input is False:
        out = d.decompress(b"", max_length=PIECE)
        if not out:
            return
        yield out


def _zstd(data: bytes) -> Iterator[bytes]:
    import io

    import zstandard

    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
    while piece := reader.read(PIECE):
        yield piece


class RecordHeads:
    """Walks the records of a decompressed stream fed piece by piece, reading each record's
    head (attributes, timestamp delta, offset delta) and skipping the rest without keeping
    it: memory stays at one piece whatever the records hold."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._skip = 0

    def feed(self, piece: bytes) -> Iterator[tuple[int, int, int]]:
        """(timestamp delta, offset delta, key length: -1 for none) of every record whose
        head is in what arrived."""
        if self._skip:
            if self._skip >= len(piece):
                self._skip -= len(piece)
                return
            piece = piece[self._skip :]
            self._skip = 0
        buf = self._buf
        buf += piece
        pos = 0
        while True:
            head = _record_head(buf, pos)
            if head is None:
                break
            length, body_start, ts_delta, off_delta, key_len = head
            yield ts_delta, off_delta, key_len
            end = body_start + length
            if end > len(buf):
                self._skip = end - len(buf)
                pos = len(buf)
                break
            pos = end
        del buf[:pos]


def _varint(buf: bytearray, pos: int) -> tuple[int, int] | None:
    value = shift = 0
    while pos < len(buf):
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return (value >> 1) ^ -(value & 1), pos  # zig-zag
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")
    return None


def _record_head(buf: bytearray, pos: int) -> tuple[int, int, int, int, int] | None:
    got = _varint(buf, pos)
    if got is None:
        return None
    length, body = got
    if length < 0:
        raise ValueError("negative record length")
    if body + 1 > len(buf):
        return None
    ts = _varint(buf, body + 1)  # after the attributes byte
    if ts is None:
        return None
    off = _varint(buf, ts[1])
    if off is None:
        return None
    key = _varint(buf, off[1])
    if key is None:
        return None
    return length, body, ts[0], off[0], key[0]
