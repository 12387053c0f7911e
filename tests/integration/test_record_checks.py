"""Record-level checks of produced batches, as Kafka's LogValidator makes them (KIP-467),
through a real broker on both backends: a compacted topic refuses records without a key, a
topic's timestamp window (message.timestamp.before.max.ms / after.max.ms, and the deprecated
difference.max.ms they fall back to) refuses records outside it. A refused record fails its
whole batch, nothing of it is stored, and the answer names each refused record by its index
(Produce v8+ record_errors), which librdkafka turns into INVALID_RECORD for those records and
_INVALID_DIFFERENT_RECORD for the rest of the batch. Found by librdkafka's own test suite
(0011-produce_batch, test_message_single_partition_record_fail): the broker stored them.
"""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from tests import kafka_wire as w
from tests.integration.surface import Surface, surface_fixture, unique

surface = surface_fixture()
HOUR_MS = 3_600_000


def _topic(surface: Surface, config: dict[str, str]) -> str:
    name = unique("checks")
    admin = AdminClient({"bootstrap.servers": surface.bootstrap})
    admin.create_topics([NewTopic(name, 1, 1, config=config)])[name].result(30)
    return name


def _produce(surface: Surface, topic: str, records: list[tuple[bytes | None, int | None]]
             ) -> list[str]:  # fmt: skip
    """Send ``records`` (key, timestamp) in one batch; each one's outcome, in order."""
    outcomes: dict[int, str] = {}
    p = Producer({"bootstrap.servers": surface.bootstrap, "linger.ms": 200,
                  "enable.idempotence": False, "retries": 0})  # fmt: skip
    for i, (key, ts) in enumerate(records):
        def report(err: KafkaError | None, _msg: object, i: int = i) -> None:
            outcomes[i] = "ok" if err is None else err.name()

        p.produce(topic, value=b"v%d" % i, key=key, partition=0, on_delivery=report,
                  **({"timestamp": ts} if ts is not None else {}))  # fmt: skip
    assert p.flush(30) == 0
    return [outcomes[i] for i in range(len(records))]


def _stored(surface: Surface, topic: str) -> int:
    c = Consumer({"bootstrap.servers": surface.bootstrap, "group.id": unique("g")})
    try:
        return int(c.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)[1])
    finally:
        c.close()


def test_a_compacted_topic_refuses_a_batch_with_records_without_a_key(surface: Surface) -> None:
    topic = _topic(surface, {"cleanup.policy": "delete,compact"})
    got = _produce(surface, topic, [(b"k0", None), (None, None), (b"k2", None), (None, None)])
    assert got == ["_INVALID_DIFFERENT_RECORD", "INVALID_RECORD",
                   "_INVALID_DIFFERENT_RECORD", "INVALID_RECORD"]  # fmt: skip
    assert _stored(surface, topic) == 0
    assert _produce(surface, topic, [(b"k0", None), (b"k1", None)]) == ["ok", "ok"]
    assert _stored(surface, topic) == 2
    # a topic that does not compact takes records without a key, until it compacts (an
    # incremental APPEND to its cleanup.policy, as librdkafka's test does)
    plain = _topic(surface, {})
    assert _produce(surface, plain, [(None, None), (b"k", None)]) == ["ok", "ok"]
    admin = AdminClient({"bootstrap.servers": surface.bootstrap})
    resource = ConfigResource(ResourceType.TOPIC, plain, incremental_configs=[
        ConfigEntry("cleanup.policy", "compact",
                    incremental_operation=AlterConfigOpType.APPEND)])  # fmt: skip
    admin.incremental_alter_configs([resource])[resource].result(30)
    assert _produce(surface, plain, [(None, None)]) == ["INVALID_RECORD"]
    assert _stored(surface, plain) == 2


def test_the_answer_names_each_refused_record(surface: Surface) -> None:
    """Raw Produce v9 and v3: v8+ carries record_errors and Kafka's message; before v8 the
    partition error alone."""
    topic = _topic(surface, {"cleanup.policy": "compact"})
    batch = w.build_batch([b"a", b"b", b"c"], keys=[b"x", None, None])
    with surface.wire() as c:
        [t] = c.call(w.produce_request(9, {topic: {0: batch}})).responses
        [p] = t.partition_responses
        assert p.error_code == 87  # INVALID_RECORD
        assert p.base_offset == -1
        tp = f"{topic}-0"
        why = f"Compacted topic cannot accept message without key in topic partition {tp}."
        assert [(e.batch_index, e.batch_index_error_message) for e in p.record_errors] == [
            (1, why), (2, why)]  # fmt: skip
        assert p.error_message == (
            "One or more records have been rejected due to 2 record errors in total, and only "
            f"showing the first three errors at most: [RecordError(batchIndex=1, message='{why}'"
            f"), RecordError(batchIndex=2, message='{why}')]"
        )
        [t] = c.call(w.produce_request(3, {topic: {0: batch}})).responses
        assert [p.error_code for p in t.partition_responses] == [87]
    assert _stored(surface, topic) == 0


def test_a_timestamp_window_refuses_records_outside_it(surface: Surface) -> None:
    now = int(time.time() * 1000)
    topic = _topic(surface, {"message.timestamp.before.max.ms": str(HOUR_MS),
                             "message.timestamp.after.max.ms": str(HOUR_MS)})  # fmt: skip
    assert _produce(surface, topic, [(b"a", now - 2 * HOUR_MS)]) == ["INVALID_TIMESTAMP"]
    assert _produce(surface, topic, [(b"a", now + 2 * HOUR_MS)]) == ["INVALID_TIMESTAMP"]
    assert _produce(surface, topic, [(b"a", now - HOUR_MS // 2), (b"b", None)]) == ["ok", "ok"]
    assert _stored(surface, topic) == 2
    # the deprecated difference.max.ms still bounds both sides when they are left unset
    old = _topic(surface, {"message.timestamp.difference.max.ms": str(HOUR_MS)})
    assert _produce(surface, old, [(b"a", now - 2 * HOUR_MS)]) == ["INVALID_TIMESTAMP"]
    # a LogAppendTime topic takes any producer timestamp (the broker's clock replaces it)
    stamped = _topic(surface, {"message.timestamp.type": "LogAppendTime",
                               "message.timestamp.before.max.ms": str(HOUR_MS)})  # fmt: skip
    assert _produce(surface, stamped, [(b"a", now - 2 * HOUR_MS)]) == ["ok"]


def test_two_batches_for_one_partition_are_refused(surface: Surface) -> None:
    """Kafka takes one v2 batch per partition of a Produce request (LogValidator:
    "Compressed outer record has more than one batch", INVALID_RECORD, no message); clients
    never send two, a hand-made request is refused whole."""
    topic = _topic(surface, {})
    two = w.build_batch([b"a"]) + w.build_batch([b"b", b"c"])
    with surface.wire() as c:
        for version in (3, 9):
            [t] = c.call(w.produce_request(version, {topic: {0: two}})).responses
            [p] = t.partition_responses
            assert (p.error_code, p.base_offset) == (87, -1)
        [t] = c.call(w.produce_request(9, {topic: {0: w.build_batch([b"a"])}})).responses
        assert [p.error_code for p in t.partition_responses] == [0]
    assert _stored(surface, topic) == 1
