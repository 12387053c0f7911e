"""Commits whose outcome is late or unknown (issue 22.1, DESIGN invariants 9 and 11).

An object-WAL commit that stalls past the producer's request timeout must not land later:
librdkafka times the request out, bumps its producer epoch and sends the records again, so a
late commit of the originals duplicates them. The broker gives each commit the earliest
deadline of its group, the store refuses a commit past it, and an attempt still unanswered
at the deadline is settled by writing the object key ABORTED (after which the late original
can never commit) or, if the key turns out COMMITTED, answered as durable. Inside the
DynamoDB store a call unanswered after ``commit_stall_ms`` has its log seq sealed with a
tombstone (the late call then fails its condition) and is sent again under the next seq, so
one stalled call never holds up the broker's later commits (before: 500-4,000 duplicates
and a third of 30,000 records timed out, from two 12 s stalls).

S3 and DynamoDB are a moto server serving one request at a time (tests/support/moto.py)
behind tests/cloud/fault_proxy.py, which delays or answers late chosen DynamoDB operations.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from broker_service.metadata.dynamodb import DynamoDbMetadataStore
from broker_service.metadata.records import StreamRange
from tests import kafka_wire as w
from tests.broker_process import BrokerProcess
from tests.chaos.harness import AWS_TEST_ENV, REGION
from tests.cloud.fault_proxy import HANG, LOSE_RESPONSE, RESPOND_LATE, FaultProxy
from tests.support.moto import MotoServer
from tests.support.wait import wait_until


@pytest.fixture(scope="module")
def serial_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with MotoServer(tmp_path_factory.mktemp("moto-serial")) as server:
        yield server.endpoint


def _backends(endpoint: str) -> tuple[str, str]:
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    bucket, table = f"late-{uuid.uuid4().hex[:8]}", f"late-{uuid.uuid4().hex[:8]}"
    session.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    DynamoDbMetadataStore(
        table, client=session.client("dynamodb", endpoint_url=endpoint)
    ).create_table()
    return bucket, table


def _read_keys(bootstrap: str, topic: str, partitions: int) -> list[int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"v-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False})  # fmt: skip
    try:
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                for p in range(partitions)}  # fmt: skip
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        keys: list[int] = []
        got = dict.fromkeys(range(partitions), 0)
        deadline = time.monotonic() + 60
        while any(got[p] < ends[p] for p in got) and time.monotonic() < deadline:
            for m in c.consume(2000, 0.5):
                assert m.error() is None, m.error()
                keys.append(int(m.key()))
                got[m.partition()] = m.offset() + 1
        assert all(got[p] >= ends[p] for p in got), (got, ends)
        return keys
    finally:
        c.close()


@pytest.mark.slow
@pytest.mark.parametrize("fault", [HANG, RESPOND_LATE])
def test_stalled_metadata_commits_never_land_after_the_producer_gave_up(
    tmp_path: Path, serial_moto: str, fault: str
) -> None:
    """12 s on 3% of TransactWriteItems; librdkafka idempotent, request.timeout.ms 5000,
    message.timeout.ms 10000 (issue 22.1: 40,276 duplicates in 105,036 records on main).
    ``hang``: the commit reaches the store 12 s late (8,998 duplicates in 38,169 records
    before the fix); ``respond-late``: it applies at once and its answer comes 12 s late
    (settled as committed: durable, answered)."""
    bucket, table = _backends(serial_moto)
    with FaultProxy(serial_moto, hang_seconds=12.0) as proxy:
        proxy.chaos(0.03, (fault,), seed=22, ops=("TransactWriteItems",))
        broker = BrokerProcess(
            tmp_path / "data", BROKER_STORAGE=f"s3://{bucket}/late",
            BROKER_METADATA=f"dynamodb://{table}", BROKER_WAL="object",
            AWS_ENDPOINT_URL=serial_moto, AWS_ENDPOINT_URL_DYNAMODB=proxy.endpoint,
            **AWS_TEST_ENV,
        ).start(timeout=60)  # fmt: skip
        try:
            admin = AdminClient({"bootstrap.servers": broker.bootstrap})
            for f in admin.create_topics([NewTopic("late", 2, 1)]).values():
                f.result(30)
            acked: dict[int, tuple[int, int]] = {}
            failed: Counter[str] = Counter()

            def on_delivery(err: object, msg: object) -> None:
                if err is None:
                    acked[int(msg.key())] = (msg.partition(), msg.offset())  # type: ignore[attr-defined]
                else:
                    failed[err.name()] += 1  # type: ignore[attr-defined]

            p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all",
                          "enable.idempotence": True, "linger.ms": 5,
                          "request.timeout.ms": 5000, "message.timeout.ms": 10000,
                          "log_level": 2})  # fmt: skip
            n, rate, started = 30_000, 1000, time.monotonic()
            for i in range(n):
                if i == 5000:  # at least one stall while producing, whatever the draw
                    proxy.add(fault, "POST", op="TransactWriteItems")
                while time.monotonic() < started + i / rate:  # a steady load for 30 s
                    p.poll(0.01)
                p.produce("late", key=str(i).encode(), value=b"v" * 50, partition=i % 2,
                          on_delivery=on_delivery)  # fmt: skip
                p.poll(0)
            assert p.flush(60) == 0
            del p, admin
            commits = len(proxy.ops("TransactWriteItems"))
            keys = _read_keys(broker.bootstrap, "late", 2)
        finally:
            broker.stop()
    copies = Counter(keys)
    duplicates = sum(c - 1 for c in copies.values() if c > 1)
    print(f"\nacked {len(acked)}, failed {dict(failed)}, in the log {len(keys)}, duplicates "
          f"{duplicates}; {proxy.injected[fault]} of {commits} commits {fault} 12 s")  # fmt: skip
    assert proxy.injected[fault] >= 1, "the proxy stalled commits"
    assert duplicates == 0, f"{duplicates} duplicated records"
    assert all(k in copies for k in acked), "an acknowledged record is missing"


@pytest.mark.parametrize("fault", [HANG, RESPOND_LATE])
def test_a_stalled_commit_is_settled_and_the_next_commit_does_not_wait_for_it(
    serial_moto: str, fault: str
) -> None:
    """The store, directly: a commit's TransactWriteItems stalls 5 s (``hang``: it reaches
    DynamoDB late; ``respond-late``: it applies, its answer is late). The commit, deadline
    10 s ahead, settles its seq once the call is overdue (commit_stall_ms) instead of holding
    the broker's log: committed once either way, and a second commit goes through while the
    first call is still stalled (before the fix it waited behind it on the writer's lock)."""
    _, table = _backends(serial_moto)
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    with FaultProxy(serial_moto, hang_seconds=5.0) as proxy:
        store = DynamoDbMetadataStore(
            table, client=session.client("dynamodb", endpoint_url=proxy.endpoint)
        )
        store.commit_stall_ms = 500
        me = store.register_broker(1, "h", 1, None, 60_000)
        sid = store.create_topic("t", 1, {}, [1]).partitions[0].stream_id
        proxy.add(fault, "POST", op="TransactWriteItems")  # the first commit's call
        deadline = int(time.time() * 1000) + 10_000
        store.commit_object(1, me.epoch, "first", 10, [StreamRange(sid, 0, 5, "first", 0, 10, 0)],
                            deadline)  # fmt: skip
        store.commit_object(1, me.epoch, "second", 10,
                            [StreamRange(sid, 5, 9, "second", 0, 10, 0)], deadline)  # fmt: skip
        # both commits were answered while the first call was still held in the proxy
        assert proxy.injected[fault] == 1 and proxy.in_flight == 1, proxy.seen_ops
        reader = DynamoDbMetadataStore(table, client=session.client(
            "dynamodb", endpoint_url=serial_moto))  # fmt: skip
        first = [(r.start_offset, r.end_offset, r.object_key) for r in reader.stream_ranges(sid)]
        assert first == [(0, 5, "first"), (5, 9, "second")], first
        wait_until(lambda: proxy.in_flight == 0, 30, "the stalled call to end")
        store.close()
    # whatever the stalled call did when it went through at last, each range is there once
    after = [(r.start_offset, r.end_offset, r.object_key) for r in reader.stream_ranges(sid)]
    assert after == first, after
    reader.close()


def test_an_upload_whose_commit_answer_was_lost_is_committed_once(
    tmp_path: Path, serial_moto: str
) -> None:
    """File WAL on S3 + DynamoDB: the upload's TransactWriteItems applies and its answer is
    lost (500; botocore's retry then fails its own condition). The upload must learn that it
    committed, not upload the same offsets again under a new key (a second committed object
    for the same data; had the first landed late instead, it would overwrite later ranges)."""
    bucket, table = _backends(serial_moto)
    with FaultProxy(serial_moto) as proxy:
        broker = BrokerProcess(
            tmp_path / "data", BROKER_STORAGE=f"s3://{bucket}/up",
            BROKER_METADATA=f"dynamodb://{table}", BROKER_WAL="file",
            BROKER_UPLOAD_INTERVAL_MS="500", AWS_ENDPOINT_URL=serial_moto,
            AWS_ENDPOINT_URL_DYNAMODB=proxy.endpoint, **AWS_TEST_ENV,
        ).start(timeout=60)  # fmt: skip
        try:
            admin = AdminClient({"bootstrap.servers": broker.bootstrap})
            for f in admin.create_topics([NewTopic("up", 1, 1)]).values():
                f.result(30)
            del admin
            proxy.add(LOSE_RESPONSE, "POST", op="TransactWriteItems")  # the next commit
            p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all",
                          "log_level": 2})  # fmt: skip
            for i in range(1000):
                p.produce("up", key=str(i).encode(), value=b"v")
            assert p.flush(30) == 0
            del p
            store = DynamoDbMetadataStore(table, client=boto3.session.Session(
                aws_access_key_id="testing", aws_secret_access_key="testing",
                region_name=REGION).client("dynamodb", endpoint_url=serial_moto))  # fmt: skip
            topic = store.topic("up")
            assert topic is not None
            sid = topic.partitions[0].stream_id
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # wait until everything is uploaded
                ranges = store.stream_ranges(sid)
                if ranges and ranges[-1].end_offset == 1000:
                    break
                time.sleep(0.2)
            assert proxy.injected[LOSE_RESPONSE] == 1
            s3 = boto3.session.Session(aws_access_key_id="testing",
                                       aws_secret_access_key="testing",
                                       region_name=REGION).client("s3", endpoint_url=serial_moto)
            listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
            uploads = [k.removeprefix("up/") for k in listed if "/sso/" in f"/{k}"]
            committed = store.committed_objects(uploads)
            referenced = {r.object_key for r in store.stream_ranges(sid)}
            assert committed == referenced, f"committed {sorted(committed)}, used {referenced}"
            assert [(r.start_offset, r.end_offset) for r in store.stream_ranges(sid)][-1][1] == 1000
        finally:
            broker.stop()


def test_a_hand_over_whose_answer_was_lost_completes(tmp_path: Path, serial_moto: str) -> None:
    """The leader hands its partition over and the move's TransactWriteItems applies, but its
    answer is lost (500; botocore's retry fails its own compare-and-set). The leader must
    learn that the partition moved, answer the reassignment as done and accept nothing more
    for it, not resume leading a partition another broker now leads."""
    from broker_service.control.reassignment import reassign

    bucket, table = _backends(serial_moto)
    env = dict(BROKER_STORAGE=f"s3://{bucket}/ho", BROKER_METADATA=f"dynamodb://{table}",
               BROKER_WAL="object", AWS_ENDPOINT_URL=serial_moto, **AWS_TEST_ENV)  # fmt: skip
    with FaultProxy(serial_moto) as proxy:
        first = BrokerProcess(tmp_path / "a", BROKER_NODE_ID="1",
                              AWS_ENDPOINT_URL_DYNAMODB=proxy.endpoint, **env)  # fmt: skip
        second = BrokerProcess(tmp_path / "b", BROKER_NODE_ID="2", **env)
        try:
            first.start(timeout=60)
            second.start(timeout=60)
            admin = AdminClient({"bootstrap.servers": first.bootstrap})
            for f in admin.create_topics([NewTopic("ho", 1, 1)]).values():
                f.result(30)
            del admin
            p = Producer({"bootstrap.servers": first.bootstrap, "acks": "all", "log_level": 2})
            for i in range(100):
                p.produce("ho", key=str(i).encode(), value=b"v")
            assert p.flush(30) == 0
            del p
            proxy.add(LOSE_RESPONSE, "POST", op="TransactWriteItems")  # the move
            result = reassign(first.bootstrap, "ho", 0, 2)
            assert proxy.injected[LOSE_RESPONSE] == 1
            assert result.ok, result
        finally:
            first.stop()
            second.stop()


def test_a_committed_batch_is_acknowledged_though_the_lease_renewal_ran_late(
    tmp_path: Path, serial_moto: str
) -> None:
    """Object WAL: the batch's commit lands (conditional on this broker's epoch, so no
    takeover came first) while the lease renewal is stalled past the lease's validity. The
    batch is in the shared log: it is acknowledged. Answering NOT_LEADER_OR_FOLLOWER for it
    made producers send it again, under a new epoch after a timeout: a duplicate (the
    duplicates the kill loop still found under overload)."""
    bucket, table = _backends(serial_moto)
    with FaultProxy(serial_moto, hang_seconds=3.0) as proxy:
        broker = BrokerProcess(
            tmp_path / "data", BROKER_STORAGE=f"s3://{bucket}/ack",
            BROKER_METADATA=f"dynamodb://{table}", BROKER_WAL="object", BROKER_LEASE_MS="3000",
            AWS_ENDPOINT_URL=serial_moto, AWS_ENDPOINT_URL_DYNAMODB=proxy.endpoint,
            **AWS_TEST_ENV,
        ).start(timeout=60)  # fmt: skip
        try:
            admin = AdminClient({"bootstrap.servers": broker.bootstrap})
            for f in admin.create_topics([NewTopic("ack", 1, 1)]).values():
                f.result(30)
            del admin
            with w.WireClient(broker.port, timeout=30) as client:
                first = client.call(w.produce_request(9, {"ack": {0: w.build_batch([b"a"])}},
                                                      timeout_ms=30_000))  # fmt: skip
                assert first.responses[0].partition_responses[0].error_code == 0
                proxy.add(HANG, "POST", op="UpdateItem")  # the next lease renewal stalls 3 s
                deadline = time.monotonic() + 10
                while proxy.in_flight == 0:  # ... and is under way
                    assert time.monotonic() < deadline, "no lease renewal"
                    time.sleep(0.02)
                proxy.add(HANG, "POST", op="TransactWriteItems")  # so does the next commit
                resp = client.call(w.produce_request(9, {"ack": {0: w.build_batch([b"b"])}},
                                                     timeout_ms=30_000))  # fmt: skip
            part = resp.responses[0].partition_responses[0]
            assert proxy.injected[HANG] == 2
            assert part.error_code == 0, f"a committed batch answered error {part.error_code}"
            assert part.base_offset == 1
        finally:
            broker.stop()
