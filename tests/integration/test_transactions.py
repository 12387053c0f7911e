"""Idempotent producers and transactions through real clients and the raw wire, against a
real broker process (issue 6)."""

from __future__ import annotations

import asyncio
import datetime
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from kio.index import load_request_schema

from broker_service.protocol.codec import shape
from tests import kafka_wire as w
from tests.support import eos_processor
from tests.support.broker import BrokerProcess, cluster, start_all
from tests.support.clients import create_topic
from tests.support.wait import wait_for_value, wait_until

pytestmark = pytest.mark.timeout(120)

OUT_OF_ORDER_SEQUENCE_NUMBER = 45
INVALID_PRODUCER_EPOCH = 47


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    b = BrokerProcess(tmp_path_factory.mktemp("txn") / "data").start()
    yield b
    b.stop()


def new_topic(bootstrap: str, partitions: int = 1) -> str:
    name = f"txn-{uuid.uuid4().hex[:10]}"
    create_topic(bootstrap, name, partitions)
    return name


# -- raw wire: the broker's idempotence rules ------------------------------------------------
def init_producer_id(c: w.WireClient, pid: int = -1, epoch: int = -1) -> tuple[int, int]:
    req = shape(
        load_request_schema(22, 4),
        {
            "transactional_id": None,
            "transaction_timeout": datetime.timedelta(seconds=60),
            "producer_id": pid,
            "producer_epoch": epoch,
        },
    )
    resp = c.call(req)
    assert int(resp.error_code) == 0, resp
    return int(resp.producer_id), int(resp.producer_epoch)


def produce(c: w.WireClient, topic: str, batch: bytes) -> tuple[int, int]:
    resp = c.call(w.produce_request(9, {topic: {0: batch}}))
    (p,) = resp.responses[0].partition_responses
    return int(p.error_code), int(p.base_offset)


def idem_batch(pid: int, epoch: int, seq: int, n: int, tag: str) -> bytes:
    values = [f"{tag}-{seq + i}".encode() for i in range(n)]
    return w.build_batch(values, producer_id=pid, producer_epoch=epoch, base_sequence=seq)


def latest(c: w.WireClient, topic: str) -> int:
    resp = c.call(w.list_offsets_request(7, topic, 0, -1))
    return int(resp.topics[0].partitions[0].offset)


def test_a_retried_batch_is_answered_with_its_original_offsets_and_written_once(
    srv: BrokerProcess,
) -> None:
    topic = new_topic(srv.bootstrap)
    with w.WireClient(srv.port) as c:
        pid, epoch = init_producer_id(c)
        first = idem_batch(pid, epoch, 0, 3, "a")
        assert produce(c, topic, first) == (0, 0)
        assert produce(c, topic, idem_batch(pid, epoch, 3, 2, "a")) == (0, 3)
        # the client lost the answer to the first request and sends it again
        assert produce(c, topic, first) == (0, 0)
        assert produce(c, topic, idem_batch(pid, epoch, 3, 2, "a")) == (0, 3)
        assert latest(c, topic) == 5  # nothing written twice
        code, _ = produce(c, topic, idem_batch(pid, epoch, 9, 1, "a"))
        assert code == OUT_OF_ORDER_SEQUENCE_NUMBER
        bumped = init_producer_id(c, pid, epoch)  # KIP-360: same id, next epoch
        assert bumped == (pid, epoch + 1)
        assert produce(c, topic, idem_batch(pid, epoch + 1, 0, 1, "b")) == (0, 5)
        code, _ = produce(c, topic, idem_batch(pid, epoch, 5, 1, "a"))
        assert code == INVALID_PRODUCER_EPOCH
        assert latest(c, topic) == 6


def test_producer_state_survives_a_restart(tmp_path: Path) -> None:
    b = BrokerProcess(tmp_path / "data").start()
    try:
        topic = new_topic(b.bootstrap)
        with w.WireClient(b.port) as c:
            pid, epoch = init_producer_id(c)
            for seq in range(0, 9, 3):
                produce(c, topic, idem_batch(pid, epoch, seq, 3, "r"))
        b.stop()
        b.start()
        with w.WireClient(b.port) as c:
            # the last batch again (its answer was lost in the restart): the original offset
            assert produce(c, topic, idem_batch(pid, epoch, 6, 3, "r")) == (0, 6)
            code, _ = produce(c, topic, idem_batch(pid, epoch, 12, 1, "r"))
            assert code == OUT_OF_ORDER_SEQUENCE_NUMBER
            assert produce(c, topic, idem_batch(pid, epoch, 9, 1, "r")) == (0, 9)
            assert latest(c, topic) == 10
    finally:
        b.stop()


# -- confluent-kafka (librdkafka) transactions ---------------------------------------------
def consume_all(bootstrap: str, topic: str, isolation: str, partition: int = 0,
                **extra: Any) -> list[str]:  # fmt: skip
    """Every record of one partition up to its end: the last stable offset under
    read_committed, the high watermark otherwise (where librdkafka reports PARTITION_EOF)."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:6]}",
            "isolation.level": isolation,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            **extra,
        }
    )
    c.assign([TopicPartition(topic, partition, 0)])
    got: list[str] = []

    def at_end() -> bool:
        m = c.poll(0.2)
        if m is None:
            return False
        if m.error():
            return bool(m.error().code() == KafkaError._PARTITION_EOF)
        got.append(m.value().decode())
        return False

    try:
        wait_until(at_end, 30, lambda: f"{topic}[{partition}]: the end, after {len(got)}",
                   interval=0)  # fmt: skip
    finally:
        c.close()
    return got


def test_read_committed_sees_exactly_the_committed_records(srv: BrokerProcess) -> None:
    topic = new_topic(srv.bootstrap)
    p = Producer(
        {
            "bootstrap.servers": srv.bootstrap,
            "transactional.id": f"tx-{uuid.uuid4().hex[:6]}",
            "batch.num.messages": 3,  # transactions span several batches
            "linger.ms": 0,
        }
    )
    p.init_transactions(15)
    expected: list[str] = []
    everything: list[str] = []
    for tag, n, commit in (("a", 10, True), ("b", 10, False), ("c", 5, True)):
        p.begin_transaction()
        for i in range(n):
            p.produce(topic, value=f"{tag}-{i}".encode(), partition=0)
            if i % 3 == 2:
                p.flush(10)  # the aborted records really reach the log, in several batches
        p.flush(10)
        values = [f"{tag}-{i}" for i in range(n)]
        everything += values
        if commit:
            p.commit_transaction(15)
            expected += values
        else:
            p.abort_transaction(15)
    committed = consume_all(
        srv.bootstrap, topic, "read_committed", **{"max.partition.fetch.bytes": 200}
    )  # small fetches: their boundaries fall inside the aborted transaction
    assert committed == expected
    assert len(committed) == 15
    assert consume_all(srv.bootstrap, topic, "read_uncommitted") == everything


def test_a_new_instance_fences_the_old_one_and_aborts_its_transaction(
    srv: BrokerProcess,
) -> None:
    topic = new_topic(srv.bootstrap)
    txn_id = f"zombie-{uuid.uuid4().hex[:6]}"
    old = Producer({"bootstrap.servers": srv.bootstrap, "transactional.id": txn_id})
    old.init_transactions(15)
    old.begin_transaction()
    old.produce(topic, value=b"from-the-zombie", partition=0)
    old.flush(10)
    new = Producer({"bootstrap.servers": srv.bootstrap, "transactional.id": txn_id})
    new.init_transactions(15)  # aborts the old instance's open transaction, bumps the epoch
    new.begin_transaction()
    new.produce(topic, value=b"from-the-new-one", partition=0)
    new.commit_transaction(15)
    with pytest.raises(KafkaException) as err:
        old.commit_transaction(15)
    assert err.value.args[0].fatal() or "fenced" in str(err.value).lower()
    assert consume_all(srv.bootstrap, topic, "read_committed") == ["from-the-new-one"]


def test_a_transaction_past_its_timeout_is_aborted(srv: BrokerProcess) -> None:
    topic = new_topic(srv.bootstrap)
    stuck = Producer(
        {
            "bootstrap.servers": srv.bootstrap,
            "transactional.id": f"slow-{uuid.uuid4().hex[:6]}",
            "transaction.timeout.ms": 2000,
        }
    )
    stuck.init_transactions(15)
    stuck.begin_transaction()
    stuck.produce(topic, value=b"never-committed", partition=0)
    stuck.flush(10)
    other = Producer({"bootstrap.servers": srv.bootstrap, "transactional.id": f"o-{uuid.uuid4()}"})
    other.init_transactions(15)
    other.begin_transaction()
    other.produce(topic, value=b"committed-after", partition=0)
    other.commit_transaction(15)
    # the coordinator aborts the stuck one after 2 s: the open transaction no longer holds
    # back the last stable offset (until then a read_committed reader sees nothing)
    wait_for_value(lambda: consume_all(srv.bootstrap, topic, "read_committed"),
                   lambda got: got != [], 30, "the stuck transaction aborted")  # fmt: skip
    assert consume_all(srv.bootstrap, topic, "read_committed") == ["committed-after"]
    with pytest.raises(KafkaException):
        stuck.commit_transaction(15)


def test_consume_transform_produce_moves_output_and_offsets_together(
    srv: BrokerProcess,
) -> None:
    source, sink = new_topic(srv.bootstrap), new_topic(srv.bootstrap)
    feeder = Producer({"bootstrap.servers": srv.bootstrap})
    for i in range(60):
        feeder.produce(source, value=f"{i}".encode(), partition=0)
    feeder.flush(10)
    group = f"ctp-{uuid.uuid4().hex[:6]}"
    run_processor(srv.bootstrap, source, sink, group, stop_after=30, abort_last=True)
    run_processor(srv.bootstrap, source, sink, group, stop_after=60, abort_last=False)
    out = consume_all(srv.bootstrap, sink, "read_committed")
    assert sorted(int(v) // 10 for v in out) == list(range(60))  # each input once, by value
    c = Consumer({"bootstrap.servers": srv.bootstrap, "group.id": group})
    (committed,) = c.committed([TopicPartition(source, 0)], timeout=10)
    c.close()
    assert committed.offset == 60


def run_processor(
    bootstrap: str, source: str, sink: str, group: str, stop_after: int, abort_last: bool
) -> None:
    """Read ``source`` in a group, write value*10 to ``sink`` in transactions of 10 with the
    input offsets; with ``abort_last`` the last transaction aborts (a crash before commit)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([source])
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"{group}-p"})
    producer.init_transactions(15)
    deadline = time.monotonic() + 60
    seen = 0
    try:
        while time.monotonic() < deadline:
            msgs = consumer.consume(10, 1.0)
            msgs = [m for m in msgs if not m.error()]
            if not msgs:
                continue
            producer.begin_transaction()
            for m in msgs:
                producer.produce(sink, value=str(int(m.value()) * 10).encode(), partition=0)
            producer.send_offsets_to_transaction(
                consumer.position(consumer.assignment()),
                consumer.consumer_group_metadata(),
                15,
            )
            seen = msgs[-1].offset() + 1
            if abort_last and seen >= stop_after:
                producer.flush(10)
                producer.abort_transaction(15)
                return
            producer.commit_transaction(15)
            if seen >= stop_after:
                return
        raise AssertionError(f"processor stuck at offset {seen}")
    finally:
        consumer.close()


# -- aiokafka (transaction APIs v0) and kafka-python (idempotent by default) ---------------
def test_aiokafka_transactional_producer(srv: BrokerProcess) -> None:
    topic = new_topic(srv.bootstrap)
    asyncio.run(_aiokafka_transactions(srv.bootstrap, topic))
    assert consume_all(srv.bootstrap, topic, "read_committed") == ["kept-0", "kept-1"]


async def _aiokafka_transactions(bootstrap: str, topic: str) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=f"aio-{uuid.uuid4().hex[:6]}"
    )
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(topic, b"kept-0", partition=0)
            await producer.send_and_wait(topic, b"kept-1", partition=0)
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"dropped", partition=0)
        await producer.abort_transaction()
        group = f"aio-{uuid.uuid4().hex[:6]}"
        async with producer.transaction():
            await producer.send_offsets_to_transaction({_tp(topic): 2}, group)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        committed = await consumer.committed(_tp(topic))
        assert committed == 2
    finally:
        await consumer.stop()


def _tp(topic: str) -> Any:
    from aiokafka.structs import TopicPartition as AioTopicPartition

    return AioTopicPartition(topic, 0)


def test_kafka_python_idempotent_producer_with_default_settings(srv: BrokerProcess) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    topic = new_topic(srv.bootstrap)
    producer = KafkaProducer(bootstrap_servers=srv.bootstrap)  # enable_idempotence=True
    assert producer.config["enable_idempotence"]
    for i in range(300):
        producer.send(topic, f"kp-{i}".encode(), partition=0)
    producer.flush(20)
    producer.close()
    consumer = KafkaConsumer(
        bootstrap_servers=srv.bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=3000
    )
    consumer.assign([__import__("kafka").TopicPartition(topic, 0)])
    values = [m.value.decode() for m in consumer]
    consumer.close()
    assert values == [f"kp-{i}" for i in range(300)]


# -- exactly-once through a broker failure (cluster of 3) -----------------------------------
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_consume_transform_produce_stays_exactly_once_when_a_broker_dies(
    tmp_path: Path,
) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    brokers = start_all(cluster(tmp_path / "shared", 3, BROKER_LEASE_MS="4000",
                                BROKER_WAL="object"))
    bootstrap = ",".join(b.bootstrap for b in brokers)
    try:
        admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
        topics = [NewTopic("eos-in", 3, 1), NewTopic("eos-out", 3, 1)]
        for f in admin.create_topics(topics).values():
            f.result(10)
        feeder = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
        total = 900
        for i in range(total):
            feeder.produce("eos-in", value=str(i).encode(), partition=i % 3)
        assert feeder.flush(30) == 0
        # the victim is the group's coordinator: its offsets and the transaction's move
        port = _group_coordinator_port(brokers[0], "eos-group")
        victim = next(b for b in brokers if b.port == port)
        run = eos_processor.run(bootstrap, "eos-in", "eos-out", "eos-group", 3, total,
                                kill=victim.kill, kill_after=300)  # fmt: skip
        assert run.killed
        if run.hung_restarts:  # librdkafka#5511: see tests/support/eos_processor.py
            print(f"processor hung and was replaced {run.hung_restarts} time(s)")
        survivors = ",".join(b.bootstrap for b in brokers if b is not victim)
        out = [int(v) for part in range(3)
               for v in consume_all(survivors, "eos-out", "read_committed", part)]
        assert sorted(v // 10 for v in out) == list(range(total)), "each input exactly once"
        c = Consumer({"bootstrap.servers": survivors, "group.id": "eos-group"})
        committed = c.committed([TopicPartition("eos-in", p) for p in range(3)], timeout=10)
        c.close()
        assert sum(tp.offset for tp in committed) == total
    finally:
        for b in brokers:
            b.stop()


def _group_coordinator_port(broker: BrokerProcess, group: str) -> int:
    m = w.schema_module(10, 4)
    with w.WireClient(broker.port) as c:

        def find() -> Any:
            return c.call(m.FindCoordinatorRequest(key_type=0, coordinator_keys=(group,)))

        got = wait_for_value(find, lambda r: int(r.coordinators[0].error_code) == 0, 30,
                             f"a coordinator for {group}")  # fmt: skip
        return int(got.coordinators[0].port)


def test_producer_state_moves_with_a_reassigned_partition(tmp_path: Path) -> None:
    from broker_service.control.reassignment import reassign

    brokers = start_all(cluster(tmp_path / "shared", 2, BROKER_WAL="object"))
    try:
        topic = new_topic(brokers[0].bootstrap)
        with w.WireClient(brokers[0].port) as c:
            pid, epoch = init_producer_id(c)
            assert produce(c, topic, idem_batch(pid, epoch, 0, 4, "m")) == (0, 0)
            assert produce(c, topic, idem_batch(pid, epoch, 4, 4, "m")) == (0, 4)
        result = reassign(brokers[0].bootstrap, topic, 0, 2)
        assert result.ok, result
        with w.WireClient(brokers[1].port) as c:
            # the new leader knows the retry of the last batch, and the next sequence
            retry = idem_batch(pid, epoch, 4, 4, "m")
            answer = wait_for_value(lambda: produce(c, topic, retry),  # 3, 6: not learned yet
                                    lambda a: a[0] not in (3, 6), 10, "the new leader serves")
            assert answer == (0, 4)
            code, _ = produce(c, topic, idem_batch(pid, epoch, 20, 1, "m"))
            assert code == OUT_OF_ORDER_SEQUENCE_NUMBER
            assert produce(c, topic, idem_batch(pid, epoch, 8, 1, "m")) == (0, 8)
            assert latest(c, topic) == 9
    finally:
        for b in brokers:
            b.stop()


def test_a_transaction_left_half_ended_by_a_dead_coordinator_is_finished(
    tmp_path: Path,
) -> None:
    """The coordinator recorded PrepareCommit and died before writing markers: whoever
    coordinates the id now finishes the commit from the durable record."""
    from broker_service.metadata.records import TXN_ONGOING, TXN_PREPARE_COMMIT
    from broker_service.metadata.sqlite import SqliteMetadataStore

    b = BrokerProcess(tmp_path / "data", BROKER_TRANSACTION_SCAN_MS="500").start()
    try:
        topic = new_topic(b.bootstrap)
        txn_id = f"orphan-{uuid.uuid4().hex[:6]}"
        p = Producer({"bootstrap.servers": b.bootstrap, "transactional.id": txn_id,
                      "transaction.timeout.ms": 600000})
        p.init_transactions(15)
        p.begin_transaction()
        for i in range(5):
            p.produce(topic, value=f"decided-{i}".encode(), partition=0)
        p.flush(10)
        assert consume_all(b.bootstrap, topic, "read_committed") == []
        store = SqliteMetadataStore(tmp_path / "data" / "metadata.sqlite")
        rec = store.transaction(txn_id)
        assert rec is not None and rec.state == TXN_ONGOING
        store.save_transaction(  # as if the coordinator decided, then died before markers
            rec.with_(state=TXN_PREPARE_COMMIT, update_ms=int(time.time() * 1000) - 60_000)
        )
        got = wait_for_value(lambda: consume_all(b.bootstrap, topic, "read_committed"),
                             lambda got: len(got) >= 5, 20, "the commit was finished")
        assert got == [f"decided-{i}" for i in range(5)]
        assert store.transaction(txn_id).state == "CompleteCommit"  # type: ignore[union-attr]
        store.close()
    finally:
        b.stop()
