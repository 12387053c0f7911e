"""A broker serving a partition led in another zone to a tailing consumer long-polls the
leader for new commits (DESIGN.md section 10; kafka/replicas.py): one poll per leader for
every waiting partition, not a query per fetch.

Found with bench/zones.py's per-API inter-broker byte counts (issue 19): every ReplicaState
request went out on the query channel and none on the poll channel, because a partition's
new shadow was dropped as idle the moment it was made (its last use was 0.0 on the monotonic
clock, which counts from the host's boot), so each fetch made a new one and asked the leader
for the partition's ranges again.
"""

from __future__ import annotations

from pathlib import Path

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from tests.support.wait import wait_until
from tests.zone_cluster import start_zone_cluster

TOPIC = "tailing"
PARTITIONS = 3
RECORDS = 60
REPLICA_STATE = "32101"


def test_a_tailing_consumer_in_another_zone_is_served_by_long_polls(tmp_path: Path) -> None:
    cluster = start_zone_cluster(tmp_path / "data", BROKER_WAL="file",
                                 BROKER_UPLOAD_INTERVAL_MS="200")  # fmt: skip
    try:
        admin = AdminClient({"bootstrap.servers": cluster.admin})
        for f in admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)]).values():
            f.result(20)
        consumer = Consumer({
            "bootstrap.servers": cluster.bootstrap("b"), "client.id": "tail;az=b",
            "group.id": "tail", "auto.offset.reset": "earliest",
        })  # fmt: skip
        consumer.subscribe([TOPIC])
        producer = Producer({"bootstrap.servers": cluster.bootstrap("a"),
                             "client.id": "writer;az=a", "linger.ms": 0})  # fmt: skip
        got: set[bytes] = set()
        sent = 0

        def tail() -> bool:
            nonlocal sent
            if sent < RECORDS:  # a record at a time: the consumer waits at the end
                producer.produce(TOPIC, f"r{sent}".encode(), partition=sent % PARTITIONS)
                producer.flush(10)
                sent += 1
            for m in consumer.consume(100, 0.05):
                if m.error() is None and m.value() is not None:
                    got.add(m.value())
            return len(got) == RECORDS

        wait_until(tail, 90, lambda: f"{len(got)} of {RECORDS} records consumed", 0)
        consumer.close()
        zone_b = cluster.racks.index("b")
        sent_by_b = cluster.inter_broker_requests(zone_b)
    finally:
        cluster.stop()
    polls = sent_by_b.get((REPLICA_STATE, "replica-poll"), 0)
    queries = sent_by_b.get((REPLICA_STATE, "replica"), 0)
    print(f"\nbroker in zone b: {polls} long polls, {queries} queries; {sent_by_b}")
    # the two partitions led elsewhere are loaded once each (a few more when a fetch runs
    # ahead of what is known); the commits that follow arrive by long poll
    assert polls > 0, sent_by_b
    assert queries <= 4 * PARTITIONS, sent_by_b
