"""Several broker processes on one shared embedded data directory form one cluster: SIGKILL a
leader and its partitions move to live brokers (its file WAL is recovered from the shared
disk first); clients follow and nothing acknowledged is lost."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from broker_service.metadata.sqlite import SqliteMetadataStore
from tests import kafka_wire as w
from tests.support.broker import BrokerProcess, cluster, start_all
from tests.support.wait import wait_for_value, wait_until

LEASE_MS = "4000"


def _cluster(data: Path, n: int, wal: str, **env: str) -> list[BrokerProcess]:
    return start_all(cluster(data, n, BROKER_LEASE_MS=LEASE_MS, BROKER_WAL=wal,
                             BROKER_UPLOAD_INTERVAL_MS="600000", **env))  # fmt: skip


def _cloud_env(endpoint: str) -> dict[str, str]:
    """S3 + DynamoDB on moto server: a fresh bucket and table."""
    import uuid

    import boto3

    from broker_service.metadata.dynamodb import DynamoDbMetadataStore
    from tests.support.moto import AWS_TEST_ENV, REGION

    bucket, table = f"ha-{uuid.uuid4().hex[:8]}", f"ha-{uuid.uuid4().hex[:8]}"
    session = boto3.session.Session(aws_access_key_id="testing",
                                    aws_secret_access_key="testing", region_name=REGION)
    session.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    DynamoDbMetadataStore(table, client=session.client("dynamodb", endpoint_url=endpoint)
                          ).create_table()
    return {"BROKER_STORAGE": f"s3://{bucket}/ha", "BROKER_METADATA": f"dynamodb://{table}",
            "AWS_ENDPOINT_URL": endpoint, **AWS_TEST_ENV}


def _leaders(bootstrap: str, topic: str) -> dict[int, int]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    md = admin.list_topics(topic, timeout=10)
    return {p: m.leader for p, m in md.topics[topic].partitions.items()}


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "wal"), [("embedded", "file"), ("embedded", "object"),
                                              ("s3-dynamodb", "object")])
def test_sigkill_leader_fails_over_without_loss(
    tmp_path: Path, backend: str, wal: str, request: pytest.FixtureRequest
) -> None:
    """A continuous idempotent acks=all producer and a group consumer while a broker leading
    a third of the partitions (and perhaps coordinating the group) is SIGKILLed."""
    import threading

    env = _cloud_env(request.getfixturevalue("moto_endpoint")) if backend != "embedded" else {}
    brokers = _cluster(tmp_path / "shared", 3, wal, **env)
    first, others = brokers[0], brokers[1:]
    bootstrap = ",".join(b.bootstrap for b in brokers)
    stop_consumer = threading.Event()
    consumed: list[tuple[int, int, int]] = []  # (partition, offset, key)
    consumer_errors: list[str] = []

    def consume() -> None:
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "ha-group",
                      "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
                      "enable.auto.commit": True, "auto.commit.interval.ms": 200})
        c.subscribe(["ha"])
        try:
            while not stop_consumer.is_set():
                for m in c.consume(500, 0.2):
                    if m.error() is None:
                        consumed.append((m.partition(), m.offset(), int(m.key())))
                    elif not m.error().retriable():
                        consumer_errors.append(str(m.error()))
        finally:
            c.close()

    reader = threading.Thread(target=consume, daemon=True)
    try:
        admin = AdminClient({"bootstrap.servers": first.bootstrap})
        for f in admin.create_topics([NewTopic("ha", 6, 1)]).values():
            f.result(10)
        wait_for_value(lambda: _leaders(first.bootstrap, "ha"),  # a new topic's partitions
                       lambda leaders: set(leaders.values()) == {1, 2, 3}, 10,  # are spread
                       "partitions spread over the brokers")  # fmt: skip
        reader.start()
        acked: dict[int, tuple[int, int]] = {}
        acked_at: dict[int, float] = {}

        def on_delivery(err: object, msg: object) -> None:
            if err is None:
                k = int(msg.key())  # type: ignore[attr-defined]
                acked[k] = (msg.partition(), msg.offset())  # type: ignore[attr-defined]
                acked_at[k] = time.monotonic()

        p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                      "enable.idempotence": True, "message.timeout.ms": 60000})
        total, kill_at = 4000, 1500
        killed = 0.0
        for i in range(total):
            if i == kill_at:
                assert p.flush(30) == 0
                first.kill()  # acknowledged data is in its WAL only (uploads are far apart)
                killed = time.monotonic()
            p.produce("ha", key=str(i).encode(), value=f"v{i}".encode(), partition=i % 6,
                      on_delivery=on_delivery)
            p.poll(0)
            if i % 100 == 99:
                time.sleep(0.02)  # continuous, not one burst
        assert p.flush(90) == 0
        assert len(acked) == total
        # every partition is served again once a record sent after the kill is acknowledged
        served = max(min(acked_at[k] for k in range(kill_at, total) if k % 6 == part)
                     for part in range(6)) - killed
        # a broker's view of the leaders is refreshed from the metadata store every 0.5 s:
        # broker 2 may still name the dead one for a moment after broker 3 took a partition
        # over (on a busy moto, longer), as a Kafka broker may before UpdateMetadata reaches it
        wait_for_value(lambda: _leaders(others[0].bootstrap, "ha"),
                       lambda leaders: set(leaders.values()) <= {2, 3}, 30,
                       "broker 2 names only live brokers as leaders")  # fmt: skip
        print(f"\n[{backend}, {wal} WAL] all partitions served again {served:.1f}s after SIGKILL")

        wait_until(lambda: {k for _, _, k in consumed} == set(acked), 60,
                   lambda: f"consumed {len({k for _, _, k in consumed})} of {len(acked)}")
        stop_consumer.set()
        reader.join(30)
        assert not consumer_errors, consumer_errors
        assert {k for _, _, k in consumed} == set(acked), "the group consumed every ack"
        for part, off, k in consumed:  # at the acknowledged place; re-delivery after a
            assert acked[k] == (part, off)  # rebalance repeats a record, never moves it

        c = Consumer({"bootstrap.servers": others[0].bootstrap, "group.id": "ha-check",
                      "enable.auto.commit": False})
        c.assign([TopicPartition("ha", part, 0) for part in range(6)])
        log: dict[int, list[int]] = {part: [] for part in range(6)}
        deadline = time.monotonic() + 60
        while sum(map(len, log.values())) < total and time.monotonic() < deadline:
            for m in c.consume(1000, 0.5):
                assert m.error() is None, m.error()
                log[m.partition()].append(int(m.key()))
        c.close()
        for part, keys in log.items():  # no duplicate in the log, per-partition order kept
            assert keys == sorted(k for k in acked if k % 6 == part), part
    finally:
        stop_consumer.set()
        for b in brokers:
            b.stop()


def test_cluster_command_runs_brokers_that_see_each_other(tmp_path: Path) -> None:
    import json
    import signal
    import subprocess
    import sys

    from tests.support.broker import REPO

    shared = tmp_path / "shared"
    log = open(tmp_path / "cluster.log", "wb")  # noqa: SIM115 - a file, never a full pipe
    proc = subprocess.Popen(
        [sys.executable, "-m", "broker_service", "cluster", "--brokers", "2",
         "--port", "0", "--metrics-port", "0", "--data-dir", str(shared)],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        ready = [shared / "ready" / f"broker-{i}.json" for i in (1, 2)]
        log_tail = lambda: (tmp_path / "cluster.log").read_text()[-2000:]  # noqa: E731
        wait_until(lambda: proc.poll() is None and all(f.exists() for f in ready), 30,
                   lambda: f"brokers ready (exit {proc.poll()}): {log_tail()}")  # fmt: skip
        one, two = (f"127.0.0.1:{json.loads(f.read_text())['port']}" for f in ready)
        wait_for_value(lambda: sorted(AdminClient({"bootstrap.servers": one})
                                      .list_topics(timeout=5).brokers),
                       lambda brokers: brokers == [1, 2], 20, "both brokers in the cluster")
        # a topic created through broker 1 is served to clients that ask broker 2
        p = Producer({"bootstrap.servers": one})
        p.produce("shared-topic", value=b"hello")
        assert p.flush(15) == 0
        c = Consumer({"bootstrap.servers": two, "group.id": "x",
                      "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.assign([TopicPartition("shared-topic", 0, 0)])
        msg = wait_until(lambda: c.poll(0.5), 15, "the record, read through broker 2")
        c.close()
        assert msg.error() is None and msg.value() == b"hello"
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        log.close()


def test_one_group_coordinator_whichever_broker_clients_ask(tmp_path: Path) -> None:
    brokers = _cluster(tmp_path / "shared", 3, "file")
    consumers: list[Consumer] = []
    try:
        admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
        for f in admin.create_topics([NewTopic("grouped", 6, 1)]).values():
            f.result(10)
        for b in brokers:  # the cluster has formed: every broker sees all three
            wait_until(lambda b=b: sorted(AdminClient({"bootstrap.servers": b.bootstrap})
                                          .list_topics(timeout=5).brokers) == [1, 2, 3],
                       20, f"{b.bootstrap} never saw all brokers")  # fmt: skip
        assigned: list[set[int]] = [set(), set()]
        for i, b in enumerate(brokers[1:]):  # each consumer bootstraps from another broker
            c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "spread",
                          "session.timeout.ms": 6000, "enable.auto.commit": False})

            def on_assign(_c: Consumer, parts: list[TopicPartition], i: int = i) -> None:
                assigned[i] = {p.partition for p in parts}

            c.subscribe(["grouped"], on_assign=on_assign)
            consumers.append(c)
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            for c in consumers:
                c.poll(0.2)
            if assigned[0] and assigned[1] and assigned[0] | assigned[1] == set(range(6)):
                break
        assert assigned[0] and assigned[1], "both consumers joined the one group"
        assert not assigned[0] & assigned[1]
        assert assigned[0] | assigned[1] == set(range(6))
    finally:
        for c in consumers:
            c.close()
        for b in brokers:
            b.stop()


@pytest.mark.parametrize("wal", ["file", "object"])
def test_reassignment_while_producing_moves_no_data(tmp_path: Path, wal: str) -> None:
    from broker_service.control.reassignment import reassign

    brokers = _cluster(tmp_path / "shared", 2, wal)
    try:
        admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
        for f in admin.create_topics([NewTopic("moving", 1, 1)]).values():
            f.result(10)
        acked: dict[int, int] = {}

        def on_delivery(err: object, msg: object) -> None:
            if err is None:
                acked[int(msg.key())] = msg.offset()  # type: ignore[attr-defined]

        bootstrap = ",".join(b.bootstrap for b in brokers)
        p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 2,
                      "enable.idempotence": True})  # its sequences move with the partition
        timings = []
        for i in range(3000):
            p.produce("moving", key=str(i).encode(), value=f"v{i}".encode(),
                      on_delivery=on_delivery)
            p.poll(0)
            if i in (1000, 2000):  # move there and back while the producer keeps going;
                target = 2 if i == 1000 else 1  # ask the broker that does not lead it
                result = reassign(brokers[target - 1].bootstrap, "moving", 0, target)
                assert result.ok, result
                timings.append(result.seconds)
                wait_until(lambda t=target: _leaders(brokers[0].bootstrap, "moving") == {0: t},
                           5, "broker 1 never learned the new leader")  # within its refresh
        assert p.flush(30) == 0
        print(f"\n[{wal} WAL] reassignment took {[f'{t * 1000:.0f} ms' for t in timings]}")
        assert len(acked) == 3000
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "moved",
                      "enable.auto.commit": False})
        c.assign([TopicPartition("moving", 0, 0)])
        got: list[tuple[int, int]] = []
        deadline = time.monotonic() + 30
        while len(got) < 3000 and time.monotonic() < deadline:
            for m in c.consume(1000, 0.5):
                assert m.error() is None, m.error()
                got.append((m.offset(), int(m.key())))
        c.close()
        assert [o for o, _ in got] == list(range(3000)), "offsets dense: none handed out twice"
        assert sorted(k for _, k in got) == list(range(3000)), "no loss, no duplicate"
        assert all(acked[k] == o for o, k in got)
    finally:
        for b in brokers:
            b.stop()


@pytest.mark.slow
def test_zombie_leader_acknowledges_nothing_after_being_fenced(tmp_path: Path) -> None:
    """SIGSTOP the leader until it is fenced and its partition moved, then SIGCONT it: what it
    had in flight is not acknowledged, it stops serving, no offset is handed out twice."""
    brokers = _cluster(tmp_path / "shared", 2, "file")
    zombie, survivor = brokers
    try:
        admin = AdminClient({"bootstrap.servers": zombie.bootstrap})
        for f in admin.create_topics([NewTopic("undead", 1, 1)]).values():
            f.result(10)
        acked: dict[int, int] = {}
        failed: list[int] = []

        def on_delivery(err: object, msg: object) -> None:
            if err is None:
                acked[int(msg.key())] = msg.offset()  # type: ignore[attr-defined]
            else:
                failed.append(int(msg.key()))  # type: ignore[attr-defined]

        # it knows both brokers: a record the zombie refuses (NOT_LEADER_OR_FOLLOWER, "not
        # persisted") may be re-sent to the new leader, as Kafka allows; only the zombie's
        # own acknowledgements would be wrong
        direct = Producer({"bootstrap.servers": f"{zombie.bootstrap},{survivor.bootstrap}",
                           "acks": "all", "enable.idempotence": False, "retries": 0,
                           "message.timeout.ms": 30000, "linger.ms": 0})
        for i in range(500):
            direct.produce("undead", key=str(i).encode(), value=b"before", on_delivery=on_delivery)
        assert direct.flush(20) == 0 and len(acked) == 500

        zombie.pause()
        assert zombie.proc is not None
        stat = Path(f"/proc/{zombie.proc.pid}/stat")  # stopped for sure before we send it more
        wait_until(lambda: stat.read_text().rsplit(")", 1)[1].split()[0] == "T", 10,
                   "the leader to stop")  # fmt: skip
        raw = w.WireClient(zombie.port, timeout=30)  # one request we can watch ourselves
        raw.send(w.frame_of(w.produce_request(9, {"undead": {0: w.build_batch([b"raw"])}}), 7))
        for i in range(500, 600):  # in flight to a frozen leader
            direct.produce("undead", key=str(i).encode(), value=b"frozen", on_delivery=on_delivery)
        direct.poll(0.5)
        wait_until(lambda: _leaders(survivor.bootstrap, "undead") == {0: 2}, 30,
                   "the frozen leader's partition never moved")
        later = Producer({"bootstrap.servers": survivor.bootstrap, "acks": "all",
                          "enable.idempotence": False})
        for i in range(600, 700):
            later.produce("undead", key=str(i).encode(), value=b"after", on_delivery=on_delivery)
        assert later.flush(30) == 0

        zombie.resume()
        payload = raw.recv_frame()  # the zombie refuses (or closes), never acknowledges
        if payload is not None:
            _, resp = w.decode_response(0, 9, payload)
            code = int(resp.responses[0].partition_responses[0].error_code)
            assert code == 6, f"the zombie answered {code}, not NOT_LEADER_OR_FOLLOWER"
        raw.close()
        assert zombie.wait_exit(20) == 3, "the fenced zombie stops (exit code 3)"
        direct.flush(30)  # every frozen record is settled: re-sent and acknowledged, or failed
        assert len(acked) + len(failed) == 700, (len(acked), len(failed))

        c = Consumer({"bootstrap.servers": survivor.bootstrap, "group.id": "undead",
                      "enable.auto.commit": False})
        tp = TopicPartition("undead", 0, 0)
        c.assign([tp])
        _, end = c.get_watermark_offsets(tp, timeout=10)
        got: list[tuple[int, int]] = []

        def read_to_end() -> bool:
            for m in c.consume(1000, 0.5):
                assert m.error() is None, m.error()
                got.append((m.offset(), int(m.key())))
            return len(got) >= end

        wait_until(read_to_end, 30, lambda: f"read {len(got)} of {end}", interval=0)
        c.close()
        assert [o for o, _ in got] == list(range(end)), "no offset handed out twice"
        log = dict(got)
        wrong = {k: o for k, o in acked.items() if log.get(o) != k}
        # an acknowledgement from the fenced zombie would name an offset the survivor gave
        # to another record (or none): every acknowledged record is in the log, at its offset
        assert not wrong, f"acknowledged but not there: {sorted(wrong.items())[:10]}"
        assert all(o >= 600 for k, o in acked.items() if 500 <= k < 600), (
            "a frozen record was acknowledged before the survivor's own (by the zombie)")
    finally:
        for b in brokers:
            b.stop()  # resumes a paused one first


def test_sigterm_drains_partitions_to_the_others_at_once(tmp_path: Path) -> None:
    """Graceful stop (ECS sends SIGTERM): the broker hands its partitions over before it
    exits, far sooner than a lease expiry would move them; nothing acknowledged is lost."""
    from confluent_kafka import ElectionType

    brokers = start_all(cluster(tmp_path / "shared", 2, BROKER_LEASE_MS="30000",
                                BROKER_WAL="file", BROKER_UPLOAD_INTERVAL_MS="600000"))
    try:
        admin = AdminClient({"bootstrap.servers": brokers[0].bootstrap})
        for f in admin.create_topics([NewTopic("drained", 4, 1)]).values():
            f.result(10)
        wait_until(lambda: set(_leaders(brokers[0].bootstrap, "drained").values()) == {1, 2},
                   10, "a new topic's partitions spread over both")
        # leaders are alive: a preferred election has nothing to do
        fut = admin.elect_leaders(ElectionType.PREFERRED,
                                  [TopicPartition("drained", p) for p in range(4)])
        results = fut.result(10)
        assert all(e is not None and e.code() == 84 for e in results.values()), results
        p = Producer({"bootstrap.servers": brokers[0].bootstrap, "enable.idempotence": True})
        for i in range(400):
            p.produce("drained", key=str(i).encode(), value=b"x", partition=i % 4)
        assert p.flush(20) == 0
        stopped = time.monotonic()
        assert brokers[1].stop() == 0  # SIGTERM: drain, then exit
        took = time.monotonic() - stopped
        wait_for_value(lambda: _leaders(brokers[0].bootstrap, "drained"),  # broker 1 re-reads
                       lambda leaders: leaders == {0: 1, 1: 1, 2: 1, 3: 1}, 5,  # the store
                       "broker 1 leads every partition")  # within 0.5 s  # fmt: skip
        assert "drained: 2 partitions handed over" in brokers[1].log()
        print(f"\ndrained and stopped in {took:.2f}s (lease 30 s)")
        assert took < 10
        for i in range(400, 800):
            p.produce("drained", key=str(i).encode(), value=b"x", partition=i % 4)
        assert p.flush(20) == 0
        c = Consumer({"bootstrap.servers": brokers[0].bootstrap, "group.id": "drain-check",
                      "enable.auto.commit": False})
        c.assign([TopicPartition("drained", part, 0) for part in range(4)])
        keys: list[int] = []
        end = time.monotonic() + 20
        while len(keys) < 800 and time.monotonic() < end:
            keys += [int(m.key()) for m in c.consume(500, 0.5) if m.error() is None]
        c.close()
        assert sorted(keys) == list(range(800))
    finally:
        for b in brokers:
            b.stop()


def test_metadata_lists_every_broker_it_names_as_leader(tmp_path: Path) -> None:
    """A broker learns of a new broker on its lease renewal (a third of the lease, 20 s
    here), but of a new leader on its next metadata sync: a Metadata answer must not name a
    leader missing from its broker list, or clients cannot reach that partition until the
    next renewal (the recovery test waited 20 s for exactly that)."""
    from tests import kafka_wire as w

    first, second = cluster(tmp_path / "shared", 2, BROKER_LEASE_MS="60000")
    try:
        first.start()
        second.start()  # first does not know it yet
        with w.WireClient(second.port) as c:
            created = c.call(w.create_topics_request(7, ["named"], partitions=2))
            assert int(created.topics[0].error_code) == 0

        def answer() -> tuple[set[int], set[int]]:
            with w.WireClient(first.port) as c:
                md = c.call(w.metadata_request(12, ["named"]))
            leaders = {int(p.leader_id) for t in md.topics for p in t.partitions}
            return leaders, {int(b.node_id) for b in md.brokers}

        leaders, brokers = wait_for_value(answer, lambda a: a[0] == {1, 2}, 10,
                                          "broker 1 names both leaders")  # fmt: skip
        assert leaders <= brokers, f"leaders {leaders}, brokers listed {brokers}"
    finally:
        for b in (first, second):
            b.stop()


def _partitions(b: BrokerProcess, topic: str) -> tuple[set[int], list[tuple[int, int, int]]]:
    """(brokers listed, [(partition, error code, leader)]) of one Metadata answer of ``b``."""
    with w.WireClient(b.port) as c:
        md = c.call(w.metadata_request(12, [topic]))
    parts = [(int(p.partition_index), int(p.error_code), int(p.leader_id))
             for t in md.topics for p in t.partitions]  # fmt: skip
    return {int(x.node_id) for x in md.brokers}, sorted(parts)


def _unresolvable(listed: set[int], parts: list[tuple[int, int, int]]) -> list[str]:
    """Partitions a client could not use as answered: a leader not listed, or no leader
    without Kafka's LEADER_NOT_AVAILABLE (5)."""
    return [f"partition {p}: error {err}, leader {leader}, brokers {sorted(listed)}"
            for p, err, leader in parts
            if not ((err == 0 and leader in listed) or (err == 5 and leader == -1))]  # fmt: skip


def test_metadata_answers_a_dead_unfenced_leader_as_kafka_does(tmp_path: Path) -> None:
    """A broker stops answering (SIGSTOP): once its lease ran out the others leave it out of
    their broker list, and until recovery moves its partitions a Metadata answer named it
    as their leader anyway (a leader id the client cannot resolve). Kafka answers a
    partition whose leader is not alive with leader -1 and LEADER_NOT_AVAILABLE."""
    first, second = start_all(cluster(tmp_path / "shared", 2, BROKER_LEASE_MS="3000"))
    try:
        admin = AdminClient({"bootstrap.servers": first.bootstrap})
        for f in admin.create_topics([NewTopic("orphaned", 4, 1)]).values():
            f.result(10)
        wait_until(lambda: {leader for _, _, leader in _partitions(first, "orphaned")[1]}
                   == {1, 2}, 10, "the topic's partitions spread over both")  # fmt: skip
        second.pause()
        bad: list[str] = []
        seen_unlisted = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            listed, parts = _partitions(first, "orphaned")
            bad += _unresolvable(listed, parts)
            seen_unlisted |= 2 not in listed
            if {leader for _, _, leader in parts} == {1}:
                break
            time.sleep(0.02)
        assert not bad, "\n".join(bad[:10])
        assert seen_unlisted and {leader for _, _, leader in parts} == {1}, parts
        second.resume()
        assert second.wait_exit(30) == 3  # it finds itself fenced
    finally:
        for b in (first, second):
            b.kill()


def test_a_draining_broker_stays_listed_while_it_leads(tmp_path: Path) -> None:
    """SIGTERM: the broker becomes DRAINING and hands its partitions over one by one (each
    move 400 ms here). Kafka lists a broker in controlled shutdown until it is fenced; ours
    dropped it from the others' broker list at their next lease renewal while it still led
    the partitions not yet handed over, so they had no leader a client could resolve."""
    first, slow = start_all([
        BrokerProcess(tmp_path / "shared", BROKER_NODE_ID="1", BROKER_LEASE_MS="3000"),
        BrokerProcess(tmp_path / "shared", BROKER_NODE_ID="2", BROKER_LEASE_MS="3000",
                      BROKER_FAULT_METADATA_OPS="move_partition",
                      BROKER_FAULT_METADATA_LATENCY_MS="400"),
    ])  # fmt: skip
    try:
        admin = AdminClient({"bootstrap.servers": first.bootstrap})
        for f in admin.create_topics([NewTopic("draining", 8, 1)]).values():
            f.result(10)
        for b in (first, slow):  # both know the topic (the drainer hands over what it knows)
            wait_until(lambda b=b: {leader for _, _, leader in _partitions(b, "draining")[1]}
                       == {1, 2}, 10, "the topic's partitions spread over both")  # fmt: skip
        assert slow.proc is not None
        slow.proc.send_signal(signal.SIGTERM)
        bad: list[str] = []
        deadline = time.monotonic() + 60  # its stop is bounded by BROKER_STOP_TIMEOUT_MS
        while slow.alive() and time.monotonic() < deadline:
            listed, parts = _partitions(first, "draining")
            bad += _unresolvable(listed, parts)
            time.sleep(0.02)
        assert not slow.alive(), "still running a minute after SIGTERM"
        # its stop ended by fencing its registration, as Kafka's controlled shutdown ends (it
        # stayed DRAINING, listed, until its lease ran out and recovery fenced it)
        store = SqliteMetadataStore(tmp_path / "shared" / "metadata.sqlite")
        try:
            states = {b.broker_id: b.state for b in store.brokers()}
        finally:
            store.close()
        assert states == {1: "ACTIVE", 2: "FENCED"}, (states, slow.log())
        assert "drained: 4 partitions handed over" in slow.log(), slow.log()
        assert not bad, "\n".join(bad[:10])
        wait_until(lambda: _partitions(first, "draining") == ({1}, [(p, 0, 1) for p in range(8)]),
                   10, lambda: f"broker 1 lists only itself and leads all: "
                               f"{_partitions(first, 'draining')}")  # fmt: skip
    finally:
        for b in (first, slow):
            b.kill()


def _describe_cluster(b: BrokerProcess, version: int, fenced_too: bool = False) -> dict[int, bool]:
    """DescribeCluster of ``b``: broker id -> is_fenced (False below v2, which has no flag)."""
    m = w.schema_module(60, version)
    kw: dict[str, object] = {"include_cluster_authorized_operations": False}
    if version >= 2:
        kw["include_fenced_brokers"] = fenced_too
    with w.WireClient(b.port) as c:
        r = c.call(m.DescribeClusterRequest(**kw))
    assert int(r.error_code) == 0, r
    return {int(x.broker_id): bool(getattr(x, "is_fenced", False)) for x in r.brokers}


def test_describe_cluster_v2_lists_fenced_brokers_when_asked(tmp_path: Path) -> None:
    """DescribeCluster v2 (Kafka 3.9, KIP-1073: `describeCluster(new DescribeClusterOptions()
    .includeFencedBrokers(true))`) lists the registered brokers that are fenced too, with
    is_fenced; without the flag, and below v2, only the live ones. We advertised v0-1 only:
    a 3.9 or 4.0 AdminClient asking for fenced brokers got UnsupportedVersionException."""
    first, second = start_all(cluster(tmp_path / "shared", 2, BROKER_LEASE_MS="3000"))
    try:
        assert _describe_cluster(first, 2, fenced_too=True) == {1: False, 2: False}
        second.kill()
        wait_until(lambda: _describe_cluster(first, 2, fenced_too=True) == {1: False, 2: True},
                   30, lambda: f"broker 2 fenced: {_describe_cluster(first, 2, True)}")
        assert _describe_cluster(first, 2) == {1: False}
        assert _describe_cluster(first, 1) == {1: False}
    finally:
        for b in (first, second):
            b.kill()
