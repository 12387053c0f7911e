"""A broker whose metadata store is slow, or loses answers, still serves clients correctly.

- ``BROKER_FAULT_METADATA_LATENCY_MS=50-150`` on every call of every operation (as Tansu's
  harness does): registration, lease renewal, topic creation, object commits, producer
  snapshots, group offsets all wait.
- ``BROKER_FAULT_METADATA_ERROR_P`` on ``commit_object``: half the commits raise after they
  applied (the answer was lost). The object WAL retries the same key (ObjectAlreadyCommitted),
  the file WAL's next upload commits the same offsets again under a new key (the later range
  replaces the first). The broker is then restarted, so the consumer reads everything back
  through the committed ranges, not from the log cache.

A confluent-kafka idempotent producer and a group consumer must still see every record once,
in order per partition. No timing is asserted: only correctness.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from tests.broker_process import BrokerProcess
from tests.support.clients import TIMEOUT, create_topic

PARTITIONS = 3
N = 300


SLOW = {"BROKER_FAULT_METADATA_LATENCY_MS": "50-150", "BROKER_FAULT_METADATA_SEED": "7"}
LOSSY = {
    "BROKER_FAULT_METADATA_ERROR_P": "0.5",
    "BROKER_FAULT_METADATA_OPS": "commit_object",
    "BROKER_FAULT_METADATA_SEED": "11",  # the first commit's answer is lost
    "BROKER_UPLOAD_INTERVAL_MS": "200",  # file WAL: many uploads, so many lost answers
}


@pytest.fixture(params=["file", "object"])
def wal(request: pytest.FixtureRequest) -> str:
    """With the object WAL every acknowledgement waits for a metadata commit."""
    return str(request.param)


def _broker(tmp_path: Path, wal: str, faults: dict[str, str]) -> BrokerProcess:
    return BrokerProcess(tmp_path / "data", BROKER_WAL=wal, **faults).start(timeout=60)


def test_clients_work_against_a_slow_metadata_store(tmp_path: Path, wal: str) -> None:
    broker = _broker(tmp_path, wal, SLOW)
    try:
        _produce_and_consume(broker)
    finally:
        broker.stop()


def test_commits_whose_answer_was_lost_lose_and_duplicate_nothing(tmp_path: Path, wal: str) -> None:
    broker = _broker(tmp_path, wal, LOSSY)
    try:
        objects = tmp_path / "data" / "objects"

        last = [_count_files(objects)]

        def uploaded() -> None:  # wait until the round was committed (and maybe its answer lost)
            deadline = time.monotonic() + TIMEOUT
            while _count_files(objects) == last[0] and time.monotonic() < deadline:
                time.sleep(0.02)
            last[0] = _count_files(objects)

        delivered = _produce(broker, "lossy", rounds=8, after_round=uploaded)
        assert broker.stop() == 0
        lost_answers = broker.log_path.read_text().count("injected fault after commit_object")
        assert lost_answers >= 1, broker.log()
        broker.start(timeout=60)
        _consume(broker, "lossy", delivered)
    finally:
        broker.stop()


def _produce_and_consume(broker: BrokerProcess) -> None:
    _consume(broker, "slow", _produce(broker, "slow", rounds=2))
    assert broker.alive(), broker.log()
    assert "fault injection on the metadata store" in broker.log()


def _count_files(root: Path) -> int:
    return sum(1 for p in root.rglob("*") if p.is_file()) if root.exists() else 0


def _produce(
    broker: BrokerProcess,
    topic: str,
    rounds: int,
    after_round: Callable[[], None] = lambda: None,
) -> dict[int, list[tuple[int, bytes]]]:
    """N records over PARTITIONS partitions in ``rounds`` flushes; what was delivered where."""
    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic, PARTITIONS)

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
        }
    )
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
        if (i + 1) % (N // rounds) == 0:
            producer.flush(TIMEOUT)  # each round lands after the earlier commits
            after_round()
    assert producer.flush(TIMEOUT) == 0, "the producer did not deliver everything"
    assert not errors, errors[:5]
    assert sum(len(v) for v in delivered.values()) == N
    for p, recs in delivered.items():  # offsets 0..n-1 per partition, in send order
        assert [o for o, _ in recs] == list(range(len(recs))), p
    return delivered


def _consume(
    broker: BrokerProcess, topic: str, delivered: dict[int, list[tuple[int, bytes]]]
) -> None:
    bootstrap = broker.bootstrap
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{topic}-group",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
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
