"""Transactions tooling (issue 17, item 5): what ``kafka-transactions list / describe /
describe-producers / find-hanging`` ask (ListTransactions, DescribeTransactions,
DescribeProducers), through kafka-python's admin (the same calls as the Java tool) and raw kio
requests; and PRODUCER_FENCED answered as INVALID_PRODUCER_EPOCH to request versions that
predate it, as Kafka does (raw kio per version, and aiokafka, which speaks v0 only). Both
backends."""

from __future__ import annotations

import asyncio
import datetime
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import TopicPartition as KpTopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import TransactionalIdNotFoundError

from tests.integration.surface import Surface, kio, surface_fixture, unique

surface = surface_fixture()
INVALID_PRODUCER_EPOCH, PRODUCER_FENCED = 47, 90


def _topic(surface: Surface, partitions: int = 2) -> str:
    name = unique("txn-admin")
    admin = AdminClient({"bootstrap.servers": surface.bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)
    return name


def _open_transaction(surface: Surface, topic: str) -> tuple[str, Producer]:
    tid = f"tool-{uuid.uuid4().hex[:8]}"
    p = Producer({"bootstrap.servers": surface.bootstrap, "transactional.id": tid})
    p.init_transactions(30)
    p.begin_transaction()
    for partition in (0, 1):
        p.produce(topic, f"open-{partition}".encode(), partition=partition)
    assert p.flush(30) == 0
    return tid, p


def test_list_describe_and_find_hanging_with_kafka_python(surface: Surface) -> None:
    topic = _topic(surface)
    before = int(time.time() * 1000)
    tid, producer = _open_transaction(surface, topic)
    admin = KafkaAdminClient(bootstrap_servers=surface.bootstrap, request_timeout_ms=30000)
    try:
        listed = [t for ts in admin.list_transactions().values() for t in ts]
        mine = [t for t in listed if t.transactional_id == tid]
        assert [(t.state.value,) for t in mine] == [("Ongoing",)]
        pid = mine[0].producer_id
        assert tid in {t.transactional_id
                       for ts in admin.list_transactions(state_filters=["Ongoing"]).values()
                       for t in ts}  # fmt: skip
        assert tid not in {t.transactional_id
                           for ts in admin.list_transactions(state_filters=["Empty"]).values()
                           for t in ts}  # fmt: skip
        assert tid in {t.transactional_id
                       for ts in admin.list_transactions(producer_id_filters=[pid]).values()
                       for t in ts}  # fmt: skip

        d = admin.describe_transactions([tid])[tid]
        assert (d.state.value, d.producer_id) == ("Ongoing", pid)
        assert d.topic_partitions == {KpTopicPartition(topic, 0), KpTopicPartition(topic, 1)}
        assert d.transaction_timeout_ms == 60000  # librdkafka's transaction.timeout.ms
        assert before <= d.transaction_start_time_ms <= int(time.time() * 1000)

        states = admin.describe_producers([KpTopicPartition(topic, 0)])
        (ps,) = states[KpTopicPartition(topic, 0)].active_producers
        assert (ps.producer_id, ps.current_transaction_start_offset) == (pid, 0)
        assert ps.last_sequence == 0 and ps.last_timestamp >= before

        # the tool's threshold is max timeout + 5 min; a negative max makes "now" the limit
        hanging = admin.find_hanging_transactions(max_transaction_timeout_ms=-5 * 60 * 1000)
        assert [h["transactional_id"] for h in hanging if h["transactional_id"] == tid] == [tid]

        producer.commit_transaction(30)
        d = admin.describe_transactions([tid])[tid]
        assert (d.state.value, d.topic_partitions) == ("CompleteCommit", set())
        (ps,) = admin.describe_producers(
            [KpTopicPartition(topic, 0)]
        )[KpTopicPartition(topic, 0)].active_producers
        assert ps.current_transaction_start_offset == -1
        hanging = admin.find_hanging_transactions(max_transaction_timeout_ms=-5 * 60 * 1000)
        assert tid not in {h["transactional_id"] for h in hanging}
        with pytest.raises(TransactionalIdNotFoundError):
            admin.describe_transactions([f"never-{uuid.uuid4().hex[:6]}"])
    finally:
        admin.close()


def test_raw_requests(surface: Surface) -> None:
    topic = _topic(surface)
    tid, producer = _open_transaction(surface, topic)
    try:
        listing = surface.call(kio(66, 1, "ListTransactionsRequest", state_filters=(
            "Ongoing", "Bogus"), producer_id_filters=(), duration_filter=-1))  # fmt: skip
        assert int(listing.error_code) == 0 and list(listing.unknown_state_filters) == ["Bogus"]
        assert tid in {t.transactional_id for t in listing.transaction_states}
        later = surface.call(kio(66, 1, "ListTransactionsRequest", state_filters=(),
                                 producer_id_filters=(), duration_filter=3_600_000))  # fmt: skip
        assert tid not in {t.transactional_id for t in later.transaction_states}

        described = surface.call(kio(65, 0, "DescribeTransactionsRequest",
                                     transactional_ids=(tid,)))  # fmt: skip
        (d,) = described.transaction_states
        assert (int(d.error_code), d.transaction_state) == (0, "Ongoing")
        assert [(t.topic, list(t.partitions)) for t in d.topics] == [(topic, [0, 1])]

        producers = surface.call(kio(61, 0, "DescribeProducersRequest", topics=(
            kio(61, 0, "TopicRequest", name=topic, partition_indexes=(0, 1, 7)),
        )))  # fmt: skip
        parts = {p.partition_index: p for p in producers.topics[0].partitions}
        assert [int(parts[i].error_code) for i in (0, 1, 7)] == [0, 0, 3]
        assert [p.current_txn_start_offset for p in parts[1].active_producers] == [0]
    finally:
        producer.abort_transaction(30)


# -- error codes by request version -----------------------------------------------------------
def _init(surface: Surface, version: int, tid: str, pid: int = -1, epoch: int = -1) -> Any:
    fields: dict[str, Any] = {"transactional_id": tid,
                              "transaction_timeout": datetime.timedelta(seconds=60)}
    if version >= 3:
        fields |= {"producer_id": pid, "producer_epoch": epoch}
    return surface.call(kio(22, version, "InitProducerIdRequest", **fields))


@pytest.mark.parametrize(("version", "want"), [(3, INVALID_PRODUCER_EPOCH), (4, PRODUCER_FENCED)])
def test_init_producer_id_fenced_code_by_version(surface: Surface, version: int, want: int) -> None:
    tid = unique("fence-init")
    first = _init(surface, 4, tid)
    for _ in range(2):
        _init(surface, 4, tid)  # epoch 2 now: epoch 0 is fenced
    got = _init(surface, version, tid, int(first.producer_id), 0)
    assert int(got.error_code) == want


@pytest.mark.parametrize(("version", "want"), [(0, INVALID_PRODUCER_EPOCH),
                                               (1, INVALID_PRODUCER_EPOCH),
                                               (2, PRODUCER_FENCED), (3, PRODUCER_FENCED)])
def test_txn_requests_fenced_code_by_version(surface: Surface, version: int, want: int) -> None:
    topic = _topic(surface, 1)
    tid = unique("fence-txn")
    old = _init(surface, 4, tid)
    _init(surface, 4, tid)  # a new instance: epoch + 1
    pid, stale = int(old.producer_id), int(old.producer_epoch)
    if version <= 3:
        wanted = kio(24, version, "AddPartitionsToTxnTopic", name=topic, partitions=(0,))
        add = surface.call(kio(24, version, "AddPartitionsToTxnRequest",
            v3_and_below_transactional_id=tid, v3_and_below_producer_id=pid,
            v3_and_below_producer_epoch=stale, v3_and_below_topics=(wanted,)))  # fmt: skip
        (r,) = add.results_by_topic_v3_and_below[0].results_by_partition
        assert int(r.partition_error_code) == want
    offsets = surface.call(kio(25, version, "AddOffsetsToTxnRequest", transactional_id=tid,
                               producer_id=pid, producer_epoch=stale, group_id="g"))  # fmt: skip
    assert int(offsets.error_code) == want
    end = surface.call(kio(26, version, "EndTxnRequest", transactional_id=tid, producer_id=pid,
                           producer_epoch=stale, committed=True))  # fmt: skip
    assert int(end.error_code) == want


def test_aiokafka_zombie_is_told_it_is_fenced(surface: Surface) -> None:
    """aiokafka speaks EndTxn v0: it must get INVALID_PRODUCER_EPOCH (ProducerFenced), never
    a code it does not know."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import ProducerFenced

    topic = _topic(surface, 1)
    tid = unique("aio-zombie")

    async def run() -> None:
        old = AIOKafkaProducer(bootstrap_servers=surface.bootstrap, transactional_id=tid)
        await old.start()
        try:
            await old.begin_transaction()
            await (await old.send(topic, b"zombie", partition=0))
            new = AIOKafkaProducer(bootstrap_servers=surface.bootstrap, transactional_id=tid)
            await new.start()  # InitProducerId: the old instance is fenced
            await new.stop()
            with pytest.raises(ProducerFenced):
                await old.commit_transaction()
        finally:
            await old.stop()

    asyncio.run(run())
