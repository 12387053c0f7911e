"""Shared by the compaction tests: produce in many small objects, read back raw batches."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from broker_service.metadata.sqlite import SqliteMetadataStore
from tests.kafka_wire import WireClient, fetch_request, list_offsets_request
from tests.support.wait import wait_for_value

# Small uploads so a modest load lands in many small objects (what compaction merges).
SMALL_OBJECTS_ENV = {
    "BROKER_UPLOAD_INTERVAL_MS": "10",
    "BROKER_COMPACTION_INTERVAL_MS": "0",  # the tests run compaction themselves
    # no memory caches: every read of committed data goes to the objects (the path that
    # must survive objects being swapped and deleted)
    "BROKER_LOG_CACHE_BYTES": "1",
    "BROKER_BLOCK_CACHE_BYTES": "1",
}


def create_topic(
    bootstrap: str, topic: str, configs: dict[str, str] | None = None, partitions: int = 1
) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    fut = admin.create_topics([NewTopic(topic, partitions, 1, config=configs or {})])[topic]
    fut.result(15)


def committed_ends(data: Path, topic: str) -> dict[int, int]:
    """Per partition, the end offset of what the broker committed to objects (embedded)."""
    metadata = SqliteMetadataStore(data / "metadata.sqlite")
    try:
        rec = metadata.topic(topic)
        assert rec is not None
        ends = {}
        for part in rec.partitions:
            ranges = metadata.stream_ranges(part.stream_id)
            ends[part.partition] = ranges[-1].end_offset if ranges else 0
        return ends
    finally:
        metadata.close()


def wait_committed(data: Path, topic: str, ends: dict[int, int], timeout: float = 30) -> None:
    """Until the broker committed every partition's offsets below ``ends`` to objects."""
    wait_for_value(lambda: committed_ends(data, topic),
                   lambda got: all(got.get(p, 0) >= end for p, end in ends.items()), timeout,
                   f"{topic}: offsets up to {ends} committed to objects")  # fmt: skip


def produce_rounds(
    bootstrap: str,
    topic: str,
    rounds: int,
    per_round: int,
    record: Callable[[int], tuple[bytes | None, bytes | None]] | None = None,
    *,
    data: Path | None = None,
    timestamp_ms: int | None = None,
    pause: float = 0.0,
) -> int:
    """``rounds`` flushes of ``per_round`` records each. With ``data`` (an embedded broker's
    data dir) each round waits until it is committed, so each lands in objects of its own;
    with the object WAL an acknowledged round is already one. ``pause`` only paces a load
    generator. Returns the number acknowledged."""
    acked = 0
    ends: dict[int, int] = {}

    def on_delivery(err: object, msg: Message) -> None:
        nonlocal acked
        assert err is None, err
        acked += 1
        part, offset = msg.partition(), msg.offset()
        assert part is not None and offset is not None
        ends[part] = max(ends.get(part, 0), offset + 1)

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    n = 0
    for _ in range(rounds):
        for _ in range(per_round):
            key, value = record(n) if record else (f"k{n}".encode(), f"value-{n}".encode() * 8)
            p.produce(topic, key=key, value=value, on_delivery=on_delivery,
                      timestamp=timestamp_ms or 0)  # fmt: skip
            n += 1
        assert p.flush(30) == 0
        if data is not None:
            wait_committed(data, topic, ends)
        if pause:
            time.sleep(pause)  # a load generator's pace, not a wait for anything
    return acked


def fetch_error_and_records(port: int, topic: str, offset: int) -> tuple[int, int, bytes]:
    """(error code, high watermark, records bytes) of one Fetch v12 at ``offset``."""
    with WireClient(port) as c:
        resp = c.call(fetch_request(12, topic, 0, offset, max_bytes=4 << 20))
    p = resp.responses[0].partitions[0]
    return int(p.error_code), int(p.high_watermark), bytes(p.records or b"")


def all_batches(port: int, topic: str, start: int = 0) -> list[bytes]:
    """Every stored batch from ``start`` to the high watermark, as the broker serves it."""
    out: list[bytes] = []
    offset = start
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        error, hw, records = fetch_error_and_records(port, topic, offset)
        assert error == 0, f"fetch at {offset}: error {error}"
        if offset >= hw:
            return out
        pos = 0
        while pos + 61 <= len(records):
            base, length = struct.unpack_from(">qi", records, pos)
            if pos + 12 + length > len(records):
                break
            (last_delta,) = struct.unpack_from(">i", records, pos + 23)
            if base + last_delta >= offset:
                out.append(records[pos : pos + 12 + length])
            offset = max(offset, base + last_delta + 1)
            pos += 12 + length
        assert pos > 0, f"fetch at {offset} (hw {hw}) returned no whole batch"
    raise AssertionError("reading the partition took too long")


def list_offset(port: int, topic: str, timestamp: int) -> int:
    """ListOffsets v7 for partition 0: -2 earliest, -1 latest."""
    with WireClient(port) as c:
        resp = c.call(list_offsets_request(7, topic, 0, timestamp))
    p = resp.topics[0].partitions[0]
    assert int(p.error_code) == 0, p
    return int(p.offset)


def object_keys(root_keys: list[str]) -> list[str]:
    return [k for k in root_keys if k.endswith(".sso")]
