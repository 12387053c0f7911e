"""Bad input over real TCP: the broker answers with Kafka's error codes where the protocol
has one, closes only the offending connection where it has none, and keeps serving everyone
else. Raw sockets and tests/kafka_wire.py; no client library smooths anything over.
"""

from __future__ import annotations

import struct
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests import kafka_wire as w
from tests.support.broker import BrokerProcess

NONE = 0
OFFSET_OUT_OF_RANGE = 1
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
MESSAGE_TOO_LARGE = 10
INVALID_REQUIRED_ACKS = 21
INVALID_TOPIC_EXCEPTION = 17
UNSUPPORTED_VERSION = 35
TOPIC_ALREADY_EXISTS = 36
UNKNOWN_TOPIC_ID = 100

# one xdist worker runs this module, in order (XDIST_GROUPS in tests/conftest.py)
pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """This module's own broker: bad input must not be able to hurt other modules' tests."""
    b = BrokerProcess(tmp_path_factory.mktemp("bad-input") / "data").start()
    yield b
    b.stop()


@pytest.fixture
def client(srv: BrokerProcess) -> Iterator[w.WireClient]:
    assert srv.alive(), srv.log()
    with w.WireClient(srv.port) as c:
        yield c


@pytest.fixture
def topic(request: pytest.FixtureRequest) -> str:
    return f"bad-{request.node.name}-{uuid.uuid4().hex[:8]}".replace("[", "-").replace("]", "")


def create(c: w.WireClient, name: str, partitions: int = 1, **configs: str) -> Any:
    resp = c.call(w.create_topics_request(7, [name], partitions=partitions,
                                          configs={k.replace("_", "."): v
                                                   for k, v in configs.items()}))
    (result,) = resp.topics
    return result


def create_ok(c: w.WireClient, name: str, partitions: int = 1, **configs: str) -> uuid.UUID:
    result = create(c, name, partitions, **configs)
    assert int(result.error_code) == NONE, result
    return uuid.UUID(str(result.topic_id))


def produce(c: w.WireClient, topic: str, records: bytes | None, partition: int = 0,
            version: int = 9) -> Any:
    resp = c.call(w.produce_request(version, {topic: {partition: records}}))
    (t,) = resp.responses
    assert t.name == topic
    (p,) = t.partition_responses
    assert int(p.index) == partition
    return p


def latest(c: w.WireClient, topic: str, partition: int = 0) -> int:
    resp = c.call(w.list_offsets_request(7, topic, partition, -1))
    (p,) = resp.topics[0].partitions
    assert int(p.error_code) == NONE, p
    return int(p.offset)


def fetch(c: w.WireClient, topic: str | uuid.UUID | None, offset: int, partition: int = 0,
          version: int = 12) -> Any:
    resp = c.call(w.fetch_request(version, topic, partition, offset, max_wait_ms=0))
    assert int(resp.error_code if version >= 7 else 0) == NONE
    (t,) = resp.responses
    (p,) = t.partitions
    return p


def assert_nothing_stored(c: w.WireClient, topic: str, partition: int = 0) -> None:
    assert latest(c, topic, partition) == 0
    p = fetch(c, topic, 0, partition)
    assert int(p.error_code) == NONE and p.high_watermark == 0 and not p.records


def assert_healthy(b: BrokerProcess) -> None:
    assert b.alive(), f"broker died:\n{b.log()}"
    w.assert_wire_healthy(b.port)


# -- produce ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [3, 7, 9, 11])
@pytest.mark.parametrize("corrupt", [w.corrupt_crc, w.corrupt_payload],
                         ids=["crc-field", "payload"])
def test_produce_bad_crc_is_corrupt_message_and_not_stored(
    client: w.WireClient, topic: str, version: int, corrupt: Any
) -> None:
    create_ok(client, topic)
    bad = corrupt(w.build_batch([b"a", b"b", b"c"]))
    p = produce(client, topic, bad, version=version)
    assert int(p.error_code) == CORRUPT_MESSAGE
    assert p.base_offset == -1
    assert_nothing_stored(client, topic)
    # the rejected batch took no offsets: the next good one starts at 0
    p = produce(client, topic, w.build_batch([b"good"]), version=version)
    assert (int(p.error_code), p.base_offset) == (NONE, 0)
    assert latest(client, topic) == 1


def test_produce_bad_batch_after_good_one_rejects_the_whole_partition(
    client: w.WireClient, topic: str
) -> None:
    create_ok(client, topic)
    payload = w.build_batch([b"ok"]) + w.corrupt_crc(w.build_batch([b"bad"]))
    assert int(produce(client, topic, payload).error_code) == CORRUPT_MESSAGE
    assert_nothing_stored(client, topic)


def test_produce_bad_partition_does_not_affect_good_partition(
    client: w.WireClient, topic: str
) -> None:
    create_ok(client, topic, partitions=2)
    resp = client.call(w.produce_request(9, {topic: {
        0: w.corrupt_crc(w.build_batch([b"bad"])),
        1: w.build_batch([b"good"]),
    }}))
    codes = {int(p.index): int(p.error_code) for p in resp.responses[0].partition_responses}
    assert codes == {0: CORRUPT_MESSAGE, 1: NONE}
    assert_nothing_stored(client, topic, 0)
    assert latest(client, topic, 1) == 1


@pytest.mark.parametrize("records", [None, b"", b"\x00" * 10, b"\x00" * 200],
                         ids=["null", "empty", "short-garbage", "zeros"])
def test_produce_non_batches_are_rejected(
    client: w.WireClient, topic: str, records: bytes | None
) -> None:
    create_ok(client, topic)
    p = produce(client, topic, records)
    assert int(p.error_code) != NONE
    assert_nothing_stored(client, topic)


@pytest.mark.parametrize("magic", [0, 1])
def test_produce_old_message_format_is_rejected(
    client: w.WireClient, topic: str, magic: int
) -> None:
    create_ok(client, topic)
    p = produce(client, topic, w.build_batch([b"old"], magic=magic))
    assert int(p.error_code) != NONE
    assert_nothing_stored(client, topic)


@pytest.mark.parametrize(
    "batch",
    [
        w.build_batch([]),
        w.build_batch([b"a"], last_offset_delta=1000),
        w.build_batch([b"a", b"b"], record_count=5),
    ],
    ids=["no-records", "delta-1000", "count-5-of-2"],
)
def test_produce_inconsistent_batch_is_rejected(
    client: w.WireClient, topic: str, batch: bytes
) -> None:
    """CRC-valid but self-contradictory batches (lastOffsetDelta + 1 != recordCount) are
    refused, as Kafka's LogValidator does: they would claim offsets no record has."""
    create_ok(client, topic)
    p = produce(client, topic, batch)
    assert int(p.error_code) != NONE, f"accepted, at offset {p.base_offset}"
    assert_nothing_stored(client, topic)


@pytest.mark.parametrize("acks", [2, -2, 100])
def test_produce_invalid_acks(client: w.WireClient, topic: str, acks: int) -> None:
    create_ok(client, topic)
    resp = client.call(w.produce_request(9, {topic: {0: w.build_batch([b"x"])}}, acks=acks))
    (p,) = resp.responses[0].partition_responses
    assert int(p.error_code) == INVALID_REQUIRED_ACKS
    assert_nothing_stored(client, topic)


def test_produce_too_large_batch(client: w.WireClient, topic: str) -> None:
    create_ok(client, topic, max_message_bytes="1000")
    p = produce(client, topic, w.batch_of_size(2000))
    assert int(p.error_code) == MESSAGE_TOO_LARGE
    assert p.base_offset == -1
    assert_nothing_stored(client, topic)
    # the limit is inclusive: a batch of exactly max.message.bytes is fine
    p = produce(client, topic, w.batch_of_size(1000))
    assert (int(p.error_code), p.base_offset) == (NONE, 0)
    assert int(produce(client, topic, w.batch_of_size(1001)).error_code) == MESSAGE_TOO_LARGE
    assert latest(client, topic) == 1


def test_produce_unknown_topic_and_partition(client: w.WireClient, topic: str) -> None:
    p = produce(client, topic, w.build_batch([b"x"]))
    assert int(p.error_code) == UNKNOWN_TOPIC_OR_PARTITION
    # produce must not have created it
    md = client.call(w.metadata_request(12, [topic]))
    assert int(md.topics[0].error_code) == UNKNOWN_TOPIC_OR_PARTITION
    create_ok(client, topic, partitions=2)
    for partition in (2, 99, -1):
        p = produce(client, topic, w.build_batch([b"x"]), partition=partition)
        assert int(p.error_code) == UNKNOWN_TOPIC_OR_PARTITION


# -- create topics ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["bad/name", "..", ".", "a" * 250, "", "with space", "semi;colon", "ünï", "tab\tname",
     "trailing-newline\n"],
    ids=["slash", "dotdot", "dot", "250-chars", "empty", "space", "semicolon", "non-ascii",
         "tab", "trailing-newline"],
)
def test_create_topic_invalid_name(client: w.WireClient, name: str) -> None:
    result = create(client, name)
    assert int(result.error_code) == INVALID_TOPIC_EXCEPTION, result
    md = client.call(w.metadata_request(12))
    assert name not in {t.name for t in md.topics}


def test_create_topic_name_of_249_chars_is_fine(client: w.WireClient) -> None:
    name = f"n-{uuid.uuid4().hex}".ljust(249, "x")
    create_ok(client, name)


def test_create_topic_twice(client: w.WireClient, topic: str) -> None:
    create_ok(client, topic, partitions=3)
    result = create(client, topic, partitions=5)
    assert int(result.error_code) == TOPIC_ALREADY_EXISTS
    md = client.call(w.metadata_request(12, [topic]))
    assert len(md.topics[0].partitions) == 3  # unchanged


# -- fetch -----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [4, 11, 12, 13, 16])
def test_fetch_beyond_end_is_offset_out_of_range(
    client: w.WireClient, topic: str, version: int
) -> None:
    tid = create_ok(client, topic)
    assert int(produce(client, topic, w.build_batch([b"a", b"b"])).error_code) == NONE
    key: str | uuid.UUID = tid if version >= 13 else topic
    for offset in (3, 1000, 2**62, -5):
        p = fetch(client, key, offset, version=version)
        assert int(p.error_code) == OFFSET_OUT_OF_RANGE, (offset, p)
        assert p.high_watermark == 2 and not p.records
    p = fetch(client, key, 2, version=version)  # exactly the end: empty, no error
    assert int(p.error_code) == NONE and not p.records
    p = fetch(client, key, 0, version=version)
    assert int(p.error_code) == NONE and p.records


@pytest.mark.parametrize("topic_id", [uuid.uuid4(), None], ids=["random", "null"])
def test_fetch_unknown_topic_id(client: w.WireClient, topic_id: uuid.UUID | None) -> None:
    p = fetch(client, topic_id, 0, version=13)
    assert int(p.error_code) == UNKNOWN_TOPIC_ID


def test_fetch_unknown_topic_name(client: w.WireClient, topic: str) -> None:
    p = fetch(client, topic, 0, version=12)
    assert int(p.error_code) == UNKNOWN_TOPIC_OR_PARTITION


# -- flexible versions: unknown tagged fields are skipped (KIP-482) --------------------------


def test_unknown_tagged_fields_are_ignored(client: w.WireClient, topic: str) -> None:
    create_ok(client, topic)
    for req in (w.metadata_request(12, [topic]), w.fetch_request(12, topic, 0, 0)):
        payload = w.request_payload(req, 31)
        tagged = payload[:-1] + w.uvarint(1) + w.uvarint(99) + w.uvarint(2) + b"hi"
        client.send(struct.pack(">i", len(tagged)) + tagged)
        answer = client.recv_frame()
        assert answer is not None, f"connection closed over an unknown tagged field in {req!r}"
        cid, resp = w.decode_response(int(req.__api_key__), 12, answer)
        assert cid == 31


# -- ApiVersions -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", [5, 99, 32767, -1])
def test_api_versions_unsupported_version_answers_v0(
    client: w.WireClient, version: int
) -> None:
    # what a newer client sends: header v2 and a v3+ body the broker cannot know
    body = w.uvarint(4) + b"new" + w.uvarint(2) + b"9" + b"\x00"
    client.send(w.raw_frame(18, version, 4242, body, flexible=version >= 3))
    payload = client.recv_frame()
    assert payload is not None, "connection closed instead of an UNSUPPORTED_VERSION answer"
    cid, resp = w.decode_response(18, 0, payload)  # header v0, body v0
    assert cid == 4242
    assert int(resp.error_code) == UNSUPPORTED_VERSION
    keys = {int(k.api_key): (int(k.min_version), int(k.max_version)) for k in resp.api_keys}
    assert keys[18][0] == 0 and keys[18][1] >= 3
    assert {0, 1, 2, 3, 19} <= keys.keys()
    # the client retries with a version from the list, on the same connection
    ok = client.call(w.api_versions_request(3))
    assert int(ok.error_code) == NONE


# -- connection-level garbage: that connection closes, the broker carries on -----------------


def _log_summary(b: BrokerProcess) -> str:
    """The broker log without indented backtrace frames."""
    text = b.log_path.read_text(errors="replace")
    return "\n".join(line for line in text.splitlines() if not line.startswith(" "))[-800:]


def _closes(b: BrokerProcess, data: bytes) -> None:
    """Send ``data`` on a fresh connection while another one is open; the first must be
    closed without an answer, the other must keep working, and so must new ones."""
    with w.WireClient(b.port) as bystander, w.WireClient(b.port) as bad:
        assert int(bystander.call(w.api_versions_request(3)).error_code) == NONE
        bad.send(data)
        assert bad.closed_by_peer(timeout=5.0), f"connection not closed after {data[:40]!r}"
        if b.proc is not None:
            try:
                b.proc.wait(0.2)
            except subprocess.TimeoutExpired:
                pass
        assert b.alive(), (
            f"the broker died (exit code {b.proc.returncode if b.proc else None}) after "
            f"{data[:60]!r}:\n{_log_summary(b)}"
        )
        assert int(bystander.call(w.api_versions_request(3)).error_code) == NONE
        md = bystander.call(w.metadata_request(12))
        assert md.brokers
    assert_healthy(b)


@pytest.mark.parametrize("api_key", [9999, 1000, 32767, -1, 4, 5, 6])
def test_unknown_or_unsupported_api_key_closes(srv: BrokerProcess, api_key: int) -> None:
    _closes(srv, w.raw_frame(api_key, 0, 1, b"\x00" * 16, flexible=False))


@pytest.mark.parametrize(("api_key", "version"), [(3, 13), (0, 2), (1, 3), (1, 17), (19, 99)])
def test_unsupported_version_of_known_api_closes(
    srv: BrokerProcess, api_key: int, version: int
) -> None:
    _closes(srv, w.raw_frame(api_key, version, 1, b"\x00" * 16, flexible=False))


@pytest.mark.parametrize(
    "size", [100 * 1024 * 1024 + 1, 2**31 - 1, -1, -(2**31), 0, 7],
    ids=["100MiB+1", "int32-max", "minus-one", "int32-min", "zero", "seven"],
)
def test_bad_size_prefix_closes(srv: BrokerProcess, size: int) -> None:
    _closes(srv, struct.pack(">i", size) + b"\x00\x03\x00\x0c\x00\x00\x00\x01")


def _valid_frames() -> dict[str, bytes]:
    return {
        "metadata-v12": w.frame_of(w.metadata_request(12, ["a", "b"]), 1),
        "metadata-v1": w.frame_of(w.metadata_request(1, ["a"]), 1),
        "produce-v9": w.frame_of(w.produce_request(9, {"t": {0: w.build_batch([b"x"])}}), 1),
        "produce-v3": w.frame_of(w.produce_request(3, {"t": {0: w.build_batch([b"x"])}}), 1),
        "fetch-v12": w.frame_of(w.fetch_request(12, "t", 0, 0), 1),
        "fetch-v4": w.frame_of(w.fetch_request(4, "t", 0, 0), 1),
        "list-offsets-v7": w.frame_of(w.list_offsets_request(7, "t", 0), 1),
        "create-topics-v7": w.frame_of(w.create_topics_request(7, ["t"]), 1),
    }


VALID = _valid_frames()


def _reframe(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


@pytest.mark.parametrize("which", list(VALID))
def test_truncated_body_closes(srv: BrokerProcess, which: str) -> None:
    payload = VALID[which][4:]
    header_len = len(w.request_header(0, 0, 0, "kafka-wire-test", False))
    # keep the header, drop the tail of the body (size prefix says so: a complete frame)
    _closes(srv, _reframe(payload[: header_len + (len(payload) - header_len) // 2]))


@pytest.mark.parametrize("which", list(VALID))
def test_garbage_body_closes(srv: BrokerProcess, which: str) -> None:
    payload = VALID[which][4:]
    header_len = len(w.request_header(0, 0, 0, "kafka-wire-test", False))
    _closes(srv, _reframe(payload[:header_len] + b"\x7f" * 12))  # lengths past the end


@pytest.mark.parametrize(
    "payload",
    [
        struct.pack(">hhi", 18, 3, 1),  # header without client_id
        struct.pack(">hhih", 18, 3, 1, 50) + b"short",  # client_id longer than the frame
        struct.pack(">hhih", 3, 1, 1, 2) + b"\xff\xfe",  # client_id not UTF-8
        struct.pack(">hhih", 3, 12, 1, -1) + b"\x05",  # header tagged fields truncated
    ],
    ids=["no-client-id", "long-client-id", "bad-utf8", "bad-tags"],
)
def test_broken_request_header_closes(srv: BrokerProcess, payload: bytes) -> None:
    _closes(srv, _reframe(payload))


@pytest.mark.parametrize(
    ("api_key", "version", "body"),
    [
        (3, 12, b"\xff\xff\xff\xff\x0f"),  # Metadata: topics, compact length 2**32-1
        (3, 9, b"\x80\x80\x80\x80\x0c"),  # Metadata: topics, compact length 3 * 2**30
        (19, 7, b"\xff\xff\xff\xff\x0f"),  # CreateTopics: topics
        (1, 12, bytes(25) + b"\xff\xff\xff\xff\x0f"),  # Fetch: topics
        (2, 7, bytes(5) + b"\xff\xff\xff\xff\x0f"),  # ListOffsets: topics
        (20, 6, b"\xff\xff\xff\xff\x0f"),  # DeleteTopics: topics
    ],
    ids=["metadata-v12", "metadata-v9", "create-topics-v7", "fetch-v12", "list-offsets-v7",
         "delete-topics-v6"],
)
def test_huge_array_length_closes_only_that_connection(
    srv: BrokerProcess, api_key: int, version: int, body: bytes
) -> None:
    """An array claiming billions of elements in a 30-byte frame is a malformed request like
    any other: not a reason to allocate gigabytes, let alone to die (the module's broker
    takes all six, and every other bad input, and must still serve)."""
    _closes(srv, w.raw_frame(api_key, version, 1, body + bytes(3)))


def test_disconnect_mid_frame_is_harmless(srv: BrokerProcess) -> None:
    frame = VALID["produce-v9"]
    for cut in (2, 4, 10, len(frame) - 1):
        with w.WireClient(srv.port) as c:
            c.send(frame[:cut])
    assert_healthy(srv)


def test_valid_request_then_garbage_on_same_connection(srv: BrokerProcess) -> None:
    """The request before the garbage is still answered, then the connection closes."""
    with w.WireClient(srv.port) as c:
        c.send(w.frame_of(w.api_versions_request(3), 7) + w.raw_frame(9999, 0, 8, b""))
        payload = c.recv_frame()
        assert payload is not None
        cid, resp = w.decode_response(18, 3, payload)
        assert cid == 7 and int(resp.error_code) == NONE
        assert c.closed_by_peer()
    assert_healthy(srv)


# -- and after all that, a real client still works ---------------------------------------------


def test_zz_real_client_works_after_bad_input(srv: BrokerProcess) -> None:
    assert_healthy(srv)
    w.confluent_round_trip(srv.bootstrap, f"after-bad-input-{uuid.uuid4().hex[:8]}")
    assert srv.alive()


def test_fresh_broker_survives_a_burst_of_bad_connections(fresh_broker: BrokerProcess) -> None:
    frames = [struct.pack(">i", 2**31 - 1), w.raw_frame(9999, 0, 1, b"")]
    frames += [_reframe(f[4:][: len(f) // 2]) for f in VALID.values()]
    for _ in range(3):
        for f in frames:
            with w.WireClient(fresh_broker.port) as c:
                c.send(f)
                assert c.closed_by_peer()
    assert_healthy(fresh_broker)
    w.confluent_round_trip(fresh_broker.bootstrap, "after-burst")

