"""Kafka's record batch codecs, bounded: re-encode a batch's records section with another
codec (a topic's ``compression.type`` other than ``producer``), as Kafka's LogValidator does.

Only for topics configured that way, never on the default produce path. Decompression never
produces more than ``max_bytes`` (a decompression bomb is refused, not materialised): gzip
through zlib's ``max_length``, snappy from its length headers, lz4 and zstd into bounded
buffers. The records themselves stay as encoded (offset and timestamp deltas relative to the
unchanged header); only the attributes' codec bits, the length, and the CRC change.
"""

from __future__ import annotations

import struct
import zlib

import cramjam
from crc32c import crc32c

from broker_service.protocol.primitives import ByteReader, ProtocolError
from broker_service.protocol.record_batch import (
    COMPRESSION_MASK,
    HEADER_SIZE,
    LOG_OVERHEAD,
    BatchHeader,
    InvalidRecordBatch,
    iter_headers,
    stamp_log_append_time,
)

NONE, GZIP, SNAPPY, LZ4, ZSTD = 0, 1, 2, 3, 4
CODECS = {"uncompressed": NONE, "gzip": GZIP, "snappy": SNAPPY, "lz4": LZ4, "zstd": ZSTD}
LEVEL_CONFIGS = {GZIP: "compression.gzip.level", LZ4: "compression.lz4.level",
                 ZSTD: "compression.zstd.level"}  # fmt: skip

_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = _XERIAL_MAGIC + struct.pack(">ii", 1, 1)  # version 1, compatible version 1
_XERIAL_BLOCK = 32 * 1024  # snappy-java's SnappyOutputStream default, as Kafka writes it
_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_I16 = struct.Struct(">h")


class TooLarge(InvalidRecordBatch):
    """Decompressed, the batch would exceed the allowed size (maps to MESSAGE_TOO_LARGE)."""


class CorruptCompressed(InvalidRecordBatch):
    """The records section does not decompress (maps to CORRUPT_MESSAGE)."""


# -- decompression, bounded ------------------------------------------------------------------
def decompress(codec: int, data: bytes | memoryview, max_bytes: int) -> bytes:
    """The records section of a batch, decompressed; ``TooLarge`` beyond ``max_bytes``."""
    if codec == NONE:
        if len(data) > max_bytes:
            raise TooLarge(f"records of {len(data)} bytes exceed {max_bytes}")
        return bytes(data)
    try:
        if codec == GZIP:
            return _gunzip(bytes(data), max_bytes)
        if codec == SNAPPY:
            return _unsnappy(bytes(data), max_bytes)
        if codec in (LZ4, ZSTD):
            return _into_bounded(cramjam.lz4 if codec == LZ4 else cramjam.zstd, data, max_bytes)
    except TooLarge:
        raise
    except (zlib.error, cramjam.DecompressionError, ValueError, struct.error) as exc:
        raise CorruptCompressed(f"records do not decompress: {exc}") from None
    raise CorruptCompressed(f"unknown compression codec {codec}")


def _gunzip(data: bytes, max_bytes: int) -> bytes:
    out = bytearray()
    while data:
        d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        out += d.decompress(data, max_bytes + 1 - len(out))
        if len(out) > max_bytes:
            raise TooLarge(f"records decompress to more than {max_bytes} bytes")
        if not d.eof:
            raise CorruptCompressed("gzip stream is truncated")
        data = d.unused_data  # a following gzip member, if any
    return bytes(out)


def _unsnappy(data: bytes, max_bytes: int) -> bytes:
    if not data.startswith(_XERIAL_MAGIC):
        if cramjam.snappy.decompress_raw_len(data) > max_bytes:
            raise TooLarge(f"records decompress to more than {max_bytes} bytes")
        return bytes(cramjam.snappy.decompress_raw(data))
    out = bytearray()  # snappy-java framing: 16-byte header, then [int32 length][raw block]
    pos = 16
    while pos < len(data):
        (n,) = _I32.unpack_from(data, pos)
        block = data[pos + 4 : pos + 4 + n]
        if n < 0 or len(block) != n:
            raise CorruptCompressed("snappy block is truncated")
        if len(out) + cramjam.snappy.decompress_raw_len(block) > max_bytes:
            raise TooLarge(f"records decompress to more than {max_bytes} bytes")
        out += bytes(cramjam.snappy.decompress_raw(block))
        pos += 4 + n
    return bytes(out)


def _into_bounded(codec: object, data: bytes | memoryview, max_bytes: int) -> bytes:
    """lz4 / zstd frames into a buffer that grows (doubling) up to ``max_bytes`` + 1: a
    result filling the buffer may have more to come; one filling max + 1 bytes is too big."""
    size = min(max_bytes + 1, max(64 << 10, 4 * len(data)))
    src = bytes(data)
    while True:
        buf = bytearray(size)
        try:
            n = codec.decompress_into(src, buf)  # type: ignore[attr-defined]
        except cramjam.DecompressionError as exc:
            if "failed to write whole buffer" not in str(exc):
                raise
            n = size
        if n < size:
            return bytes(buf[:n])
        if size > max_bytes:
            raise TooLarge(f"records decompress to more than {max_bytes} bytes")
        size = min(max_bytes + 1, size * 2)


# -- compression ---------------------------------------------------------------------------------
def compress(codec: int, data: bytes, level: int | None = None) -> bytes:
    """Kafka's encodings: a gzip member, snappy-java framing, an LZ4 frame of independent
    blocks (what Kafka's own LZ4 stream reads), a zstd frame. ``level`` None: Kafka's default."""
    if codec == NONE:
        return data
    if codec == GZIP:
        return bytes(cramjam.gzip.compress(data, level=6 if level in (None, -1) else level))
    if codec == SNAPPY:
        out = bytearray(_XERIAL_HEADER)
        for i in range(0, len(data), _XERIAL_BLOCK):
            block = bytes(cramjam.snappy.compress_raw(data[i : i + _XERIAL_BLOCK]))
            out += _I32.pack(len(block)) + block
        return bytes(out)
    if codec == LZ4:
        c = cramjam.lz4.Compressor(
            level=9 if level is None else level, content_checksum=False, block_linked=False
        )
        c.compress(data)
        return bytes(c.finish())
    if codec == ZSTD:
        return bytes(cramjam.zstd.compress(data, level=3 if level is None else level))
    raise ValueError(f"unknown compression codec {codec}")


# -- one batch -----------------------------------------------------------------------------------
def count_records(body: bytes, expected: int) -> None:
    """Walk the records' length prefixes: exactly ``expected`` records filling ``body``
    (Kafka refuses a batch whose records do not match its header)."""
    r = ByteReader(body)
    try:
        for _ in range(expected):
            length = r.varint()
            if length < 0 or r.pos + length > len(body):
                raise CorruptCompressed("record length beyond the batch")
            r.pos += length
    except ProtocolError as exc:
        raise CorruptCompressed(f"records are malformed: {exc}") from None
    if r.pos != len(body):
        raise CorruptCompressed(f"{len(body) - r.pos} bytes after the last of {expected} records")


def recompress_batch(
    batch: memoryview | bytes, header: BatchHeader, codec: int, level: int | None, max_bytes: int
) -> bytearray:
    """The batch with its records encoded with ``codec`` (the same records, the same header
    fields but the codec bits, batchLength and CRC). Raises TooLarge / CorruptCompressed."""
    body = decompress(header.compression, batch[HEADER_SIZE : header.size], max_bytes)
    count_records(body, header.record_count)
    out = bytearray(batch[:HEADER_SIZE])
    out += compress(codec, body, level)
    _I32.pack_into(out, 8, len(out) - LOG_OVERHEAD)  # batchLength
    _I16.pack_into(out, 21, (header.attributes & ~COMPRESSION_MASK) | codec)
    _U32.pack_into(out, 17, crc32c(memoryview(out)[21:]))
    return out


def conform(
    records: memoryview,
    batches: list[tuple[int, BatchHeader]],
    codec: int | None,
    level: int | None,
    log_append_time_ms: int | None,
    max_bytes: int,
) -> tuple[memoryview, list[tuple[int, BatchHeader]]]:
    """A produce payload made to follow its topic's ``compression.type`` (``codec``: None
    keeps the producer's) and ``message.timestamp.type`` (``log_append_time_ms``: None keeps
    CreateTime). Returns the payload (the same buffer, edited in place, unless a batch had
    to be recompressed) and its batch headers."""
    if codec is not None and any(h.compression != codec for _, h in batches):
        out = bytearray()
        for pos, h in batches:
            raw = records[pos : pos + h.size]
            out += raw if h.compression == codec else recompress_batch(raw, h, codec, level,
                                                                        max_bytes)  # fmt: skip
        records = memoryview(out)
        batches = iter_headers(records)
    if log_append_time_ms is not None:
        for pos, _ in batches:
            stamp_log_append_time(records, pos, log_append_time_ms)
        batches = iter_headers(records)
    return records, batches
