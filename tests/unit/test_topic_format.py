"""LogAppendTime stamping and broker-side recompression as pure functions over batch bytes
(protocol/record_batch.py, protocol/compression.py). Batches are built by tests/kafka_wire.py
(independent of the broker); compressed data is checked against kafka-python's codecs, an
independent implementation of Kafka's encodings."""

from __future__ import annotations

import gzip
import struct
import tracemalloc

import kafka.codec as kp
import pytest

from broker_service.protocol import compression as Z
from broker_service.protocol.record_batch import (
    HEADER_SIZE,
    TIMESTAMP_TYPE_MASK,
    iter_headers,
    read_header,
    stamp_log_append_time,
    validate_batches,
)
from tests.kafka_wire import batch_crc_ok, build_batch

KP_DECODE = {Z.GZIP: kp.gzip_decode, Z.SNAPPY: kp.snappy_decode, Z.LZ4: kp.lz4_decode,
             Z.ZSTD: kp.zstd_decode}  # fmt: skip
KP_ENCODE = {Z.GZIP: kp.gzip_encode, Z.LZ4: kp.lz4_encode, Z.ZSTD: kp.zstd_encode,
             Z.SNAPPY: lambda d: kp.snappy_encode(d, xerial_compatible=True)}  # fmt: skip


def _values(n: int) -> list[bytes]:
    return [f"value-{i:05d}-".encode() * (1 + i % 7) for i in range(n)]


def _compressed_batch(codec: int, values: list[bytes]) -> bytes:
    """A batch of ``values`` whose records section is compressed by kafka-python's codec."""
    plain = bytearray(build_batch(values, base_timestamp=1_000, producer_id=7, producer_epoch=1,
                                  base_sequence=10))  # fmt: skip
    body = KP_ENCODE[codec](bytes(plain[HEADER_SIZE:])) if codec else bytes(plain[HEADER_SIZE:])
    out = plain[:HEADER_SIZE] + body
    struct.pack_into(">i", out, 8, len(out) - 12)
    struct.pack_into(">h", out, 21, codec)
    from crc32c import crc32c

    struct.pack_into(">I", out, 17, crc32c(bytes(out[21:])))
    return bytes(out)


def test_stamp_log_append_time_sets_type_max_timestamp_and_crc() -> None:
    batch = bytearray(build_batch(_values(5), base_timestamp=1_000, base_offset=0))
    before = read_header(batch)
    stamp_log_append_time(batch, 0, 1_700_000_000_123)
    after = read_header(batch)
    assert batch_crc_ok(batch)
    assert after.attributes == before.attributes | TIMESTAMP_TYPE_MASK
    assert after.max_timestamp == 1_700_000_000_123
    assert after.base_timestamp == before.base_timestamp  # records are not touched
    assert batch[HEADER_SIZE:] == build_batch(_values(5), base_timestamp=1_000)[HEADER_SIZE:]
    validate_batches(memoryview(batch))


@pytest.mark.parametrize("codec", [Z.GZIP, Z.SNAPPY, Z.LZ4, Z.ZSTD])
def test_compress_is_readable_by_an_independent_implementation(codec: int) -> None:
    data = b"".join(_values(3000))
    ours = Z.compress(codec, data)
    assert KP_DECODE[codec](ours) == data
    assert Z.decompress(codec, KP_ENCODE[codec](data), len(data)) == data
    assert Z.decompress(codec, ours, len(data)) == data
    with pytest.raises(Z.TooLarge):
        Z.decompress(codec, ours, len(data) - 1)


@pytest.mark.parametrize("codec", [Z.GZIP, Z.SNAPPY, Z.LZ4, Z.ZSTD])
def test_a_decompression_bomb_is_refused_within_bounded_memory(codec: int) -> None:
    bomb = Z.compress(codec, bytes(256 << 20))  # 256 MiB of zeros, small compressed
    assert len(bomb) < 16 << 20
    tracemalloc.start()
    try:
        with pytest.raises(Z.TooLarge):
            Z.decompress(codec, bomb, 1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * len(bomb) + (4 << 20), peak


def test_garbage_is_corrupt_not_a_crash() -> None:
    for codec in (Z.GZIP, Z.SNAPPY, Z.LZ4, Z.ZSTD):
        with pytest.raises(Z.CorruptCompressed):
            Z.decompress(codec, b"\x00\x01garbage" * 10, 1 << 20)
    with pytest.raises(Z.CorruptCompressed):  # a truncated gzip stream
        Z.decompress(Z.GZIP, gzip.compress(b"x" * 1000)[:-9], 1 << 20)


@pytest.mark.parametrize("source", [Z.NONE, Z.GZIP, Z.SNAPPY, Z.LZ4, Z.ZSTD])
@pytest.mark.parametrize("target", [Z.NONE, Z.GZIP, Z.SNAPPY, Z.LZ4, Z.ZSTD])
def test_recompress_batch_keeps_records_and_header(source: int, target: int) -> None:
    values = _values(50)
    batch = _compressed_batch(source, values)
    (pos, h), = validate_batches(memoryview(batch))
    out = Z.recompress_batch(memoryview(batch), h, target, None, 1 << 20)
    (_, g), = validate_batches(memoryview(out))  # CRC and lengths are right
    assert g.compression == target
    for field in ("base_offset", "last_offset_delta", "base_timestamp", "max_timestamp",
                  "producer_id", "producer_epoch", "base_sequence", "record_count"):  # fmt: skip
        assert getattr(g, field) == getattr(h, field), field
    plain = build_batch(values, base_timestamp=1_000, producer_id=7, producer_epoch=1,
                        base_sequence=10)  # fmt: skip
    body = bytes(out[HEADER_SIZE:])
    assert (KP_DECODE[target](body) if target else body) == plain[HEADER_SIZE:]


def test_recompress_refuses_records_that_do_not_match_the_header() -> None:
    batch = bytearray(_compressed_batch(Z.NONE, _values(3)))
    struct.pack_into(">i", batch, 57, 4)  # claims 4 records
    h = read_header(batch)
    with pytest.raises(Z.CorruptCompressed):
        Z.recompress_batch(memoryview(batch), h, Z.ZSTD, None, 1 << 20)


def test_conform_recompresses_then_stamps_every_batch() -> None:
    a = _compressed_batch(Z.LZ4, _values(3))
    b = _compressed_batch(Z.ZSTD, _values(4))
    payload = memoryview(bytearray(a + b))
    batches = validate_batches(payload)
    records, got = Z.conform(payload, batches, Z.ZSTD, None, 42, 1 << 20)
    assert [h.compression for _, h in got] == [Z.ZSTD, Z.ZSTD]
    assert [h.max_timestamp for _, h in got] == [42, 42]
    assert all(h.attributes & TIMESTAMP_TYPE_MASK for _, h in got)
    assert validate_batches(records) == got
    # no codec: the same buffer, edited in place
    same = memoryview(bytearray(a))
    records, got = Z.conform(same, validate_batches(same), None, None, 7, 1 << 20)
    assert records.obj is same.obj and iter_headers(same)[0][1].max_timestamp == 7


def test_log_append_time_records_read_as_the_batch_max_timestamp() -> None:
    """ListOffsets by time and compaction's tombstone horizon read record timestamps: in a
    LogAppendTime batch every record has the broker's stamp, as in Kafka."""
    from broker_service.protocol.record_filter import records_of
    from broker_service.protocol.records import record_timestamps

    batch = bytearray(build_batch(_values(3), base_timestamp=1_000, base_offset=5))
    h = read_header(batch)
    assert [t for _, t in record_timestamps(h, batch)] == [1_000, 1_001, 1_002]
    stamp_log_append_time(batch, 0, 99_000)
    h = read_header(batch)
    assert list(record_timestamps(h, batch)) == [(5, 99_000), (6, 99_000), (7, 99_000)]
    assert [r.timestamp for r in records_of(h, batch)] == [99_000] * 3
