"""Produce and consume with real Kafka clients (confluent-kafka, kafka-python, aiokafka, kcat).

Every client works on one partition (partition 0) of its own topic, so the expected records
are a plain list: record i is at offset i, with a key, headers, a timestamp and a value that
names the producing client and codec. Consumers return the same `Record` shape, so a test is
one ordered list comparison.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import accumulate

import confluent_kafka
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition as AioTopicPartition
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_CREATE_TIME,
    Consumer,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KpTopicPartition

CLIENTS = ("confluent", "kafka-python", "aiokafka", "kcat")
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
KCAT = shutil.which("kcat") or "/usr/bin/kcat"
TIMEOUT = 60.0  # seconds any one produce or consume may take
CREATE_TIME = 0  # Kafka's timestamp type for producer-set timestamps

Headers = tuple[tuple[str, bytes | None], ...]


@dataclass(frozen=True)
class Record:
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp: int | None  # None: the producing client stamps it (kcat), checked by window


# ---------------------------------------------------------------------------- expectations


FILLER = "the-quick-brown-fox-jumps-over-the-lazy-dog-" * 3
BASE_TS = 1_700_000_000_000  # explicit timestamps: fixed, in the past, not monotonic


def make_records(producer: str, codec: str, n: int, *, per_record: bool = True) -> list[Record]:
    """The n records `producer` writes with `codec`.

    With per_record (every client but kcat) each record has its own headers (some none, a
    repeated header name) and its own timestamp (steps back every 7th record, so batches are
    not sorted by time); every 17th record has no key. kcat can only set the same headers on
    every record of one run and cannot set timestamps, so without per_record the records
    share fixed headers, always have a key and leave the timestamp to the client.
    """
    out = []
    for i in range(n):
        value = f"{producer}-{codec}-{i:06d}|{FILLER[: 20 + i % 97]}".encode()
        if per_record:
            key = None if i % 17 == 5 else f"key-{i:06d}".encode()
            headers: Headers
            if i % 10 == 3:
                headers = ()
            else:
                headers = (("seq", str(i).encode()), ("codec", codec.encode()),
                           ("dup", b"first"), ("dup", f"second-{i % 3}".encode()))
            ts: int | None = BASE_TS + i * 10 - (1000 if i % 7 == 0 else 0)
        else:
            key = f"key-{i:06d}".encode()
            headers = kcat_headers(producer, codec)
            ts = None
        out.append(Record(i, key, value, headers, ts))
    return out


def kcat_headers(producer: str, codec: str) -> Headers:
    return (("producer", producer.encode()), ("codec", codec.encode()),
            ("dup", b"first"), ("dup", b"second"))


def assert_records(
    got: Sequence[Record], want: Sequence[Record], ts_window: tuple[int, int] | None = None
) -> None:
    """Same records in the same order. Records without an expected timestamp must carry one
    inside ts_window (ms, inclusive), non-decreasing; the first mismatch is reported."""
    if ts_window is not None:
        lo, hi = ts_window
        last = lo
        for g in got:
            assert g.timestamp is not None and lo <= g.timestamp <= hi, (
                f"offset {g.offset}: timestamp {g.timestamp} outside [{lo}, {hi}]")
            assert g.timestamp >= last, f"offset {g.offset}: timestamp went back"
            last = g.timestamp
        got = [replace(g, timestamp=None) for g in got]
    for i, (g, w) in enumerate(zip(got, want, strict=False)):
        assert g == w, f"record {i} differs:\n got  {g}\n want {w}"
    assert len(got) == len(want), f"got {len(got)} records, want {len(want)}"


def create_topic(bootstrap: str, topic: str, partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=10)
    futures[topic].result(timeout=TIMEOUT)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# ---------------------------------------------------------------------------- raw batches

CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


@dataclass(frozen=True)
class Batch:
    base_offset: int
    count: int
    codec: int  # attributes & 7
    producer_id: int
    base_sequence: int


def stored_batches(bootstrap: str, topic: str, partition: int = 0) -> list[Batch]:
    """The record batch headers the broker serves, read with a hand-made Fetch v4.

    The clients decompress transparently, so this is how a test sees which codec (and which
    producer id and sequence) actually reached the broker.
    """
    host, port = bootstrap.rsplit(":", 1)
    out: list[Batch] = []
    offset = 0
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
        while True:
            records, high_watermark = _fetch_v4(sock, topic, partition, offset)
            pos = 0
            while pos + 61 <= len(records):
                base, length = struct.unpack_from(">qi", records, pos)
                if pos + 12 + length > len(records):
                    break  # a partial batch at the end of the response
                magic = records[pos + 16]
                assert magic == 2, f"offset {base}: magic {magic}"
                attributes, last_delta = struct.unpack_from(">hi", records, pos + 21)
                pid, _epoch, seq, count = struct.unpack_from(">qhii", records, pos + 43)
                out.append(Batch(base, count, attributes & 7, pid, seq))
                offset = base + last_delta + 1
                pos += 12 + length
            if offset >= high_watermark:
                return out
            assert pos > 0, f"fetch at {offset} returned no whole batch"


def _fetch_v4(sock: socket.socket, topic: str, partition: int, offset: int) -> tuple[bytes, int]:
    name = topic.encode()
    client = b"batch-inspector"
    body = struct.pack(">hhih", 1, 4, 7, len(client)) + client
    body += struct.pack(">iiiibi", -1, 500, 1, 64 << 20, 0, 1)
    body += struct.pack(">h", len(name)) + name
    body += struct.pack(">iiqi", 1, partition, offset, 64 << 20)
    sock.sendall(struct.pack(">i", len(body)) + body)
    resp = _recv_exactly(sock, struct.unpack(">i", _recv_exactly(sock, 4))[0])
    pos = 4 + 4  # correlation id, throttle time
    topics, = struct.unpack_from(">i", resp, pos)
    assert topics == 1
    name_len, = struct.unpack_from(">h", resp, pos + 4)
    pos += 6 + name_len
    _parts, _index, error, high_watermark = struct.unpack_from(">iihq", resp, pos)
    assert error == 0, f"fetch error {error}"
    pos += 4 + 4 + 2 + 8 + 8  # ..., last stable offset
    aborted, = struct.unpack_from(">i", resp, pos)
    pos += 4 + max(aborted, 0) * 16
    size, = struct.unpack_from(">i", resp, pos)
    return resp[pos + 4: pos + 4 + max(size, 0)], high_watermark


def api_versions(bootstrap: str) -> dict[int, tuple[int, int]]:
    """The broker's ApiVersions (v0) answer: api key -> (min version, max version)."""
    host, port = bootstrap.rsplit(":", 1)
    client = b"version-probe"
    req = struct.pack(">hhih", 18, 0, 1, len(client)) + client
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
        sock.sendall(struct.pack(">i", len(req)) + req)
        resp = _recv_exactly(sock, struct.unpack(">i", _recv_exactly(sock, 4))[0])
    _corr, error, count = struct.unpack_from(">ihi", resp)
    assert error == 0, f"ApiVersions error {error}"
    return {key: (lo, hi) for key, lo, hi in struct.iter_unpack(">hhh", resp[10: 10 + 6 * count])}


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        assert chunk, "broker closed the connection"
        buf += chunk
    return bytes(buf)


def assert_batches(
    bootstrap: str, topic: str, codec: str, n: int, idempotent: bool | None = None
) -> list[Batch]:
    """The topic holds n records in batches that all use `codec`; an idempotent producer's
    batches carry its producer id and consecutive sequence numbers."""
    batches = stored_batches(bootstrap, topic)
    # kafka-python sends a batch uncompressed when compressing would not shrink it, which
    # happens for a lone record; any batch of several records must carry the codec.
    wrong = [b for b in batches
             if b.codec != CODEC_IDS[codec] and not (b.count == 1 and b.codec == 0)]
    assert not wrong, (codec, wrong[:3], len(batches))
    assert sum(b.count for b in batches) == n
    assert [b.base_offset for b in batches] == [0, *accumulate(b.count for b in batches[:-1])]
    if idempotent is not None:
        pids = {b.producer_id for b in batches}
        if idempotent:
            assert len(pids) == 1 and min(pids) >= 0, pids
            assert [b.base_sequence for b in batches] == [b.base_offset for b in batches]
        else:
            assert pids == {-1}, pids
    return batches


# ---------------------------------------------------------------------------- librdkafka gates

API_PRODUCE, API_FETCH, API_FIND_COORDINATOR = 0, 1, 10
ANY = 32767


def librdkafka_version(client: str) -> tuple[int, ...]:
    if client == "confluent":
        text = confluent_kafka.libversion()[0]
    else:
        out = subprocess.run([KCAT, "-V"], capture_output=True, text=True, timeout=10).stdout
        match = re.search(r"librdkafka (\d+\.\d+\.\d+)", out)
        assert match, out
        text = match.group(1)
    return tuple(int(x) for x in text.split(".")[:3])


def librdkafka_codec(
    client: str, codec: str, apis: dict[int, tuple[int, int]]
) -> tuple[str, str | None]:
    """The codec a librdkafka producer really writes, and why it differs from `codec`.

    librdkafka silently sends a batch uncompressed ("Broker does not support compression
    type X: not compressing batch", a debug-level line) unless the broker's ApiVersions pass
    its feature checks (rdkafka_feature.c, rdkafka_msgset_writer.c):
      * lz4 needs FindCoordinator advertised (its proxy for "broker >= 0.8.2");
      * zstd needs Produce v7 and Fetch v10;
      * releases before the fix for librdkafka#4956 (kcat 1.7.1 links 2.0.2) check gzip,
        snappy and lz4 against Produce *v0* exactly, and lz4 against FindCoordinator v0, so a
        broker advertising Produce from v3 (KIP-896) gets those codecs uncompressed. Apache
        Kafka 4.0 advertises Produce v0-v2 for that reason (KAFKA-18659) while refusing them.
    """
    if codec == "none":
        return codec, None
    old = librdkafka_version(client) < (2, 11)
    needs: list[tuple[int, int, int, str]] = []
    if codec == "lz4":
        needs.append((API_FIND_COORDINATOR, 0, 0 if old else ANY, "FindCoordinator"))
    if codec == "zstd":
        needs += [(API_PRODUCE, 7, 7 if old else ANY, "Produce v7"),
                  (API_FETCH, 10, 10 if old else ANY, "Fetch v10")]
    elif old:
        needs.append((API_PRODUCE, 0, 0, "Produce v0"))
    for key, lo, hi, what in needs:
        have = apis.get(key)
        if have is None or not (have[0] <= hi and lo <= have[1]):
            return "none", (f"librdkafka {'.'.join(map(str, librdkafka_version(client)))} "
                            f"sends {codec} uncompressed: broker advertises "
                            f"{what.split()[0]} {have or 'not at all'}, needs {what}")
    return codec, None


# ---------------------------------------------------------------------------- confluent-kafka


def confluent_produce(bootstrap: str, topic: str, records: Sequence[Record], codec: str) -> None:
    p = Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "compression.type": codec,
        "linger.ms": 20,
        "batch.num.messages": 10_000,
        "batch.size": 1_000_000,
        "queue.buffering.max.messages": 1_000_000,
        "enable.idempotence": True,  # keeps order across retries
    })
    offsets: list[int] = []
    errors: list[str] = []

    def on_delivery(err: object, msg: Message) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            offsets.append(msg.offset() or 0)

    for r in records:
        # timestamp=0 is librdkafka's "now": kcat-style records leave the stamp to the client
        p.produce(topic, value=r.value, key=r.key, partition=0, headers=list(r.headers),
                  timestamp=r.timestamp or 0, on_delivery=on_delivery)
        p.poll(0)
    assert p.flush(TIMEOUT) == 0, "confluent producer did not deliver everything"
    assert not errors, errors[:5]
    assert offsets == [r.offset for r in records], "delivery reports: unexpected offsets"


def confluent_consume(bootstrap: str, topic: str, n: int) -> list[Record]:
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "unused-assign-only",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "fetch.max.bytes": 50 * 1024 * 1024,
        "max.partition.fetch.bytes": 10 * 1024 * 1024,
        "fetch.wait.max.ms": 100,
    })
    out: list[Record] = []
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + TIMEOUT
        while len(out) < n and time.monotonic() < deadline:
            for m in c.consume(num_messages=10_000, timeout=0.5):
                if m.error() is not None:
                    raise KafkaException(m.error())
                ts_type, ts = m.timestamp()
                offset = m.offset()
                assert offset is not None and ts_type == TIMESTAMP_CREATE_TIME, (offset, ts_type)
                raw = m.headers() or []
                assert isinstance(raw, list), raw  # librdkafka keeps order and duplicates
                headers = [(k, v.encode() if isinstance(v, str) else v) for k, v in raw]
                out.append(Record(offset, m.key(), m.value(), tuple(headers), ts))
    finally:
        c.close()
    return out


# ---------------------------------------------------------------------------- kafka-python


def kafka_python_produce(
    bootstrap: str, topic: str, records: Sequence[Record], codec: str, *, tuned: bool = True
) -> None:
    """Idempotence (kafka-python's default: InitProducerId, acks=all) is always left on;
    tuned=False keeps every other default too (16 KiB batches, no linger)."""
    batching = {"linger_ms": 20, "batch_size": 512 * 1024} if tuned else {}
    p = KafkaProducer(
        bootstrap_servers=bootstrap,
        compression_type=None if codec == "none" else codec,
        **batching,
    )
    assert p.config["enable_idempotence"], "kafka-python default changed"
    try:
        futures = [
            p.send(topic, value=r.value, key=r.key, headers=list(r.headers), partition=0,
                   timestamp_ms=r.timestamp)
            for r in records
        ]
        p.flush(TIMEOUT)
        offsets = [f.get(timeout=TIMEOUT).offset for f in futures]
    finally:
        p.close(timeout=10)
    assert offsets == [r.offset for r in records], "kafka-python: unexpected offsets"


def kafka_python_consume(bootstrap: str, topic: str, n: int) -> list[Record]:
    c = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=50 * 1024 * 1024,
        max_partition_fetch_bytes=10 * 1024 * 1024,
        max_poll_records=50_000,
    )
    out: list[Record] = []
    try:
        tp = KpTopicPartition(topic, 0)
        c.assign([tp])
        c.seek_to_beginning(tp)
        deadline = time.monotonic() + TIMEOUT
        while len(out) < n and time.monotonic() < deadline:
            for m in c.poll(timeout_ms=500).get(tp, []):
                assert m.timestamp_type == CREATE_TIME, (m.offset, m.timestamp_type)
                out.append(Record(m.offset, m.key, m.value, tuple(m.headers), m.timestamp))
    finally:
        c.close()
    return out


# ---------------------------------------------------------------------------- aiokafka


def aiokafka_produce(bootstrap: str, topic: str, records: Sequence[Record], codec: str) -> None:
    asyncio.run(_aiokafka_produce(bootstrap, topic, records, codec))


async def _aiokafka_produce(
    bootstrap: str, topic: str, records: Sequence[Record], codec: str
) -> None:
    p = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        compression_type=None if codec == "none" else codec,
        linger_ms=20,
        max_batch_size=512 * 1024,
    )
    await p.start()
    try:
        futures = [
            await p.send(topic, value=r.value, key=r.key, headers=list(r.headers), partition=0,
                         timestamp_ms=r.timestamp)
            for r in records
        ]
        metas = await asyncio.wait_for(asyncio.gather(*futures), TIMEOUT)
    finally:
        await p.stop()
    assert [m.offset for m in metas] == [r.offset for r in records], "aiokafka: unexpected offsets"


def aiokafka_consume(bootstrap: str, topic: str, n: int) -> list[Record]:
    return asyncio.run(_aiokafka_consume(bootstrap, topic, n))


async def _aiokafka_consume(bootstrap: str, topic: str, n: int) -> list[Record]:
    c = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=50 * 1024 * 1024,
        max_partition_fetch_bytes=10 * 1024 * 1024,
    )
    await c.start()
    out: list[Record] = []
    try:
        tp = AioTopicPartition(topic, 0)
        c.assign([tp])
        await c.seek_to_beginning(tp)
        deadline = time.monotonic() + TIMEOUT
        while len(out) < n and time.monotonic() < deadline:
            batch = await c.getmany(tp, timeout_ms=500, max_records=50_000)
            for m in batch.get(tp, []):
                assert m.timestamp_type == CREATE_TIME, (m.offset, m.timestamp_type)
                out.append(Record(m.offset, m.key, m.value, tuple(m.headers), m.timestamp))
    finally:
        await c.stop()
    return out


# ---------------------------------------------------------------------------- kcat

KCAT_FORMAT = r"%o\t%T\t%k\t%h\t%s\n"


def kcat_produce(bootstrap: str, topic: str, records: Sequence[Record], codec: str) -> None:
    """kcat -P: one line per record, `key<TAB>value`; headers from -H, the same for all."""
    headers = records[0].headers if records else ()
    assert all(r.timestamp is None and r.headers == headers and r.key for r in records), (
        "kcat sets neither per-record headers nor timestamps")
    cmd = [KCAT, "-P", "-b", bootstrap, "-t", topic, "-p", "0", "-K", r"\t",
           "-X", f"compression.codec={codec}", "-X", "linger.ms=20",
           "-X", "batch.num.messages=10000", "-X", "acks=all"]
    for name, val in headers:
        cmd += ["-H", f"{name}={(val or b'').decode()}"]
    data = b"".join((r.key or b"") + b"\t" + (r.value or b"") + b"\n" for r in records)
    proc = subprocess.run(cmd, input=data, capture_output=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert b"fail" not in proc.stderr.lower(), proc.stderr.decode(errors="replace")


def kcat_consume(bootstrap: str, topic: str, n: int) -> list[Record]:
    """kcat -C -o beginning -e, one tab-separated line per record (-Z: a null key is NULL)."""
    cmd = [KCAT, "-C", "-b", bootstrap, "-t", topic, "-p", "0", "-o", "beginning", "-e",
           "-q", "-Z", "-f", KCAT_FORMAT, "-X", "fetch.max.bytes=52428800",
           "-X", "max.partition.fetch.bytes=10485760"]
    proc = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    out = []
    for line in proc.stdout.splitlines():
        offset, ts, key, headers, value = line.split(b"\t", 4)
        out.append(Record(int(offset), None if key == b"NULL" else key, value,
                          _kcat_headers(headers), int(ts)))
    return out


def _kcat_headers(field: bytes) -> Headers:
    # kcat's %h: name=value pairs joined by commas (values here have neither ',' nor '=').
    if not field:
        return ()
    pairs = (h.split(b"=", 1) for h in field.split(b","))
    return tuple((name.decode(), val) for name, val in pairs)


PRODUCE = {
    "confluent": confluent_produce,
    "kafka-python": kafka_python_produce,
    "aiokafka": aiokafka_produce,
    "kcat": kcat_produce,
}
CONSUME = {
    "confluent": confluent_consume,
    "kafka-python": kafka_python_consume,
    "aiokafka": aiokafka_consume,
    "kcat": kcat_consume,
}
PER_RECORD = {"confluent": True, "kafka-python": True, "aiokafka": True, "kcat": False}
