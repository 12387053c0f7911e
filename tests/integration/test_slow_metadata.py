"""A broker whose metadata store answers every call 50-150 ms late still serves clients.

The broker process runs with ``BROKER_FAULT_METADATA_LATENCY_MS=50-150`` (every call of every
operation, as Tansu's harness does): registration, lease renewal, topic creation, object
commits, producer snapshots, group offsets all wait. A confluent-kafka idempotent producer
and a group consumer must still see every record once, in order per partition. No timing
is asserted: only correctness under a slow store.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from tests.broker_process import BrokerProcess
from tests.integration.clients import TIMEOUT, create_topic

PARTITIONS = 3
N = 300


@pytest.fixture(params=["file", "object"])
def slow_metadata_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BrokerProcess]:
    """With the object WAL every acknowledgement waits for a (slow) metadata commit."""
    b = BrokerProcess(
        tmp_path / "data",
        BROKER_WAL=request.param,
        BROKER_FAULT_METADATA_LATENCY_MS="50-150",
        BROKER_FAULT_METADATA_SEED="7",
        # leases renewed through the slow store must still hold (renewal is every lease/3)
        BROKER_LEASE_MS="6000",
    ).start(timeout=60)
    yield b
    b.stop()


def test_clients_work_against_a_slow_metadata_store(slow_metadata_broker: BrokerProcess) -> None:
    bootstrap = slow_metadata_broker.bootstrap
    topic = "slow-metadata"
    create_topic(bootstrap, topic, PARTITIONS)

    producer = Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
    })
    delivered: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(PARTITIONS)}
    errors: list[str] = []

    def on_delivery(err: object, msg: Message) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            delivered[msg.partition() or 0].append((msg.offset() or 0, msg.value() or b""))

    for i in range(N):
        producer.produce(topic, key=f"k{i % 17}".encode(), value=f"v{i:05d}".encode(),
                         on_delivery=on_delivery)  # fmt: skip
        producer.poll(0)
        if i == N // 2:
            producer.flush(TIMEOUT)  # two rounds: the second lands after commits were slow
    assert producer.flush(TIMEOUT) == 0, "the producer did not deliver everything"
    assert not errors, errors[:5]
    assert sum(len(v) for v in delivered.values()) == N
    for p, recs in delivered.items():  # offsets 0..n-1 per partition, in send order
        assert [o for o, _ in recs] == list(range(len(recs))), p

    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "slow-metadata-group",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    seen: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(PARTITIONS)}
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + TIMEOUT
        while sum(len(v) for v in seen.values()) < N and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=1000, timeout=0.5):
                if m.error() is not None:
                    raise KafkaException(m.error())
                seen[m.partition() or 0].append((m.offset() or 0, m.value() or b""))
        assert seen == delivered  # every record once, in order, with its value
        consumer.commit(asynchronous=False)  # group offsets go through the slow store too
        committed = consumer.committed(
            [TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=TIMEOUT
        )
        assert {tp.partition: tp.offset for tp in committed} == {
            p: len(recs) for p, recs in delivered.items()
        }
    finally:
        consumer.close()
    assert slow_metadata_broker.alive(), slow_metadata_broker.log()
    assert "fault injection on the metadata store" in slow_metadata_broker.log()
