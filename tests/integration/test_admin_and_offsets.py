"""Topic admin, ListOffsets (by timestamp too), DescribeConfigs/Cluster, mid-batch fetch."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

from tests import kafka_wire as w
from tests.support.broker import BrokerProcess


def _topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _admin(broker: BrokerProcess) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def _filled(broker: BrokerProcess, prefix: str, n: int) -> str:
    """A new one-partition topic holding ``n`` records; its name."""
    name = _topic(prefix)
    admin = _admin(broker)  # kept alive until its futures resolve
    _wait(admin.create_topics([NewTopic(name, 1, 1)]))
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(n):
        p.produce(name, value=f"v{i}".encode(), partition=0)
    assert p.flush(10) == 0
    return name


def _wait(futures: dict) -> None:  # type: ignore[type-arg]
    for f in futures.values():
        f.result(15)


def test_create_describe_add_partitions_delete(broker: BrokerProcess) -> None:
    admin = _admin(broker)
    name = _topic("admin")
    _wait(admin.create_topics([NewTopic(name, 3, 1, config={"retention.ms": "3600000"})]))
    md = admin.list_topics(name, timeout=10)
    assert sorted(md.topics[name].partitions) == [0, 1, 2]
    assert md.topics[name].error is None

    with pytest.raises(KafkaException) as exc:
        _wait(admin.create_topics([NewTopic(name, 1, 1)]))
    assert exc.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS

    res = ConfigResource(ConfigResource.Type.TOPIC, name)
    configs = admin.describe_configs([res])[res].result(15)
    assert configs["retention.ms"].value == "3600000"
    assert not configs["retention.ms"].is_default
    assert configs["cleanup.policy"].value == "delete"
    assert configs["cleanup.policy"].is_default

    _wait(admin.create_partitions([NewPartitions(name, 5)]))
    assert sorted(admin.list_topics(name, timeout=10).topics[name].partitions) == [0, 1, 2, 3, 4]
    with pytest.raises(KafkaException) as exc:
        _wait(admin.create_partitions([NewPartitions(name, 2)]))
    assert exc.value.args[0].code() == KafkaError.INVALID_PARTITIONS

    # a record in the new partition 4 is served
    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce(name, value=b"in-4", partition=4)
    assert p.flush(10) == 0

    _wait(admin.delete_topics([name]))
    assert name not in admin.list_topics(timeout=10).topics
    with pytest.raises(KafkaException) as exc:
        _wait(admin.delete_topics([name]))
    assert exc.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_bad_create_requests(broker: BrokerProcess) -> None:
    admin = _admin(broker)
    for bad in ["bad/name", "..", "x" * 250, "spaces are bad"]:
        with pytest.raises(KafkaException) as exc:
            _wait(admin.create_topics([NewTopic(bad, 1, 1)]))
        assert exc.value.args[0].code() == KafkaError.TOPIC_EXCEPTION, bad
    with pytest.raises(KafkaException) as exc:
        _wait(admin.create_topics([NewTopic(_topic("cfg"), 1, 1, config={"no.such": "1"})]))
    assert exc.value.args[0].code() == KafkaError.INVALID_CONFIG


def test_describe_cluster(broker: BrokerProcess) -> None:
    admin = _admin(broker)  # keep the handle alive until the future resolves
    desc = admin.describe_cluster().result(10)
    assert desc.cluster_id
    assert [n.port for n in desc.nodes] == [broker.port]
    assert desc.controller.id == desc.nodes[0].id


def _produce_timestamped(bootstrap: str, name: str) -> int:
    """Five lz4 batches of 10 records; record i has timestamp base + 100*i. Returns base."""
    base = int(time.time() * 1000) - 100_000
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "compression.type": "lz4"})
    for batch in range(5):
        for j in range(10):
            i = batch * 10 + j
            p.produce(name, value=f"v{i}".encode(), timestamp=base + 100 * i)
        assert p.flush(10) == 0
    return base


def _check_timestamps_and_mid_batch(bootstrap: str, name: str, base: int) -> None:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "ts", "enable.auto.commit": False})
    low, high = c.get_watermark_offsets(TopicPartition(name, 0), timeout=10)
    assert (low, high) == (0, 50)
    for target, expected in [
        (base, 0),
        (base + 1, 1),
        (base + 100 * 37, 37),
        (base + 100 * 37 - 50, 37),
        (base + 100 * 49, 49),
        (base + 100 * 50, -1),
    ]:
        got = c.offsets_for_times([TopicPartition(name, 0, target)], timeout=10)[0]
        assert got.offset == expected, (target - base, got.offset)

    # Fetching from the middle of a batch returns that batch; the client skips to offset 23.
    c.assign([TopicPartition(name, 0, 23)])
    values = []
    deadline = time.monotonic() + 15
    while len(values) < 27 and time.monotonic() < deadline:
        for m in c.consume(100, 0.5):
            assert m.error() is None
            values.append((m.offset(), m.value()))
    c.close()
    assert values == [(i, f"v{i}".encode()) for i in range(23, 50)]


def test_list_offsets_by_timestamp_and_mid_batch_fetch_from_log_cache(
    broker: BrokerProcess,
) -> None:
    name = _topic("ts")
    admin = _admin(broker)
    _wait(admin.create_topics([NewTopic(name, 1, 1)]))
    _check_timestamps_and_mid_batch(
        broker.bootstrap, name, _produce_timestamped(broker.bootstrap, name)
    )


def test_list_offsets_by_timestamp_and_mid_batch_fetch_from_objects(tmp_path) -> None:  # type: ignore[no-untyped-def]
    b = BrokerProcess(tmp_path / "data").start()
    try:
        base = _produce_timestamped(b.bootstrap, "ts-objects")
        assert b.stop() == 0  # uploads everything; the restarted broker's cache is empty
        b.start()
        _check_timestamps_and_mid_batch(b.bootstrap, "ts-objects", base)
    finally:
        b.stop()


def test_auto_create_can_be_turned_off(tmp_path) -> None:  # type: ignore[no-untyped-def]
    b = BrokerProcess(tmp_path / "data", BROKER_AUTO_CREATE_TOPICS="false").start()
    try:
        md = _admin(b).list_topics("not-there", timeout=10)
        assert md.topics["not-there"].error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    finally:
        b.stop()


def test_auto_create_uses_default_partitions(tmp_path) -> None:  # type: ignore[no-untyped-def]
    b = BrokerProcess(tmp_path / "data", BROKER_DEFAULT_PARTITIONS="3").start()
    try:
        md = _admin(b).list_topics("auto-three", timeout=10)
        assert sorted(md.topics["auto-three"].partitions) == [0, 1, 2]
    finally:
        b.stop()


def test_list_offsets_earliest_local_and_latest_tiered(broker: BrokerProcess) -> None:
    """ListOffsets v8 (KIP-405: earliest-local, -4) and v9 (KIP-1005: latest-tiered, -5), as
    Kafka 3.9 answers them for a log without tiered storage (the tools' `--time
    earliest-local` / `latest-tiered`, the AdminClient's OffsetSpec.earliestLocal() /
    latestTiered()): the log start offset, and offset -1 with leader epoch -1. We advertised
    ListOffsets up to v7: those calls failed with UnsupportedVersionException."""
    name = _filled(broker, "tiers", 10)
    admin = _admin(broker)
    _wait(admin.delete_records([TopicPartition(name, 0, 4)]))

    def ask(version: int, timestamp: int) -> tuple[int, int, int]:
        with w.WireClient(broker.port) as c:
            resp = c.call(w.list_offsets_request(version, name, 0, timestamp))
        part = resp.topics[0].partitions[0]
        return int(part.error_code), int(part.offset), int(part.leader_epoch)

    assert ask(8, -4)[:2] == (0, 4)  # earliest-local: the log start offset (records 0-3 deleted)
    assert ask(9, -4)[:2] == (0, 4)
    assert ask(9, -5) == (0, -1, -1)  # latest-tiered: nothing tiered
    assert ask(9, -2)[:2] == (0, 4) and ask(9, -1)[:2] == (0, 10)


def test_fetch_v17_reads_by_topic_id(broker: BrokerProcess) -> None:
    """Fetch v17 (Kafka 3.9; KIP-853 adds a replica directory id, nothing a consumer sends):
    a 3.9 Java consumer's highest Fetch. We advertised up to v16."""
    name = _filled(broker, "f17", 3)
    with w.WireClient(broker.port) as c:
        topic_id = c.call(w.metadata_request(12, [name])).topics[0].topic_id
        resp = c.call(w.fetch_request(17, topic_id, 0, 0))
    part = resp.responses[0].partitions[0]
    assert int(resp.error_code) == 0 and int(part.error_code) == 0
    assert int(part.high_watermark) == 3 and part.records


def _offset_delete(broker: BrokerProcess, group: str, topics: list[str]) -> object:
    m = w.schema_module(47, 0)
    req = m.OffsetDeleteRequest(group_id=group, topics=tuple(
        m.OffsetDeleteRequestTopic(name=t, partitions=(m.OffsetDeleteRequestPartition(
            partition_index=0),)) for t in topics))  # fmt: skip
    with w.WireClient(broker.port) as c:
        return c.call(req)


def test_offset_delete_of_subscribed_topics_only_answers_group_subscribed_to_topic(
    broker: BrokerProcess,
) -> None:
    """OffsetDelete (librdkafka's DeleteConsumerGroupOffsets) for topics the group's live
    member subscribes to deletes nothing and answers GROUP_SUBSCRIBED_TO_TOPIC per partition
    (Kafka's GroupCoordinator); the broker closed the connection instead (an empty batch of
    tombstones for __consumer_offsets failed its own validation; librdkafka's 0081-admin). A
    topic the group does not subscribe to has its offset deleted."""
    subscribed, other = _filled(broker, "sub", 3), _filled(broker, "other", 3)
    group = _topic("g")
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})  # fmt: skip
    try:
        c.subscribe([subscribed])
        deadline = time.monotonic() + 30
        while not c.assignment() and time.monotonic() < deadline:
            c.poll(0.2)
        assert c.assignment(), "the consumer never got its partition"
        c.commit(offsets=[TopicPartition(subscribed, 0, 2), TopicPartition(other, 0, 1)],
                 asynchronous=False)  # fmt: skip
        got = _offset_delete(broker, group, [subscribed])
        assert got.error_code == 0  # type: ignore[attr-defined]
        assert [(t.name, [p.error_code for p in t.partitions])
                for t in got.topics] == [(subscribed, [86])]  # type: ignore[attr-defined]
        got = _offset_delete(broker, group, [other, subscribed])
        assert [(t.name, [p.error_code for p in t.partitions])
                for t in got.topics] == [(other, [0]), (subscribed, [86])]  # type: ignore[attr-defined]
        left = c.committed([TopicPartition(subscribed, 0), TopicPartition(other, 0)], timeout=15)
        assert [tp.offset for tp in left] == [2, -1001]  # other's offset is gone
    finally:
        c.close()
