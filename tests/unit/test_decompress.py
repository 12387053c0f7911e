"""Decompression in bounded pieces (broker_service/protocol/decompress.py): every codec Kafka
uses, a cap on the total, and timestamp lookups that never hold a whole value."""

from __future__ import annotations

import gzip
import tracemalloc

import cramjam
import lz4.frame
import pytest
import zstandard

from broker_service.protocol.decompress import RecordHeads, TooLarge, pieces
from broker_service.protocol.record_batch import read_header
from broker_service.protocol.records import record_timestamps
from tests.kafka_wire import build_batch, encode_record

PAYLOAD = bytes(range(256)) * 4000  # ~1 MB, compressible


def xerial(data: bytes) -> bytes:
    out = bytearray(b"\x82SNAPPY\x00" + b"\0\0\0\1\0\0\0\1")
    for i in range(0, len(data), 32768):
        block = bytes(cramjam.snappy.compress_raw(data[i : i + 32768]))
        out += len(block).to_bytes(4, "big") + block
    return bytes(out)


CODECS = {
    0: lambda d: d,
    1: gzip.compress,
    2: xerial,
    3: lambda d: lz4.frame.compress(d),
    4: lambda d: zstandard.ZstdCompressor().compress(d),
}


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_every_codec_round_trips_in_small_pieces(codec: int) -> None:
    out = list(pieces(codec, CODECS[codec](PAYLOAD), max_output=10 << 20))
    assert b"".join(out) == PAYLOAD
    assert max(len(p) for p in out) <= 64 * 1024 or codec == 2  # snappy: its own blocks


def test_raw_snappy_too() -> None:
    assert b"".join(pieces(2, bytes(cramjam.snappy.compress_raw(PAYLOAD)), 10 << 20)) == PAYLOAD


@pytest.mark.parametrize("codec", [1, 3, 4])
def test_the_total_is_capped(codec: int) -> None:
    with pytest.raises(TooLarge):
        for _ in pieces(codec, CODECS[codec](PAYLOAD), max_output=100_000):
            pass


def test_record_heads_across_piece_boundaries() -> None:
    records = b"".join(encode_record(i, 10 * i, b"k", bytes([i]) * (i * 37)) for i in range(200))
    heads = RecordHeads()
    got = []
    for i in range(0, len(records), 7):  # worst case: every head split
        got += list(heads.feed(records[i : i + 7]))
    assert got == [(10 * i, i, 1) for i in range(200)]  # key b"k"


def test_a_timestamp_lookup_in_a_huge_zstd_value_holds_little_memory() -> None:
    """One record of 256 MiB of zeros compresses to ~8 KB; finding its timestamp must not
    materialise the value (it took 1 GB of RSS for 512 MiB)."""
    value = bytes(256 << 20)
    plain = build_batch([value, b"small"], base_timestamp=1000)
    body = plain[61:]
    compressed = zstandard.ZstdCompressor().compress(body)
    del value, plain, body
    header_bytes = bytearray(build_batch([b"x", b"y"], base_timestamp=1000)[:61])
    header_bytes[21:23] = (4).to_bytes(2, "big")  # attributes: zstd
    length = 61 - 12 + len(compressed)
    header_bytes[8:12] = length.to_bytes(4, "big")
    batch = bytes(header_bytes) + compressed
    h = read_header(memoryview(batch))
    tracemalloc.start()
    found = list(record_timestamps(h, batch))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert found == [(0, 1000), (1, 1001)]
    assert peak < 8 << 20, f"peak {peak >> 20} MiB"
