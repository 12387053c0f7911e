"""A new topic is placed when it is created, as Apache Kafka's controller places it: every
partition has its final leader, spread round-robin over the live brokers, and leader epoch 0
from the first moment; so do partitions added by CreatePartitions, and ``__consumer_offsets``
created on first use by a consumer group.

A broker that created every partition led by itself and then handed them round-robin to the
others one compare-and-set at a time (leader epoch 0 -> 1) let every other broker see it
lead the whole topic meanwhile: a group coordinated on one of its ``__consumer_offsets``
partitions was unloaded when that partition moved, and its consumer rejoined elsewhere and
re-read from the start what it had not committed yet. Records produced the moment the topic
exists all stay: a leader placed at creation loads the topic on its next metadata sync and
takes no produce before that load is done. Three real brokers, both backends."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

from tests import kafka_wire as w
from tests.integration.surface import unique
from tests.integration.test_cluster import _cloud_env, _cluster
from tests.support.broker import BrokerProcess
from tests.support.wait import wait_for_value, wait_until

pytestmark = pytest.mark.timeout(240)

OFFSETS = "__consumer_offsets"


@pytest.fixture(params=["embedded", "s3-dynamodb"])
def trio(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[BrokerProcess]]:
    env = {"BROKER_OFFSETS_TOPIC_PARTITIONS": "6"}
    if request.param == "embedded":
        brokers = _cluster(tmp_path / "shared", 3, "file", **env)
    else:
        env |= _cloud_env(request.getfixturevalue("moto_endpoint"))
        brokers = _cluster(tmp_path / "shared", 3, "object", **env)
    try:
        yield brokers
    finally:
        for b in brokers:
            b.stop()


def _placement(b: BrokerProcess, topic: str) -> dict[int, tuple[int, int]]:
    """partition -> (leader, leader epoch), as broker ``b`` answers Metadata v12."""
    with w.WireClient(b.port) as c:
        md = c.call(w.metadata_request(12, [topic]))
    return {
        int(p.partition_index): (int(p.leader_id), int(p.leader_epoch))
        for t in md.topics
        if int(t.error_code) == 0
        for p in t.partitions
    }


def _assert_placed(brokers: list[BrokerProcess], topic: str, partitions: range) -> None:
    """Every broker sees ``partitions`` led at epoch 0, spread evenly over the three."""
    for b in brokers:
        seen = wait_for_value(lambda b=b: _placement(b, topic),
                              lambda s: set(partitions) <= set(s), 30,
                              f"broker {b.node_id} sees {topic} {partitions}", 0.2)  # fmt: skip
        placed = {p: seen[p] for p in partitions}
        assert {e for _, e in placed.values()} == {0}, (
            f"broker {b.node_id}: new partitions of {topic} not at leader epoch 0: {placed}"
        )
        per_broker = Counter(leader for leader, _ in placed.values())
        assert per_broker == dict.fromkeys((1, 2, 3), len(partitions) // 3), (
            f"broker {b.node_id}: {topic} {partitions} not spread over the brokers: {placed}"
        )


def _produce(bootstrap: str, topic: str, keys: range, partitions: int) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "log_level": 2})  # fmt: skip
    for i in keys:
        p.produce(topic, key=str(i).encode(), value=b"v", partition=i % partitions)
    assert p.flush(30) == 0


def _read_keys(bootstrap: str, topic: str, partitions: int, n: int) -> list[int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("r"),
                  "enable.auto.commit": False, "auto.offset.reset": "error"})  # fmt: skip
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        keys: list[int] = []

        def read() -> bool:
            for m in c.consume(500, 0.2):
                assert m.error() is None, m.error()
                keys.append(int(m.key()))
            return len(keys) >= n

        wait_until(read, 30, lambda: f"{n} records read back, not {len(keys)}")
        return keys
    finally:
        c.close()


def test_new_partitions_are_placed_at_creation(trio: list[BrokerProcess]) -> None:
    topic = unique("placed")
    bootstrap = ",".join(b.bootstrap for b in trio)
    admin = AdminClient({"bootstrap.servers": trio[0].bootstrap})
    admin.create_topics([NewTopic(topic, 6, 1)])[topic].result(30)
    # produced at once, to leaders that may still be loading the topic: nothing is lost
    _produce(bootstrap, topic, range(0, 120), 6)
    _produce(bootstrap, topic, range(120, 240), 6)
    assert sorted(_read_keys(bootstrap, topic, 6, 240)) == list(range(240))
    _assert_placed(trio, topic, range(6))

    admin = AdminClient({"bootstrap.servers": trio[1].bootstrap})
    admin.create_partitions([NewPartitions(topic, 9)])[topic].result(30)
    _assert_placed(trio, topic, range(6, 9))

    # the first group creates __consumer_offsets (on FindCoordinator)
    c = Consumer({"bootstrap.servers": trio[2].bootstrap, "group.id": unique("g"),
                  "enable.auto.commit": False, "session.timeout.ms": 6000})  # fmt: skip
    try:
        assigned: list[TopicPartition] = []
        c.subscribe([topic], on_assign=lambda _c, parts: assigned.extend(parts))
        wait_until(lambda: (c.poll(0.2), assigned)[1], 60, "the consumer is assigned")
    finally:
        c.close()
    _assert_placed(trio, OFFSETS, range(6))
