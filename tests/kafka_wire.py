"""A tiny, test-only Kafka wire encoder: request frames, v2 record batches, a raw client.

Independent of ``broker_service`` on purpose (tests must not trust the code under test to
build their inputs): request bodies go through kio's generated writers, record batches are
built by hand from the Kafka spec and checksummed with CRC-32C.
"""

from __future__ import annotations

import datetime
import io
import socket
import struct
import sys
import time
import uuid
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from crc32c import crc32c
from kio.index import load_request_schema, load_response_schema
from kio.serial import entity_reader, entity_writer

API_VERSIONS = 18
BATCH_HEADER_SIZE = 61

# -- primitives --------------------------------------------------------------------------


def uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def varint(value: int) -> bytes:
    """Zig-zag encoded signed varint (as in records)."""
    return uvarint((value << 1) ^ (value >> 63))


def legacy_string(value: str | None) -> bytes:
    if value is None:
        return b"\xff\xff"
    data = value.encode()
    return struct.pack(">h", len(data)) + data


# -- record batches (magic v2) ------------------------------------------------------------


def encode_record(
    offset_delta: int,
    timestamp_delta: int,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]] = (),
) -> bytes:
    body = bytearray(b"\x00")  # attributes
    body += varint(timestamp_delta) + varint(offset_delta)
    for blob in (key, value):
        body += varint(-1) if blob is None else varint(len(blob)) + blob
    body += varint(len(headers))
    for hk, hv in headers:
        hkb = hk.encode()
        body += varint(len(hkb)) + hkb
        body += varint(-1) if hv is None else varint(len(hv)) + hv
    return varint(len(body)) + bytes(body)


def build_batch(
    values: Sequence[bytes | None],
    *,
    keys: Sequence[bytes | None] | None = None,
    base_offset: int = 0,
    base_timestamp: int | None = None,
    partition_leader_epoch: int = -1,
    magic: int = 2,
    attributes: int = 0,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    last_offset_delta: int | None = None,
    record_count: int | None = None,
) -> bytes:
    """One uncompressed record batch with a correct CRC-32C (header fields derived from the
    records unless overridden, to build consistent-CRC but inconsistent batches)."""
    if base_timestamp is None:
        base_timestamp = int(time.time() * 1000)
    keys = keys if keys is not None else [None] * len(values)
    records = b"".join(
        encode_record(i, i, k, v) for i, (k, v) in enumerate(zip(keys, values, strict=True))
    )
    n = len(values)
    after_crc = struct.pack(
        ">hiqqqhii",
        attributes,
        max(n - 1, 0) if last_offset_delta is None else last_offset_delta,
        base_timestamp,
        base_timestamp + max(n - 1, 0),  # maxTimestamp
        producer_id,
        producer_epoch,
        base_sequence,
        n if record_count is None else record_count,
    ) + records
    crc = crc32c(after_crc)
    batch_length = 4 + 1 + 4 + len(after_crc)  # leaderEpoch + magic + crc + rest
    return (
        struct.pack(">qiibI", base_offset, batch_length, partition_leader_epoch, magic, crc)
        + after_crc
    )


def batch_of_size(size: int, **kw: Any) -> bytes:
    """A one-record batch of exactly ``size`` bytes (size >= 80)."""
    pad = size - len(build_batch([b""], **kw))
    for extra in range(pad, pad - 8, -1):  # the record's varint lengths grow with the value
        b = build_batch([b"x" * max(extra, 0)], **kw)
        if len(b) == size:
            return b
    raise ValueError(f"cannot build a batch of exactly {size} bytes")


def corrupt_crc(batch: bytes) -> bytes:
    """Flip one bit of the CRC field (bytes 17..20)."""
    b = bytearray(batch)
    b[17] ^= 0x01
    return bytes(b)


def corrupt_payload(batch: bytes) -> bytes:
    """Flip one bit of the last record byte, leaving the stored CRC stale."""
    b = bytearray(batch)
    b[-1] ^= 0x01
    return bytes(b)


def batch_crc_ok(batch: bytes | bytearray | memoryview) -> bool:
    stored = struct.unpack_from(">I", batch, 17)[0]
    return bool(crc32c(bytes(batch[21:])) == stored)


# -- requests ------------------------------------------------------------------------------


def schema_module(api_key: int, version: int, response: bool = False) -> ModuleType:
    """The kio module of one request/response version (for its nested entity classes)."""
    cls = (load_response_schema if response else load_request_schema)(api_key, version)
    return sys.modules[cls.__module__]


def encode_entity(entity: Any) -> bytes:
    buf = io.BytesIO()
    entity_writer(type(entity))(buf, entity)
    return buf.getvalue()


def request_header(
    api_key: int, version: int, correlation_id: int, client_id: str | None, flexible: bool
) -> bytes:
    """Request header v1 (legacy) or v2 (flexible: + empty tagged fields)."""
    head = struct.pack(">hhi", api_key, version, correlation_id) + legacy_string(client_id)
    return head + (b"\x00" if flexible else b"")


def is_flexible(api_key: int, version: int) -> bool:
    try:
        return bool(load_request_schema(api_key, version).__flexible__)
    except Exception:
        # unknown to kio: only ApiVersions has a rule (header v2 from v3 on)
        return api_key == API_VERSIONS and version >= 3


def raw_frame(
    api_key: int,
    version: int,
    correlation_id: int,
    body: bytes,
    *,
    client_id: str | None = "kafka-wire-test",
    flexible: bool | None = None,
) -> bytes:
    """A full request frame, size prefix included."""
    if flexible is None:
        flexible = is_flexible(api_key, version)
    payload = request_header(api_key, version, correlation_id, client_id, flexible) + body
    return struct.pack(">i", len(payload)) + payload


def frame_of(request: Any, correlation_id: int, client_id: str | None = "kafka-wire-test") -> bytes:
    """A full frame for a kio request instance."""
    return raw_frame(
        int(request.__api_key__),
        int(request.__version__),
        correlation_id,
        encode_entity(request),
        client_id=client_id,
        flexible=bool(request.__flexible__),
    )


def request_payload(request: Any, correlation_id: int) -> bytes:
    """A frame without its size prefix (what the broker's pure parsers receive)."""
    return frame_of(request, correlation_id)[4:]


def produce_request(
    version: int,
    topics: dict[str, dict[int, bytes | None]],
    *,
    acks: int = -1,
    timeout_ms: int = 5000,
    transactional_id: str | None = None,
) -> Any:
    m = schema_module(0, version)
    return m.ProduceRequest(
        transactional_id=transactional_id,
        acks=acks,
        timeout=datetime.timedelta(milliseconds=timeout_ms),
        topic_data=tuple(
            m.TopicProduceData(
                name=name,
                partition_data=tuple(
                    m.PartitionProduceData(index=i, records=r) for i, r in parts.items()
                ),
            )
            for name, parts in topics.items()
        ),
    )


def fetch_request(
    version: int,
    topic: str | uuid.UUID | None,
    partition: int,
    offset: int,
    *,
    max_wait_ms: int = 0,
    min_bytes: int = 1,
    max_bytes: int = 1 << 20,
) -> Any:
    """``topic`` is a name (v4-v12) or a topic id (v13+; None is the all-zero id)."""
    m = schema_module(1, version)
    part = m.FetchPartition(partition=partition, fetch_offset=offset, partition_max_bytes=max_bytes)
    if version >= 13:
        assert not isinstance(topic, str)
        ftopic = m.FetchTopic(topic_id=topic, partitions=(part,))
    else:
        ftopic = m.FetchTopic(topic=topic, partitions=(part,))
    kw: dict[str, Any] = {}
    if version >= 7:
        kw["forgotten_topics_data"] = ()
    return m.FetchRequest(
        max_wait=datetime.timedelta(milliseconds=max_wait_ms),
        min_bytes=min_bytes,
        max_bytes=max_bytes,
        topics=(ftopic,),
        **kw,
    )


def list_offsets_request(version: int, topic: str, partition: int, timestamp: int = -1) -> Any:
    m = schema_module(2, version)
    return m.ListOffsetsRequest(
        replica_id=-1,
        **({"isolation_level": 0} if version >= 2 else {}),
        topics=(
            m.ListOffsetsTopic(
                name=topic,
                partitions=(
                    m.ListOffsetsPartition(partition_index=partition, timestamp=timestamp),
                ),
            ),
        ),
    )


def create_topics_request(
    version: int,
    names: Sequence[str],
    *,
    partitions: int = 1,
    configs: dict[str, str] | None = None,
) -> Any:
    m = schema_module(19, version)
    cfgs = tuple(m.CreatableTopicConfig(name=k, value=v) for k, v in (configs or {}).items())
    return m.CreateTopicsRequest(
        topics=tuple(
            m.CreatableTopic(
                name=n, num_partitions=partitions, replication_factor=-1, assignments=(),
                configs=cfgs,
            )
            for n in names
        ),
        timeout=datetime.timedelta(seconds=10),
        validate_only=False,
    )


def metadata_request(version: int, topics: Sequence[str] | None = None) -> Any:
    m = schema_module(3, version)
    kw: dict[str, Any] = {}
    if version >= 4:
        kw["allow_auto_topic_creation"] = False
    if 8 <= version <= 10:
        kw["include_cluster_authorized_operations"] = False
    if version >= 8:
        kw["include_topic_authorized_operations"] = False
    if topics is None:
        reqs: tuple[Any, ...] | None = None if version >= 1 else ()
    elif version >= 10:
        reqs = tuple(m.MetadataRequestTopic(name=t, topic_id=None) for t in topics)
    else:
        reqs = tuple(m.MetadataRequestTopic(name=t) for t in topics)
    return m.MetadataRequest(topics=reqs, **kw)


def api_versions_request(version: int) -> Any:
    m = schema_module(18, version)
    if version >= 3:
        return m.ApiVersionsRequest(
            client_software_name="kafka-wire-test", client_software_version="0.1"
        )
    return m.ApiVersionsRequest()


# -- responses -----------------------------------------------------------------------------


def response_header_size(api_key: int, version: int) -> int:
    """4 (v0) or 5 (v1, with tagged fields); ApiVersions always answers with v0."""
    if api_key == API_VERSIONS:
        return 4
    return 5 if is_flexible(api_key, version) else 4


def decode_response(api_key: int, version: int, payload: bytes) -> tuple[int, Any]:
    """(correlation_id, kio response) from a frame without its size prefix."""
    (cid,) = struct.unpack_from(">i", payload, 0)
    cls = load_response_schema(api_key, version)
    entity, size = entity_reader(cls)(bytes(payload), response_header_size(api_key, version))
    assert response_header_size(api_key, version) + size == len(payload), (
        f"{cls.__name__}: {len(payload)} bytes, decoded {size} after the header"
    )
    return cid, entity


class WireClient:
    """A blocking raw-socket Kafka client: send frames, read frames, notice a close."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._cid = 0

    def __enter__(self) -> WireClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def next_cid(self) -> int:
        self._cid += 1
        return self._cid

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _recv_exact(self, n: int) -> bytes | None:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    def recv_frame(self) -> bytes | None:
        """One response frame without its size prefix; None when the broker closed."""
        head = self._recv_exact(4)
        if head is None:
            return None
        (size,) = struct.unpack(">i", head)
        return self._recv_exact(size)

    def call(self, request: Any) -> Any:
        cid = self.next_cid()
        self.send(frame_of(request, cid))
        payload = self.recv_frame()
        assert payload is not None, f"connection closed instead of answering {request!r}"
        got_cid, response = decode_response(
            int(request.__api_key__), int(request.__version__), payload
        )
        assert got_cid == cid
        return response

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True when the broker closes (EOF or reset) within ``timeout`` seconds, having
        sent nothing else."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
        return data == b""


# -- is the broker still serving? ------------------------------------------------------------


def assert_wire_healthy(port: int) -> None:
    """A new connection gets correct ApiVersions (v0 and v3) and Metadata answers."""
    with WireClient(port, timeout=10.0) as c:
        for version in (0, 3):
            av = c.call(api_versions_request(version))
            assert int(av.error_code) == 0
            keys = {int(k.api_key): (int(k.min_version), int(k.max_version))
                    for k in av.api_keys}
            assert {0, 1, 3, 18} <= keys.keys()
        md = c.call(metadata_request(12))
        assert [int(b.port) for b in md.brokers] == [port]


def confluent_round_trip(bootstrap: str, topic: str, n: int = 5, timeout: float = 30.0) -> None:
    """Produce n records with confluent-kafka (topic created on the wire first) and read
    them back; fails when anything is lost, reordered or late."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

    port = int(bootstrap.rsplit(":", 1)[1])
    with WireClient(port) as c:
        resp = c.call(create_topics_request(7, [topic]))
        assert int(resp.topics[0].error_code) == 0, resp.topics[0]
    values = [f"{topic}-{i}".encode() for i in range(n)]
    errors: list[object] = []
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0,
                  "message.timeout.ms": int(timeout * 1000)})
    for v in values:
        p.produce(topic, v, partition=0,
                  on_delivery=lambda err, _msg: errors.append(err) if err else None)
    assert p.flush(timeout) == 0, "confluent-kafka producer did not deliver in time"
    assert not errors, errors
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused-assign-only",
                         "enable.auto.commit": False, "enable.auto.offset.store": False})
    got: list[tuple[int, bytes | None]] = []
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + timeout
        while len(got) < n and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            got.append((int(msg.offset() or 0), msg.value()))
    finally:
        consumer.close()
    assert got == list(enumerate(values))
