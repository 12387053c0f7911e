"""The packed-ranges layout of DynamoDB log entries and stream chunks (pure: no store)."""

from __future__ import annotations

import random
import struct

from broker_service.metadata.dynamodb import ranges as packed
from broker_service.metadata.dynamodb.ranges import (
    PART_BYTES,
    pack_keys,
    pack_ranges,
    split_for_items,
    unpack_keys,
    unpack_ranges,
)
from broker_service.metadata.records import StreamRange


def _flush(n: int, seed: int = 1) -> list[StreamRange]:
    """One WAL flush's ranges: one per stream, back to back in the object."""
    rnd = random.Random(seed)
    out, pos = [], 0
    for i in range(n):
        size = rnd.randrange(200, 200_000)
        start = rnd.randrange(0, 10**9)
        ts = 1_764_000_000_000 + rnd.randrange(0, 50)
        out.append(StreamRange(1000 + i, start, start + rnd.randrange(1, 500), "wal/1-2-3-4.sso",
                               pos, size, ts))  # fmt: skip
        pos += size
    return out


def test_a_flush_of_32_partitions_fits_one_kilobyte() -> None:
    ranges = _flush(32)
    keys, parts = pack_ranges(ranges)
    assert keys == ["wal/1-2-3-4.sso"] and len(parts) == 1
    assert len(parts[0]) < 1024 - 100  # with the item's other attributes: 1 KB, 2 WRU
    assert unpack_ranges(keys, parts[0]) == ranges


def test_a_stream_chunk_of_consecutive_ranges_is_a_few_bytes_a_range() -> None:
    ranges, start = [], 5_000_000
    for i in range(64):  # what a fold writes: one stream, one range per WAL object
        ranges.append(StreamRange(7, start, start + 5, f"wal/1-2-{i}.sso", 40_000, 5_500,
                                  1_764_000_000_000 + 130 * i))  # fmt: skip
        start += 5
    keys, parts = pack_ranges(ranges)
    assert len(parts) == 1 and len(parts[0]) < 64 * 12
    assert unpack_ranges(keys, parts[0]) == ranges


def test_any_values_round_trip() -> None:
    rnd = random.Random(7)
    big = 2**62
    values = [0, 1, -1, big, -big, 2**63 - 1, -(2**63), 127, 128, 16_383, 16_384]
    pick = rnd.choice
    ranges = [
        StreamRange(pick([0, 1, big, rnd.randrange(big)]), s, s + pick([0, 1, 9]),
                    f"k{rnd.randrange(3)}", pick(values), pick(values), pick(values))
        for s in (pick(values) for _ in range(2000))
    ]  # fmt: skip
    keys, parts = pack_ranges(ranges)
    assert [r for p in parts for r in unpack_ranges(keys, p)] == ranges


def test_ranges_beyond_one_item_split_into_parts_under_the_item_limit() -> None:
    rnd = random.Random(3)
    # worst case for the deltas: every field far from the one before
    ranges = [
        StreamRange(rnd.randrange(2**40), rnd.randrange(2**50), 2**51, f"k{i % 2}",
                    rnd.randrange(2**50), rnd.randrange(2**50), rnd.randrange(-(2**50), 2**50))
        for i in range(12_000)
    ]  # fmt: skip
    keys, parts = pack_ranges(ranges)
    assert keys == ["k0", "k1"] and len(parts) >= 2
    assert all(len(p) <= PART_BYTES for p in parts)
    assert [r for p in parts for r in unpack_ranges(keys, p)] == ranges


def test_parts_of_the_fixed_layout_are_still_read() -> None:
    fixed = struct.Struct("<qqqqqqI")
    ranges = _flush(5)
    part = b"".join(
        fixed.pack(r.stream_id, r.start_offset, r.end_offset, r.position, r.size,
                   r.max_timestamp, 0)
        for r in ranges
    )
    assert unpack_ranges(["wal/1-2-3-4.sso"], part) == ranges


def test_chunks_with_many_object_keys_are_split_to_fit_an_item() -> None:
    # 5000 ranges, each in an object of its own with a long name sharing no prefix: the
    # names outweigh the ranges, so one chunk could not hold them all
    rnd = random.Random(5)
    ranges = [StreamRange(1, i, i + 1, f"{rnd.randrange(16**90):090x}.sso", 0, 10, 1)
              for i in range(5000)]  # fmt: skip
    slices = split_for_items(ranges)
    assert len(slices) > 1 and [r for s in slices for r in s] == ranges
    for s in slices:
        keys, parts = pack_ranges(s)
        assert len(parts) == 1
        assert len(parts[0]) + len(pack_keys(keys)) <= packed.PART_BYTES


def test_object_keys_are_front_coded_and_lists_still_read() -> None:
    keys = [f"wal/12-345-1764000000{n:09d}-{n}.sso" for n in range(64)] + ["sso/x", "", "é"]
    blob = pack_keys(keys)
    assert unpack_keys(blob) == keys
    assert len(blob) < 64 * 16 + 20  # against ~40 bytes a key as a list of strings
    assert unpack_keys(["a", "b"]) == ["a", "b"] and unpack_keys(None) == []
