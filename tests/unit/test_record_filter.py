"""Rewriting a batch for log compaction keeps its offsets, producer fields and codec."""

from __future__ import annotations

import dataclasses

import pytest

from broker_service.control.compaction import _filter_batch, object_created_ms
from broker_service.protocol.record_batch import read_header
from broker_service.protocol.record_filter import rebuild_batch, records_of
from tests.kafka_wire import batch_crc_ok, build_batch


def _batch(codec: int = 0, **kw: int) -> bytes:
    keys = [b"a", b"b", b"a", None, b"c"]
    values = [b"1", b"2", b"3", b"4", None]
    raw = build_batch(values, keys=keys, base_offset=100, **kw)
    if codec == 0:
        return raw
    h = read_header(raw)
    # the same records compressed: rebuild with the header's codec bits set
    compressed = dataclasses.replace(h, attributes=h.attributes | codec)
    out = bytearray(rebuild_batch(compressed, raw, records_of(h, raw)))
    out[21:23] = (h.attributes | codec).to_bytes(2, "big")
    from crc32c import crc32c

    out[17:21] = crc32c(bytes(out[21:])).to_bytes(4, "big")
    return bytes(out)


@pytest.mark.parametrize("codec", [0, 1, 2, 3, 4])
def test_rebuilt_batch_keeps_offsets_and_header(codec: int) -> None:
    raw = _batch(codec, producer_id=7, producer_epoch=1, base_sequence=40)
    h = read_header(raw)
    assert h.compression == codec
    recs = records_of(h, raw)
    assert [(r.offset, r.key, r.is_tombstone) for r in recs] == [
        (100, b"a", False), (101, b"b", False), (102, b"a", False), (103, None, False),
        (104, b"c", True),
    ]  # fmt: skip
    kept = [recs[1], recs[2]]
    out = rebuild_batch(h, raw, kept)
    assert batch_crc_ok(out)
    o = read_header(out)
    assert (o.base_offset, o.last_offset_delta, o.base_timestamp, o.max_timestamp) == (
        h.base_offset, h.last_offset_delta, h.base_timestamp, h.max_timestamp,
    )  # fmt: skip
    assert (o.producer_id, o.producer_epoch, o.base_sequence, o.compression) == (7, 1, 40, codec)
    assert o.record_count == 2 and o.size == len(out)
    assert [(r.offset, r.key) for r in records_of(o, out)] == [(101, b"b"), (102, b"a")]


def test_filter_keeps_latest_per_key_keyless_and_producer_last_batch() -> None:
    raw = _batch()
    h = read_header(raw)
    latest = {b"a": 102, b"b": 101, b"c": 104}
    batch, removed = _filter_batch(h, raw, latest, horizon_ms=0, producer_last=False)
    assert removed == 1 and batch is not None  # only the first b"a" goes
    kept = [(r.offset, r.key) for r in records_of(read_header(batch), batch)]
    assert kept == [(101, b"b"), (102, b"a"), (103, None), (104, b"c")]
    # past the delete horizon the tombstone goes too
    batch, removed = _filter_batch(h, raw, latest, horizon_ms=2**62, producer_last=False)
    assert removed == 2
    # everything superseded: dropped, unless it is its producer's last batch (kept empty)
    superseded = {b"a": 999, b"b": 999, b"c": 999}
    only_keyed = build_batch([b"x", b"y"], keys=[b"a", b"b"], base_offset=5)
    hk = read_header(only_keyed)
    assert _filter_batch(hk, only_keyed, superseded, 0, producer_last=False) == (None, 2)
    empty, removed = _filter_batch(hk, only_keyed, superseded, 0, producer_last=True)
    assert removed == 2 and empty is not None
    he = read_header(empty)
    assert (he.record_count, he.base_offset, he.last_offset_delta) == (0, 5, 1)
    # control batches are never touched
    control = build_batch([b"\x00\x00\x00\x00"], keys=[b"\x00\x00\x00\x00"], attributes=0x30)
    hc = read_header(control)
    assert _filter_batch(hc, control, {b"\x00\x00\x00\x00": -1}, 0, False) == (control, 0)


def test_object_age_comes_from_the_key() -> None:
    assert object_created_ms("sso/1-2-1795636938579032693-7.sso") == 1795636938579
    assert object_created_ms("so/5/3-5-1795636938579032693-1.sso") == 1795636938579
    assert object_created_ms("wal/1-1-1795636938579032693-1.sso") == 1795636938579
    assert object_created_ms("someone-elses-file.txt") is None
    assert object_created_ms("a-b-notanumber-1.sso") is None
