"""DescribeLogDirs (``kafka-log-dirs``) and DescribeTopicPartitions with paging (issue 17,
item 6), through kafka-python's admin and raw kio requests, on both backends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka.admin import KafkaAdminClient

from tests.integration.surface import Surface, kio, surface_fixture, unique

surface = surface_fixture()
RECORD = b"r" * 1000


@pytest.fixture
def kp_admin(surface: Surface) -> Iterator[KafkaAdminClient]:
    a = KafkaAdminClient(bootstrap_servers=surface.bootstrap, request_timeout_ms=30000)
    yield a
    a.close()


def _create(surface: Surface, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": surface.bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)


def test_log_dirs_report_each_partitions_size(surface: Surface, kp_admin: KafkaAdminClient) -> None:
    name = unique("logdirs")
    _create(surface, name, 3)
    p = Producer({"bootstrap.servers": surface.bootstrap, "linger.ms": 5})
    for partition, n in ((0, 200), (1, 20)):  # partition 2 stays empty
        for _ in range(n):
            p.produce(name, RECORD, partition=partition)
    assert p.flush(30) == 0

    (broker,) = kp_admin.describe_log_dirs(topic_partitions=[name])
    assert broker["broker"] == 1
    (result,) = broker["log_dirs"]  # one logical dir: the object store
    assert result["error_code"] == 0
    if surface.backend == "embedded":
        assert result["log_dir"] == str(surface.broker.data_dir.resolve() / "objects")
    else:
        assert result["log_dir"].startswith("s3://surface-")
    (topic,) = result["topics"]
    sizes = {q["partition_index"]: q["partition_size"] for q in topic["partitions"]}
    assert sorted(sizes) == [0, 1, 2]
    assert sizes[0] >= 200 * len(RECORD) > sizes[1] >= 20 * len(RECORD) and sizes[2] == 0

    resp = surface.call(kio(35, 4, "DescribeLogDirsRequest", topics=(
        kio(35, 4, "DescribableLogDirTopic", topic=name, partitions=(1,)),
    )))  # fmt: skip
    (res,) = resp.results
    assert (int(resp.error_code), int(res.error_code), res.total_bytes) == (0, 0, -1)
    assert [(t.name, [(q.partition_index, q.partition_size) for q in t.partitions])
            for t in res.topics] == [(name, [(1, sizes[1])])]  # fmt: skip
    everything = surface.call(kio(35, 1, "DescribeLogDirsRequest", topics=None))
    assert name in {t.name for r in everything.results for t in r.topics}


def test_describe_topic_partitions_pages(surface: Surface, kp_admin: KafkaAdminClient) -> None:
    prefix = unique("dtp")
    a, b = f"{prefix}-a", f"{prefix}-b"
    _create(surface, a, 3)
    _create(surface, b, 2)
    pages = []
    cursor = None
    while True:
        got = kp_admin.describe_topic_partitions([b, a], response_partition_limit=2, cursor=cursor)
        pages.append([(t["name"], [q["partition_index"] for q in t["partitions"]])
                      for t in got["topics"]])  # fmt: skip
        cursor = got["next_cursor"]
        if cursor is None:
            break
    assert pages == [[(a, [0, 1])], [(a, [2]), (b, [0])], [(b, [1])]]
    one = kp_admin.describe_topic_partitions([a])["topics"][0]
    assert one["error_code"] == 0 and one["is_internal"] is False
    assert [q["leader_id"] for q in one["partitions"]] == [1, 1, 1]
    assert one["topic_authorized_operations"] > 0

    missing = unique("missing")
    resp = surface.call(kio(75, 0, "DescribeTopicPartitionsRequest",
        topics=(kio(75, 0, "TopicRequest", name=missing),), response_partition_limit=10,
        cursor=None))  # fmt: skip
    assert [(t.name, int(t.error_code)) for t in resp.topics] == [(missing, 3)]
    bad_cursor = surface.call(kio(75, 0, "DescribeTopicPartitionsRequest",
        topics=(kio(75, 0, "TopicRequest", name=a),), response_partition_limit=10,
        cursor=kio(75, 0, "Cursor", topic_name=b, partition_index=0)))  # fmt: skip
    assert [int(t.error_code) for t in bad_cursor.topics] == [42]  # INVALID_REQUEST
    every = surface.call(kio(75, 0, "DescribeTopicPartitionsRequest", topics=(),
                             response_partition_limit=2000, cursor=None))  # fmt: skip
    assert {a, b} <= {t.name for t in every.topics}
