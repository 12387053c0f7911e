"""Runtime correctness under ordinary client behaviour (issue 15), through raw sockets and
real clients against real broker processes:

- a client that disconnects does not undo durability: its batch completes, is readable at
  once, a retry gets the original offsets, and the partition can be handed over;
- requests on one connection take effect in the order they were sent (offset commits, an
  offset fetch right after a commit, ListOffsets right after DeleteRecords);
- a metadata store that stalls does not stall unrelated clients;
- a produce that cannot become durable in time is answered REQUEST_TIMED_OUT;
- the fetch long poll counts the bytes it sends once;
- one request's shape (a group commit of > IOV_MAX buffers) never stops the broker.
"""

from __future__ import annotations

import datetime
import re
import select
import sqlite3
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kafka_wire import (
    WireClient,
    build_batch,
    create_topics_request,
    decode_response,
    fetch_request,
    frame_of,
    list_offsets_request,
    produce_request,
    schema_module,
)
from tests.support.broker import BrokerProcess

BACKENDS = ["file", "object"]


def _wait_until(cond, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def cloud_env(moto_endpoint: str) -> dict[str, str]:
    from tests.integration.test_cluster import _cloud_env

    return _cloud_env(moto_endpoint)


def _create(port: int, topic: str, partitions: int = 1) -> None:
    with WireClient(port) as c:
        resp = c.call(create_topics_request(7, [topic], partitions=partitions))
        assert int(resp.topics[0].error_code) == 0, resp.topics[0]


def _fetch_all(port: int, topic: str, partition: int = 0) -> list[bytes]:
    with WireClient(port) as c:
        resp = c.call(fetch_request(12, topic, partition, 0, max_wait_ms=0))
        p = resp.responses[0].partitions[0]
        assert int(p.error_code) == 0, p
        return [bytes(p.records)] if p.records else []


def _produce_frame(
    topic: str, batch: bytes, cid: int, acks: int = -1, timeout_ms: int = 30000
) -> bytes:
    return frame_of(produce_request(9, {topic: {0: batch}}, acks=acks, timeout_ms=timeout_ms), cid)


# -- 1. a disconnect does not undo durability --------------------------------------------------
@pytest.mark.parametrize("wal", BACKENDS)
def test_a_batch_outlives_the_connection_that_sent_it(tmp_path: Path, wal: str) -> None:
    """Produce acks=-1, close the socket before the answer: the batch still completes (high
    watermark moves, readable at once), an idempotent retry on a new connection gets the
    original offset, and the partition can be handed over (nothing stuck 'in flight')."""
    from broker_service.control.reassignment import reassign

    env = {"BROKER_WAL": wal, "BROKER_WAL_FLUSH_MS": "300", "BROKER_LEASE_MS": "30000"}
    brokers = [
        BrokerProcess(tmp_path / "shared", BROKER_NODE_ID=str(i + 1), **env).start()
        for i in range(2)
    ]
    try:
        port = brokers[0].port
        _create(port, "left")
        _wait_until(lambda: _leader_of(port, "left") > 0, 10, "a leader")
        leader = next(b for b in brokers if b.port == _port_of(brokers, _leader_of(port, "left")))
        batch = build_batch(
            [b"durable"], producer_id=_producer_id(leader.port), producer_epoch=0, base_sequence=0
        )
        with WireClient(leader.port) as c:  # the WAL lingers 300 ms: we are gone before
            c.send(_produce_frame("left", batch, c.next_cid()))
        records = _wait_until(lambda: _fetch_all(leader.port, "left"), 10, "the record")
        assert b"durable" in records[0]
        with WireClient(leader.port) as c:  # the client retries the same batch
            resp = c.call(produce_request(9, {"left": {0: batch}}))
            p = resp.responses[0].partition_responses[0]
            assert (int(p.error_code), int(p.base_offset)) == (0, 0), p
        other = 2 if leader is brokers[0] else 1
        result = reassign(leader.bootstrap, "left", 0, other)
        assert result.ok, result
    finally:
        for b in brokers:
            b.stop()


def _producer_id(port: int) -> int:
    m = schema_module(22, 4)
    with WireClient(port) as c:
        resp = c.call(
            m.InitProducerIdRequest(
                transactional_id=None,
                transaction_timeout=datetime.timedelta(milliseconds=60000),
                producer_id=-1,
                producer_epoch=-1,
            )
        )
        assert int(resp.error_code) == 0
        return int(resp.producer_id)


def _leader_of(port: int, topic: str) -> int:
    m = schema_module(3, 12)
    with WireClient(port) as c:
        resp = c.call(
            m.MetadataRequest(
                topics=(m.MetadataRequestTopic(name=topic, topic_id=None),),
                allow_auto_topic_creation=False,
                include_topic_authorized_operations=False,
            )
        )
        return int(resp.topics[0].partitions[0].leader_id) if resp.topics[0].partitions else -1


def _port_of(brokers: list[BrokerProcess], node_id: int) -> int:
    return brokers[node_id - 1].port


# -- 2. requests on one connection take effect in order ----------------------------------------
@pytest.fixture
def one_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    b = BrokerProcess(tmp_path / "data").start()
    yield b
    b.stop()


def _find_coordinator(port: int, group: str) -> None:
    """What every client does first (it also creates __consumer_offsets, as in Kafka)."""
    m = schema_module(10, 4)

    def found() -> bool:
        with WireClient(port) as c:
            resp = c.call(m.FindCoordinatorRequest(key_type=0, coordinator_keys=(group,)))
            return int(resp.coordinators[0].error_code) == 0

    _wait_until(found, 30, f"a coordinator for {group}")


def _offset_commit(group: str, topic: str, offset: int) -> object:
    m = schema_module(8, 2)
    return m.OffsetCommitRequest(
        group_id=group,
        generation_id_or_member_epoch=-1,
        member_id="",
        retention_time=datetime.timedelta(milliseconds=-1),
        topics=(
            m.OffsetCommitRequestTopic(
                name=topic,
                partitions=(
                    m.OffsetCommitRequestPartition(
                        partition_index=0, committed_offset=offset, committed_metadata=None
                    ),
                ),
            ),
        ),
    )


def _offset_fetch(group: str, topic: str) -> object:
    m = schema_module(9, 5)
    return m.OffsetFetchRequest(
        group_id=group,
        topics=(m.OffsetFetchRequestTopic(name=topic, partition_indexes=(0,)),),
    )


def _pipeline(c: WireClient, requests: list[object]) -> list[object]:
    """Send every request before reading any answer; answers come back in order."""
    cids = [c.next_cid() for _ in requests]
    c.send(b"".join(frame_of(r, cid) for r, cid in zip(requests, cids, strict=True)))
    out = []
    for r, cid in zip(requests, cids, strict=True):
        payload = c.recv_frame()
        assert payload is not None
        got, resp = decode_response(int(r.__api_key__), int(r.__version__), payload)  # type: ignore[attr-defined]
        assert got == cid, "answers in request order"
        out.append(resp)
    return out


def test_pipelined_offset_commits_take_effect_in_the_order_sent(one_broker: BrokerProcess) -> None:
    _create(one_broker.port, "ordered")
    with WireClient(one_broker.port) as c:
        for run in range(5):
            group = f"g{run}"
            _find_coordinator(one_broker.port, group)
            commits = [_offset_commit(group, "ordered", i) for i in range(1, 201)]
            answers = _pipeline(c, [*commits, _offset_fetch(group, "ordered")])
            assert all(int(a.topics[0].partitions[0].error_code) == 0 for a in answers[:-1])
            fetched = answers[-1].topics[0].partitions[0]
            assert int(fetched.committed_offset) == 200, f"run {run}: {fetched}"


def test_list_offsets_right_after_delete_records_sees_the_delete(one_broker: BrokerProcess) -> None:
    _create(one_broker.port, "trimmed")
    with WireClient(one_broker.port) as c:
        resp = c.call(produce_request(9, {"trimmed": {0: build_batch([b"a"] * 10)}}))
        assert int(resp.responses[0].partition_responses[0].error_code) == 0
        m = schema_module(21, 2)
        for cut in range(1, 10):
            delete = m.DeleteRecordsRequest(
                topics=(
                    m.DeleteRecordsTopic(
                        name="trimmed",
                        partitions=(m.DeleteRecordsPartition(partition_index=0, offset=cut),),
                    ),
                ),
                timeout=datetime.timedelta(seconds=10),
            )
            answers = _pipeline(c, [delete, list_offsets_request(7, "trimmed", 0, -2)])
            earliest = answers[1].topics[0].partitions[0]
            assert int(earliest.offset) == cut, earliest


# -- 3. a stalled metadata store stalls nobody else ---------------------------------------------
def test_a_locked_metadata_store_does_not_stall_other_clients(one_broker: BrokerProcess) -> None:
    """While the SQLite file is locked by another process, a DeleteGroups waits for it; an
    ApiVersions on another connection is answered meanwhile (the event loop is free)."""
    _create(one_broker.port, "busy")
    _find_coordinator(one_broker.port, "doomed")
    with WireClient(one_broker.port) as c:
        c.call(_offset_commit("doomed", "busy", 1))
    db = sqlite3.connect(
        str(one_broker.data_dir / "metadata.sqlite"), timeout=30, isolation_level=None
    )
    db.execute("BEGIN EXCLUSIVE")
    m = schema_module(42, 2)
    slow = WireClient(one_broker.port, timeout=30)
    try:
        slow.send(frame_of(m.DeleteGroupsRequest(groups_names=("doomed",)), 1))
        with WireClient(one_broker.port, timeout=30) as other:
            for _ in range(5):
                av = other.call(
                    schema_module(18, 3).ApiVersionsRequest(
                        client_software_name="t", client_software_version="1"
                    )
                )
                assert int(av.error_code) == 0
        slow.sock.settimeout(0.2)
        with pytest.raises(TimeoutError):  # still waiting for the lock: it stalled only itself
            slow.sock.recv(1)
    finally:
        db.execute("ROLLBACK")
        db.close()
    slow.sock.settimeout(30)
    payload = slow.recv_frame()
    assert payload is not None
    _, resp = decode_response(42, 2, payload)
    assert int(resp.results[0].error_code) == 0
    slow.close()


# -- 4. timeouts are honoured --------------------------------------------------------------------
def test_a_produce_that_cannot_be_durable_in_time_times_out(tmp_path: Path) -> None:
    """The object WAL's commit needs the metadata store; while it is locked the first group's
    commit waits, and batches behind it are refused at their deadline with
    REQUEST_TIMED_OUT (never committed afterwards); the broker then serves normally."""
    b = BrokerProcess(tmp_path / "data", BROKER_WAL="object", BROKER_WAL_FLUSH_MS="0").start()
    try:
        _create(b.port, "late")
        db = sqlite3.connect(str(b.data_dir / "metadata.sqlite"), timeout=30, isolation_level=None)
        with WireClient(b.port, timeout=30) as c:
            db.execute("BEGIN EXCLUSIVE")
            try:
                cids = [c.next_cid() for _ in range(3)]
                c.send(
                    b"".join(
                        _produce_frame("late", build_batch([b"x%d" % i]), cid, timeout_ms=300)
                        for i, cid in enumerate(cids)
                    )
                )
                # The fault lasts three produce timeouts; nothing is acknowledged meanwhile
                # (an answer may come early only as REQUEST_TIMED_OUT, checked below).
                select.select([c.sock], [], [], 0.9)
            finally:
                db.execute("ROLLBACK")
                db.close()
            codes = []
            for cid in cids:
                payload = c.recv_frame()
                assert payload is not None
                got, resp = decode_response(0, 9, payload)
                assert got == cid
                codes.append(int(resp.responses[0].partition_responses[0].error_code))
        assert 7 in codes, f"REQUEST_TIMED_OUT (7) for what waited past its timeout: {codes}"
        timed_out = [i for i, code in enumerate(codes) if code == 7]
        records = _fetch_all(b.port, "late")
        blob = records[0] if records else b""
        for i in timed_out:
            assert b"x%d" % i not in blob, "a timed-out batch was committed afterwards"
        with WireClient(b.port) as c:  # healthy: the next produce is durable and acknowledged
            resp = c.call(produce_request(9, {"late": {0: build_batch([b"after"])}}))
            assert int(resp.responses[0].partition_responses[0].error_code) == 0
    finally:
        b.stop()


# -- 6. metrics count what was sent --------------------------------------------------------------
def _bytes_out(b: BrokerProcess) -> float:
    text = urllib.request.urlopen(b.metrics_url, timeout=10).read().decode()
    m = re.search(r"^kafka_broker_bytes_out_total(?:\{[^}]*\})? ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def test_a_long_poll_counts_its_bytes_once(one_broker: BrokerProcess) -> None:
    """A fetch that waits for 20 KB while 1 KB batches trickle in wakes up many times; the
    bytes-out metric grows by what the response carried, not by every wake-up's read."""
    _create(one_broker.port, "trickle")
    before = _bytes_out(one_broker)
    with WireClient(one_broker.port, timeout=30) as consumer:
        consumer.send(
            frame_of(fetch_request(12, "trickle", 0, 0, max_wait_ms=20000, min_bytes=20_000), 1)
        )
        with WireClient(one_broker.port) as producer:
            for i in range(25):
                resp = producer.call(
                    produce_request(9, {"trickle": {0: build_batch([bytes([i]) * 1000])}})
                )
                assert int(resp.responses[0].partition_responses[0].error_code) == 0
        payload = consumer.recv_frame()
        assert payload is not None
        _, resp = decode_response(1, 12, payload)
    sent = len(bytes(resp.responses[0].partitions[0].records or b""))
    assert sent >= 20_000
    grew = _wait_until(lambda: _bytes_out(one_broker) - before or None, 10, "the metric")
    assert grew == sent, f"bytes_out grew by {grew}, the response carried {sent}"


# -- 7. no single client can stop the broker ---------------------------------------------------
def test_a_produce_burst_over_many_partitions_never_stops_the_broker(tmp_path: Path) -> None:
    """One librdkafka producer writing one record to each of 600 single-partition topics
    with linger.ms=200 puts > 512 batches in one WAL group (> IOV_MAX buffers for writev):
    this once made the broker exit. Every record is delivered and the broker keeps serving."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    b = BrokerProcess(tmp_path / "data", BROKER_WAL_FLUSH_MS="20").start()
    try:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        topics = [f"many-{i}" for i in range(600)]
        for f in admin.create_topics([NewTopic(t, 1, 1) for t in topics]).values():
            f.result(60)
        delivered: list[object] = []
        errors: list[object] = []
        p = Producer(
            {
                "bootstrap.servers": b.bootstrap,
                "linger.ms": 200,
                "acks": "all",
                "batch.num.messages": 100000,
            }
        )
        for t in topics:
            p.produce(t, b"v", on_delivery=lambda e, m: (errors if e else delivered).append(e or m))
        assert p.flush(60) == 0
        assert not errors, errors[:3]
        assert len(delivered) == 600
        assert b.proc is not None and b.proc.poll() is None, "the broker is still running"
    finally:
        b.stop()
