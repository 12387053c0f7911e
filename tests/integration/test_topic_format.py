"""What a topic's message.timestamp.type and compression.type do to what is stored (issue 17
items 3 and 4), seen through three client families on both backends.

- LogAppendTime: the broker's clock is every record's timestamp, typed LOG_APPEND_TIME, and
  the produce response carries it (delivery reports of confluent-kafka, kafka-python and
  aiokafka); retention counts from it, so an old CreateTime does not get fresh data deleted.
- compression.type gzip/snappy/lz4/zstd/uncompressed: whatever the producer sent is stored
  with the topic's codec (raw Fetch shows the batch attributes) and reads back identical in
  confluent-kafka, kafka-python and aiokafka.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition as AioTopicPartition
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KpTopicPartition

from tests.integration.surface import Surface, surface_fixture, unique, wait_for
from tests.support.clients import (
    CODEC_IDS,
    aiokafka_consume,
    aiokafka_produce,
    assert_records,
    confluent_consume,
    confluent_produce,
    kafka_python_consume,
    kafka_python_produce,
    make_records,
    stored_batches,
)

surface = surface_fixture(BROKER_COMPACTION_INTERVAL_MS="1000", BROKER_UPLOAD_INTERVAL_MS="200")
LOG_APPEND_TIME = 1
HOUR_AGO = int(time.time() * 1000) - 3_600_000


def _create(surface: Surface, name: str, config: dict[str, str]) -> None:
    admin = AdminClient({"bootstrap.servers": surface.bootstrap})
    admin.create_topics([NewTopic(name, 1, 1, config=config)])[name].result(30)


def _now() -> int:
    return int(time.time() * 1000)


# -- item 3: LogAppendTime --------------------------------------------------------------------
Stamps = tuple[list[tuple[int, int]], list[tuple[int, int]]]  # (acks, consumed): (type, ts)


def _kind(confluent_type: int) -> int:
    """librdkafka's timestamp types (1 create, 2 log append) -> Kafka's attribute (0, 1)."""
    return LOG_APPEND_TIME if confluent_type == TIMESTAMP_LOG_APPEND_TIME else -1


def _confluent(surface: Surface, topic: str) -> Stamps:
    acks: list[tuple[int, int]] = []
    p = Producer({"bootstrap.servers": surface.bootstrap, "linger.ms": 5})
    for i in range(5):
        p.produce(topic, f"c{i}".encode(), timestamp=HOUR_AGO,
                  on_delivery=lambda err, m: acks.append(m.timestamp()) if err is None else None)
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": surface.bootstrap, "group.id": unique("g")})
    seen: list[tuple[int, int]] = []
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + 30
        while len(seen) < 5 and time.monotonic() < deadline:
            for m in c.consume(10, 0.5):
                assert m.error() is None, m.error()
                seen.append(m.timestamp())
    finally:
        c.close()
    return [(_kind(k), t) for k, t in acks], [(_kind(k), t) for k, t in seen]


def _kafka_python(surface: Surface, topic: str) -> Stamps:
    p = KafkaProducer(bootstrap_servers=surface.bootstrap)
    try:
        futures = [p.send(topic, f"k{i}".encode(), timestamp_ms=HOUR_AGO) for i in range(5)]
        p.flush(30)
        # RecordMetadata.timestamp is the response's log_append_time when it is not -1
        acks = [(LOG_APPEND_TIME, f.get(30).timestamp) for f in futures]
    finally:
        p.close(10)
    c = KafkaConsumer(bootstrap_servers=surface.bootstrap, auto_offset_reset="earliest")
    tp = KpTopicPartition(topic, 0)
    seen: list[tuple[int, int]] = []
    try:
        c.assign([tp])
        deadline = time.monotonic() + 30
        while len(seen) < 5 and time.monotonic() < deadline:
            seen += [(m.timestamp_type, m.timestamp) for m in c.poll(500).get(tp, [])]
    finally:
        c.close()
    return acks, seen


def _aiokafka(surface: Surface, topic: str) -> Stamps:
    async def run() -> Stamps:
        p = AIOKafkaProducer(bootstrap_servers=surface.bootstrap)
        await p.start()
        try:
            futures = [await p.send(topic, f"a{i}".encode(), timestamp_ms=HOUR_AGO)
                       for i in range(5)]  # fmt: skip
            metas = await asyncio.gather(*futures)
        finally:
            await p.stop()
        c = AIOKafkaConsumer(bootstrap_servers=surface.bootstrap, auto_offset_reset="earliest")
        await c.start()
        tp = AioTopicPartition(topic, 0)
        seen: list[tuple[int, int]] = []
        try:
            c.assign([tp])
            deadline = time.monotonic() + 30
            while len(seen) < 5 and time.monotonic() < deadline:
                got = await c.getmany(tp, timeout_ms=500)
                seen += [(m.timestamp_type, m.timestamp) for m in got.get(tp, [])]
        finally:
            await c.stop()
        return [(m.timestamp_type, m.timestamp) for m in metas], seen

    return asyncio.run(run())


@pytest.mark.parametrize("client", ["confluent", "kafka-python", "aiokafka"])
def test_log_append_time_is_the_brokers_clock(surface: Surface, client: str) -> None:
    topic = unique(f"lat-{client}")
    _create(surface, topic, {"message.timestamp.type": "LogAppendTime"})
    before = _now()
    acks, seen = {"confluent": _confluent, "kafka-python": _kafka_python,
                  "aiokafka": _aiokafka}[client](surface, topic)  # fmt: skip
    after = _now()
    assert len(acks) == len(seen) == 5
    for kind, ts in acks + seen:  # never the producer's hour-old CreateTime
        assert kind == LOG_APPEND_TIME and before <= ts <= after, (kind, ts, before, after)


def test_retention_counts_from_log_append_time(surface: Surface) -> None:
    """An hour-old CreateTime in a LogAppendTime topic with 1-minute retention is fresh data.
    A CreateTime topic named to be compacted after it shows that retention ran meanwhile."""
    fresh, control = unique("a-lat-retention"), unique("b-ct-retention")
    for name, ts_type in ((fresh, "LogAppendTime"), (control, "CreateTime")):
        _create(surface, name, {"message.timestamp.type": ts_type, "retention.ms": "60000"})
        p = Producer({"bootstrap.servers": surface.bootstrap})
        for i in range(3):
            p.produce(name, f"v{i}".encode(), timestamp=HOUR_AGO)
        assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": surface.bootstrap, "group.id": unique("g")})
    try:
        wait_for("retention of the CreateTime topic",
                 lambda: c.get_watermark_offsets(TopicPartition(control, 0), 10)[0] == 3)
        wait_for("one more compaction run",  # the runs go by topic name: fresh's came first
                 lambda: c.get_watermark_offsets(TopicPartition(control, 0), 10)[0] == 3)
        assert c.get_watermark_offsets(TopicPartition(fresh, 0), 10) == (0, 3)
    finally:
        c.close()


# -- item 4: compression.type ----------------------------------------------------------------------
PRODUCERS: dict[str, tuple[Any, str]] = {  # client -> (produce function, codec it sends)
    "confluent": (confluent_produce, "none"),
    "kafka-python": (kafka_python_produce, "lz4"),
    "aiokafka": (aiokafka_produce, "gzip"),
}
CONSUMERS = (confluent_consume, kafka_python_consume, aiokafka_consume)


@pytest.mark.parametrize("topic_codec", ["gzip", "snappy", "lz4", "zstd", "uncompressed"])
@pytest.mark.parametrize("client", sorted(PRODUCERS))
def test_topic_compression_type_recompresses(
    surface: Surface, client: str, topic_codec: str
) -> None:
    produce, sent_codec = PRODUCERS[client]
    topic = unique(f"codec-{topic_codec}-{client}")
    # the records carry 2023 timestamps: keep them from this module's frequent retention runs
    _create(surface, topic, {"compression.type": topic_codec, "retention.ms": "-1"})
    records = make_records(client, sent_codec, 300)
    produce(surface.bootstrap, topic, records, sent_codec)
    want = CODEC_IDS["none" if topic_codec == "uncompressed" else topic_codec]
    batches = stored_batches(surface.bootstrap, topic)
    assert {b.codec for b in batches} == {want}, (topic_codec, batches[:3])
    assert sum(b.count for b in batches) == len(records)
    for consume in CONSUMERS:
        assert_records(consume(surface.bootstrap, topic, len(records)), records)


def test_a_batch_too_large_once_decompressed_is_refused(surface: Surface) -> None:
    """Stored uncompressed, a small zstd batch of 5 MB of zeros exceeds max.message.bytes:
    MESSAGE_TOO_LARGE, as Kafka answers a re-compressed batch over the limit."""
    from confluent_kafka import KafkaError

    topic = unique("codec-too-large")
    _create(surface, topic, {"compression.type": "uncompressed"})
    errors: list[Any] = []
    p = Producer({"bootstrap.servers": surface.bootstrap, "compression.type": "zstd",
                  "message.max.bytes": 10_000_000, "retries": 0})  # fmt: skip
    p.produce(topic, bytes(5_000_000), on_delivery=lambda err, _m: errors.append(err))
    assert p.flush(30) == 0
    assert [e.code() for e in errors] == [KafkaError.MSG_SIZE_TOO_LARGE]
    assert stored_batches(surface.bootstrap, topic) == []
