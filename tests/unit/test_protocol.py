"""Pure tests of the sans-I/O protocol layer: no sockets, no broker process.

Inputs come from tests/kafka_wire.py (kio writers + hand-built record batches) and outputs
are checked with kio's readers, so the code under test never checks itself.
"""

from __future__ import annotations

import datetime
import struct
import uuid
from typing import Any

import pytest
from kio.index import load_response_schema
from kio.records.readers import read_batch
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader

from broker_service.protocol import codec, frames
from broker_service.protocol.fetch import (
    FetchPartitionResult,
    FetchTopicResult,
    build_fetch_response,
)
from broker_service.protocol.primitives import ByteReader, ProtocolError
from broker_service.protocol.produce import (
    ProducePartitionResult,
    build_produce_response,
    parse_produce,
)
from broker_service.protocol.record_batch import (
    HEADER_SIZE,
    InvalidRecordBatch,
    UnsupportedMagic,
    read_header,
    set_base_offset,
    set_leader_epoch,
    validate_batches,
)
from tests import kafka_wire as w

TS = 1_700_000_000_000


# -- the test encoder itself agrees with an independent decoder ----------------------------


def test_hand_built_batch_decodes_with_kio_records() -> None:
    batch = w.build_batch([b"v0", None, b"v2"], keys=[b"k0", b"k1", None], base_offset=7,
                          base_timestamp=TS)
    decoded, size = read_batch(batch, 0)
    assert size == len(batch)
    assert [r.value for r in decoded.records] == [b"v0", None, b"v2"]
    assert [r.key for r in decoded.records] == [b"k0", b"k1", None]
    assert [r.offset for r in decoded.records] == [7, 8, 9]
    assert w.batch_crc_ok(batch)


def test_batch_of_size_is_exact() -> None:
    for n in (80, 127, 128, 129, 1000, 2000, 16_385):
        assert len(w.batch_of_size(n)) == n


# -- record batch header ---------------------------------------------------------------------


def test_read_header_fields() -> None:
    batch = w.build_batch(
        [b"a", b"b", b"c"], base_offset=42, base_timestamp=TS, partition_leader_epoch=5,
        attributes=0x08, producer_id=1234, producer_epoch=3, base_sequence=17,
    )
    h = read_header(batch)
    assert h.base_offset == 42
    assert h.batch_length == len(batch) - 12
    assert h.size == len(batch)
    assert h.partition_leader_epoch == 5
    assert h.magic == 2
    assert h.crc == struct.unpack_from(">I", batch, 17)[0]
    assert h.attributes == 0x08
    assert h.compression == 0
    assert not h.is_transactional and not h.is_control
    assert h.last_offset_delta == 2
    assert h.last_offset == 44
    assert h.base_timestamp == TS
    assert h.max_timestamp == TS + 2
    assert (h.producer_id, h.producer_epoch, h.base_sequence) == (1234, 3, 17)
    assert h.record_count == 3


def test_read_header_at_position() -> None:
    first = w.build_batch([b"x"], base_offset=0)
    second = w.build_batch([b"y", b"z"], base_offset=1)
    h = read_header(first + second, len(first))
    assert h.base_offset == 1 and h.record_count == 2


def test_read_header_too_short() -> None:
    with pytest.raises(InvalidRecordBatch):
        read_header(w.build_batch([b"x"])[: HEADER_SIZE - 1])


# -- CRC / structure validation ------------------------------------------------------------


def test_validate_single_and_multiple_batches() -> None:
    a = w.build_batch([b"one"])
    b = w.build_batch([b"two", b"three"])
    out = validate_batches(memoryview(a))
    assert [pos for pos, _ in out] == [0]
    out = validate_batches(memoryview(a + b))
    assert [pos for pos, _ in out] == [0, len(a)]
    assert [h.record_count for _, h in out] == [1, 2]


@pytest.mark.parametrize("corrupt", [w.corrupt_crc, w.corrupt_payload])
def test_validate_rejects_bad_crc(corrupt: object) -> None:
    bad = corrupt(w.build_batch([b"payload"]))  # type: ignore[operator]
    with pytest.raises(InvalidRecordBatch, match="CRC"):
        validate_batches(memoryview(bad))


def test_validate_rejects_bad_crc_in_second_batch() -> None:
    good = w.build_batch([b"ok"])
    with pytest.raises(InvalidRecordBatch):
        validate_batches(memoryview(good + w.corrupt_crc(w.build_batch([b"bad"]))))


def test_crc_does_not_cover_base_offset_or_leader_epoch() -> None:
    batch = bytearray(w.build_batch([b"x"]))
    batch[0:8] = struct.pack(">q", 999)
    batch[12:16] = struct.pack(">i", 77)
    validate_batches(memoryview(batch))


@pytest.mark.parametrize("cut", [1, 10, HEADER_SIZE, HEADER_SIZE + 1])
def test_validate_rejects_truncation(cut: int) -> None:
    batch = w.build_batch([b"some value"])
    with pytest.raises(InvalidRecordBatch):
        validate_batches(memoryview(batch[:-cut] if cut < len(batch) else batch[:1]))


def test_validate_rejects_trailing_garbage() -> None:
    with pytest.raises(InvalidRecordBatch):
        validate_batches(memoryview(w.build_batch([b"x"]) + b"\x00\x01\x02"))


def test_validate_rejects_empty_payload() -> None:
    with pytest.raises(InvalidRecordBatch):
        validate_batches(memoryview(b""))


def test_validate_rejects_tiny_batch_length() -> None:
    batch = bytearray(w.build_batch([b"x"]))
    batch[8:12] = struct.pack(">i", 10)  # shorter than the header itself
    with pytest.raises(InvalidRecordBatch):
        validate_batches(memoryview(batch))
    batch[8:12] = struct.pack(">i", -1)
    with pytest.raises(InvalidRecordBatch):
        validate_batches(memoryview(batch))


@pytest.mark.parametrize(
    "batch",
    [
        w.build_batch([]),  # no records at all (the docstring promises to reject it)
        w.build_batch([b"a"], record_count=0),
        w.build_batch([b"a"], last_offset_delta=1000),  # would take 1001 offsets for 1 record
        w.build_batch([b"a", b"b"], record_count=5),
    ],
    ids=["empty", "count-0", "delta-1000", "count-5-of-2"],
)
def test_validate_rejects_inconsistent_record_count(batch: bytes) -> None:
    """Kafka's LogValidator: lastOffsetDelta + 1 must equal recordCount, and be > 0."""
    assert w.batch_crc_ok(batch)
    with pytest.raises(InvalidRecordBatch):
        validate_batches(memoryview(batch))


@pytest.mark.parametrize("magic", [0, 1, 3])
def test_validate_rejects_other_magic(magic: int) -> None:
    with pytest.raises(UnsupportedMagic):
        validate_batches(memoryview(w.build_batch([b"x"], magic=magic)))


# -- offset assignment in place --------------------------------------------------------------


def test_set_base_offset_keeps_crc_valid() -> None:
    a = w.build_batch([b"a", b"b"])
    b = w.build_batch([b"c"])
    buf = bytearray(a + b)
    set_base_offset(buf, 0, 1_000)
    set_base_offset(memoryview(buf), len(a), 1_002)
    set_leader_epoch(buf, len(a), 9)
    out = validate_batches(memoryview(buf))
    assert [h.base_offset for _, h in out] == [1_000, 1_002]
    assert out[1][1].partition_leader_epoch == 9
    assert w.batch_crc_ok(buf[: len(a)]) and w.batch_crc_ok(buf[len(a):])
    decoded, _ = read_batch(bytes(buf), len(a))
    assert decoded.base_offset == 1_002 and decoded.records[0].offset == 1_002


def test_set_base_offset_large_values() -> None:
    buf = bytearray(w.build_batch([b"x"]))
    set_base_offset(buf, 0, 2**62)
    assert read_header(bytes(buf)).base_offset == 2**62
    validate_batches(memoryview(buf))


# -- produce requests --------------------------------------------------------------------


@pytest.mark.parametrize("version", [3, 7, 9, 11])
def test_parse_produce_round_trip(version: int) -> None:
    b1 = w.build_batch([b"hello"])
    b2 = w.build_batch([b"a", b"b"]) + w.build_batch([b"c"])
    req = w.produce_request(
        version,
        {"orders": {0: b1, 3: b2}, "other.topic-2": {1: None}},
        acks=-1, timeout_ms=1234, transactional_id="tx-1",
    )
    payload = w.request_payload(req, correlation_id=77)
    header = frames.parse_request_header(payload)
    assert (header.api_key, header.api_version, header.correlation_id) == (0, version, 77)
    assert header.client_id == "kafka-wire-test"
    assert header.flexible == (version >= 9)
    parsed = parse_produce(memoryview(payload), header.body_offset, version)
    assert parsed.transactional_id == "tx-1"
    assert parsed.acks == -1
    assert parsed.timeout_ms == 1234
    assert [t.name for t in parsed.topics] == ["orders", "other.topic-2"]
    orders, other = parsed.topics
    assert [p.index for p in orders.partitions] == [0, 3]
    assert orders.partitions[0].records is not None
    assert bytes(orders.partitions[0].records) == b1
    assert bytes(orders.partitions[1].records or b"") == b2
    assert [p.index for p in other.partitions] == [1]
    assert other.partitions[0].records is None
    # zero-copy: records are views into the frame
    assert isinstance(orders.partitions[0].records, memoryview)
    assert orders.partitions[1].records is not None
    assert len(validate_batches(orders.partitions[1].records)) == 2


@pytest.mark.parametrize("version", [3, 9])
def test_parse_produce_acks_zero_and_null_transactional_id(version: int) -> None:
    req = w.produce_request(version, {"t": {0: w.build_batch([b"x"])}}, acks=0)
    payload = w.request_payload(req, 1)
    header = frames.parse_request_header(payload)
    parsed = parse_produce(payload, header.body_offset, version)
    assert parsed.acks == 0 and parsed.transactional_id is None


@pytest.mark.parametrize("version", [3, 9, 11])
def test_parse_produce_truncated_raises_protocol_error(version: int) -> None:
    req = w.produce_request(version, {"t": {0: w.build_batch([b"x" * 50])}})
    payload = w.request_payload(req, 1)
    header = frames.parse_request_header(payload)
    for cut in range(header.body_offset, len(payload) - (1 if version >= 9 else 0)):
        with pytest.raises(ProtocolError):
            parse_produce(payload[:cut], header.body_offset, version)


def test_parse_produce_skips_tagged_fields() -> None:
    """Flexible versions: unknown tagged fields anywhere must be skipped, not misread."""
    batch = w.build_batch([b"x"])
    tagged = w.uvarint(1) + w.uvarint(99) + w.uvarint(3) + b"abc"  # one field, tag 99
    body = (
        w.uvarint(0)  # transactional_id: null
        + struct.pack(">hi", 1, 500)
        + w.uvarint(2)  # one topic
        + w.uvarint(3) + b"t1"
        + w.uvarint(2)  # one partition
        + struct.pack(">i", 0) + w.uvarint(len(batch) + 1) + batch
        + tagged  # partition tags
        + tagged  # topic tags
        + tagged  # request tags
    )
    payload = w.raw_frame(0, 9, 5, body)[4:]
    header = frames.parse_request_header(payload)
    parsed = parse_produce(payload, header.body_offset, 9)
    assert parsed.acks == 1 and parsed.timeout_ms == 500
    assert bytes(parsed.topics[0].partitions[0].records or b"") == batch


@pytest.mark.parametrize("version", range(3, 12))
def test_build_produce_response_decodes_with_kio(version: int) -> None:
    results = [
        ProducePartitionResult(0, error_code=0, base_offset=10, log_start_offset=0),
        ProducePartitionResult(1, error_code=2, error_message="record batch CRC-32C mismatch"),
    ]
    body = build_produce_response(version, [("orders", results), ("x", [])], throttle_ms=3)
    cls: Any = load_response_schema(0, version)
    resp, size = entity_reader(cls)(body, 0)
    assert size == len(body)
    assert [t.name for t in resp.responses] == ["orders", "x"]
    p0, p1 = resp.responses[0].partition_responses
    assert (p0.index, p0.error_code, p0.base_offset) == (0, ErrorCode.none, 10)
    assert (p1.index, p1.error_code, p1.base_offset) == (1, ErrorCode.corrupt_message, -1)
    if version >= 8:
        assert p1.error_message == "record batch CRC-32C mismatch"
    assert resp.throttle_time == datetime.timedelta(milliseconds=3)


# -- fetch responses ---------------------------------------------------------------------


@pytest.mark.parametrize("version", [4, 5, 7, 11, 12, 13, 15, 16])
def test_build_fetch_response_decodes_with_kio(version: int) -> None:
    b1 = w.build_batch([b"first"], base_offset=0)
    b2 = w.build_batch([b"second", b"third"], base_offset=1)
    tid_a, tid_b = uuid.uuid4(), uuid.uuid4()
    topics = [
        FetchTopicResult("alpha", tid_a, [
            FetchPartitionResult(0, high_watermark=3, last_stable_offset=3, log_start_offset=0,
                                 records=[memoryview(b1), b2]),
            FetchPartitionResult(1, error_code=1),
        ]),
        FetchTopicResult("beta", tid_b, [FetchPartitionResult(2, high_watermark=0,
                                                              last_stable_offset=0)]),
        FetchTopicResult("gamma", uuid.uuid4(), []),
    ]
    bufs = build_fetch_response(version, topics, throttle_ms=5)
    body = b"".join(bytes(b) for b in bufs)
    # the record batches pass through as their own buffers, not copied into the head
    assert any(b is b2 for b in bufs)
    cls: Any = load_response_schema(1, version)
    resp, size = entity_reader(cls)(body, 0)
    assert size == len(body)
    assert resp.throttle_time == datetime.timedelta(milliseconds=5)
    if version >= 13:
        assert [t.topic_id for t in resp.responses[:2]] == [tid_a, tid_b]
    else:
        assert [t.topic for t in resp.responses] == ["alpha", "beta", "gamma"]
    p0, p1 = resp.responses[0].partitions
    assert p0.partition_index == 0 and p0.error_code == ErrorCode.none
    assert p0.high_watermark == 3 and p0.last_stable_offset == 3
    assert p0.records == b1 + b2
    assert p0.aborted_transactions == ()
    if version >= 5:
        assert p0.log_start_offset == 0
    if version >= 11:
        assert p0.preferred_read_replica == -1
    assert p1.partition_index == 1 and p1.error_code == ErrorCode.offset_out_of_range
    assert not p1.records
    (q,) = resp.responses[1].partitions
    assert q.partition_index == 2 and not q.records
    assert resp.responses[2].partitions == ()
    # the records decode as batches
    got, n = read_batch(p0.records, 0)
    assert got.records[0].value == b"first"
    got, _ = read_batch(p0.records, n)
    assert [r.value for r in got.records] == [b"second", b"third"]


@pytest.mark.parametrize("version", [4, 12, 16])
def test_build_fetch_response_top_level_error_and_empty(version: int) -> None:
    body = b"".join(bytes(b) for b in build_fetch_response(version, [], error_code=0,
                                                           session_id=0))
    cls: Any = load_response_schema(1, version)
    resp, size = entity_reader(cls)(body, 0)
    assert size == len(body) and resp.responses == ()


# -- frames ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", range(0, 5))
def test_api_versions_response_header_is_always_v0(version: int) -> None:
    assert frames.response_header(123, 18, version) == struct.pack(">i", 123)


@pytest.mark.parametrize(
    ("api_key", "version", "flexible"),
    [(3, 8, False), (3, 9, True), (3, 12, True), (0, 8, False), (0, 9, True), (1, 11, False),
     (1, 12, True), (19, 4, False), (19, 5, True)],
)
def test_response_header_v1_only_for_flexible(api_key: int, version: int, flexible: bool) -> None:
    head = frames.response_header(0x01020304, api_key, version)
    assert head == (b"\x01\x02\x03\x04\x00" if flexible else b"\x01\x02\x03\x04")


@pytest.mark.parametrize("version", range(0, 5))
def test_parse_api_versions_request_header(version: int) -> None:
    payload = w.request_payload(w.api_versions_request(version), 9)
    h = frames.parse_request_header(payload)
    assert (h.api_key, h.api_version, h.correlation_id) == (18, version, 9)
    assert h.flexible == (version >= 3)
    req = codec.decode_request(18, version, payload, h.body_offset)
    if version >= 3:
        assert req.client_software_name == "kafka-wire-test"


def test_parse_request_header_null_client_id_and_tagged_fields() -> None:
    head = struct.pack(">hhi", 3, 12, 1) + b"\xff\xff"
    head += w.uvarint(1) + w.uvarint(0) + w.uvarint(2) + b"hi"  # one tagged field
    h = frames.parse_request_header(head + b"BODY")
    assert h.client_id is None and h.flexible
    assert (head + b"BODY")[h.body_offset:] == b"BODY"


@pytest.mark.parametrize("frame", [b"", b"\x00" * 7, struct.pack(">hhi", 3, 1, 1),
                                   struct.pack(">hhih", 3, 1, 1, 5) + b"ab"])
def test_parse_request_header_truncated(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        frames.parse_request_header(frame)


def test_parse_request_header_non_utf8_client_id() -> None:
    with pytest.raises(ProtocolError):
        frames.parse_request_header(struct.pack(">hhih", 3, 1, 1, 2) + b"\xff\xfe")


def test_is_flexible_unknown_api() -> None:
    assert not frames.is_flexible(9999, 0)
    assert not frames.is_flexible(3, 999)


# -- codec -------------------------------------------------------------------------------


@pytest.mark.parametrize(("api_key", "version"), [(3, 0), (3, 12), (19, 2), (19, 7), (2, 1),
                                                  (2, 7), (1, 4), (1, 13)])
def test_decode_request_round_trip(api_key: int, version: int) -> None:
    req: object
    if api_key == 3:
        req = w.metadata_request(version, ["a", "b"])
    elif api_key == 19:
        req = w.create_topics_request(version, ["t1"], partitions=3,
                                      configs={"max.message.bytes": "1000"})
    elif api_key == 2:
        req = w.list_offsets_request(version, "t", 4, -2)
    else:
        req = w.fetch_request(version, uuid.uuid4() if version >= 13 else "t", 0, 5)
    payload = w.request_payload(req, 1)
    h = frames.parse_request_header(payload)
    assert codec.decode_request(api_key, version, memoryview(bytearray(payload)),
                                h.body_offset) == req
    with pytest.raises(ProtocolError):
        codec.decode_request(api_key, version, payload[:-2], h.body_offset)


@pytest.mark.parametrize(("api_key", "version"), [(3, 12), (19, 7), (1, 12)])
def test_decode_request_ignores_unknown_tagged_fields(api_key: int, version: int) -> None:
    """KIP-482: a receiver skips tagged fields it does not know (newer clients add them)."""
    req: object
    if api_key == 3:
        req = w.metadata_request(version, ["a"])
    elif api_key == 19:
        req = w.create_topics_request(version, ["t1"])
    else:
        req = w.fetch_request(version, "t", 0, 5)
    payload = w.request_payload(req, 1)
    assert payload.endswith(b"\x00")  # the request's own (empty) tagged fields
    tagged = payload[:-1] + w.uvarint(1) + w.uvarint(99) + w.uvarint(2) + b"hi"
    h = frames.parse_request_header(tagged)
    assert codec.decode_request(api_key, version, tagged, h.body_offset) == req


def test_encode_response_fills_missing_fields() -> None:
    body = codec.encode_response(3, 12, {"topics": [{"name": "t", "error_code": 3}]})
    cls: Any = load_response_schema(3, 12)
    resp, size = entity_reader(cls)(body, 0)
    assert size == len(body)
    assert resp.topics[0].name == "t" and resp.topics[0].error_code == ErrorCode(3)
    assert resp.brokers == ()


def test_byte_reader_bounds() -> None:
    r = ByteReader(b"\x00\x01")
    assert r.i16() == 1
    with pytest.raises(ProtocolError):
        r.i8()
    with pytest.raises(ProtocolError):
        ByteReader(b"\xff" * 11).uvarint()
    with pytest.raises(ProtocolError):
        ByteReader(struct.pack(">i", 1000)).array_len(False)
