"""A broker on S3 + DynamoDB (moto server over HTTP) with the object WAL keeps no local state:
after SIGKILL and the loss of its whole data directory, a new broker process serves every
acknowledged record, once, at its offset."""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from broker_service.metadata.dynamodb import DynamoDbMetadataStore
from tests.support.broker import BrokerProcess


def _broker(data: Path, bucket: str, table: str, endpoint: str) -> BrokerProcess:
    return BrokerProcess(
        data,
        BROKER_STORAGE=f"s3://{bucket}/cluster-a",
        BROKER_METADATA=f"dynamodb://{table}",
        BROKER_WAL="object",
        AWS_ENDPOINT_URL=endpoint,
    )


def test_object_wal_on_s3_and_dynamodb_survives_losing_the_broker(
    tmp_path: Path, s3_bucket: str, aws_env: str, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_env)
    table = f"meta-{uuid.uuid4().hex[:8]}"
    DynamoDbMetadataStore(table=table).create_table()

    first = _broker(tmp_path / "a", s3_bucket, table, aws_env).start()
    acked: dict[int, int] = {}

    def on_delivery(err: object, msg: object) -> None:
        if err is None:
            acked[int(msg.key())] = msg.offset()  # type: ignore[attr-defined]

    try:
        p = Producer({"bootstrap.servers": first.bootstrap, "acks": "all", "linger.ms": 5})
        for i in range(3000):
            p.produce("cloudy", key=str(i).encode(), value=f"v{i}".encode(),
                      on_delivery=on_delivery)
            if i % 500 == 0:
                p.poll(0)
        assert p.flush(60) == 0
        assert len(acked) == 3000
    finally:
        first.kill()
    local = [p for p in (tmp_path / "a").rglob("*") if p.is_file()]
    assert local == [], f"the broker wrote local state: {local}"
    shutil.rmtree(tmp_path / "a", ignore_errors=True)  # the task's disk is gone with it

    second = _broker(tmp_path / "b", s3_bucket, table, aws_env).start()
    try:
        c = Consumer({"bootstrap.servers": second.bootstrap, "group.id": "cloud",
                      "enable.auto.commit": False})
        c.assign([TopicPartition("cloudy", 0, 0)])
        got: list[tuple[int, int, bytes]] = []
        deadline = time.monotonic() + 60
        while len(got) < 3000 and time.monotonic() < deadline:
            for m in c.consume(1000, 0.5):
                assert m.error() is None, m.error()
                got.append((m.offset(), int(m.key()), m.value()))
        c.close()
        assert [o for o, _, _ in got] == list(range(3000))
        assert all(acked[k] == o and v == f"v{k}".encode() for o, k, v in got)
    finally:
        second.stop()
