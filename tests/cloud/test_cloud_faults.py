"""Faults under a broker on S3 + DynamoDB with the object WAL (moto server over HTTP):
a flaky S3 delays acknowledgements but loses and duplicates nothing; a fenced broker never
acknowledges again and stops."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from broker_service.metadata.dynamodb import DynamoDbMetadataStore
from tests.cloud.fault_proxy import HANG, LOSE_RESPONSE, SLOWDOWN, FaultProxy
from tests.support.broker import BrokerProcess


def _produce(
    bootstrap: str, topic: str, n: int, start: int = 0, chunk: int = 0
) -> dict[int, int]:
    """Produce n records (acks=all); with ``chunk``, flush every chunk records so the WAL
    makes many small flushes. Returns {record number: acknowledged offset}."""
    acked: dict[int, int] = {}

    def on_delivery(err: object, msg: object) -> None:
        if err is None:
            acked[int(msg.key())] = msg.offset()  # type: ignore[attr-defined]

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                  "enable.idempotence": False, "message.timeout.ms": 120000,
                  "request.timeout.ms": 60000, "max.in.flight": 5})
    for i in range(start, start + n):
        p.produce(topic, key=str(i).encode(), value=f"v{i}".encode(), on_delivery=on_delivery)
        if i % 200 == 0:
            p.poll(0)
        if chunk and (i + 1 - start) % chunk == 0:
            p.flush(150)
    p.flush(150)
    return acked


def _consume(bootstrap: str, topic: str, expect: int) -> list[tuple[int, int]]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "faults",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    got: list[tuple[int, int]] = []
    deadline = time.monotonic() + 60
    while len(got) < expect and time.monotonic() < deadline:
        for m in c.consume(1000, 0.5):
            assert m.error() is None, m.error()
            got.append((m.offset(), int(m.key())))
    c.close()
    return got


@pytest.mark.slow
def test_flaky_s3_loses_and_duplicates_nothing(
    tmp_path: Path, s3_bucket: str, aws_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_env)
    table = f"meta-{uuid.uuid4().hex[:8]}"
    DynamoDbMetadataStore(table=table).create_table()
    with FaultProxy(aws_env, hang_seconds=1.0) as proxy:
        proxy.chaos(0.1, (SLOWDOWN, LOSE_RESPONSE, HANG))
        broker = BrokerProcess(
            tmp_path / "data", BROKER_STORAGE=f"s3://{s3_bucket}/flaky",
            BROKER_METADATA=f"dynamodb://{table}", BROKER_WAL="object",
            AWS_ENDPOINT_URL=aws_env, AWS_ENDPOINT_URL_S3=proxy.endpoint,
        ).start()
        try:
            acked = _produce(broker.bootstrap, "flaky", 4000, chunk=50)
            faults = [s for _, _, s in proxy.seen if s >= 500]
            assert faults, "the proxy injected faults"
        finally:
            broker.stop()
    assert len(acked) == 4000, "acks=all producers succeed through retries"
    # read back on a clean path: every acknowledged record once, at its offset
    reader = BrokerProcess(
        tmp_path / "data2", BROKER_STORAGE=f"s3://{s3_bucket}/flaky",
        BROKER_METADATA=f"dynamodb://{table}", BROKER_WAL="object", AWS_ENDPOINT_URL=aws_env,
    ).start()
    try:
        got = _consume(reader.bootstrap, "flaky", 4000)
    finally:
        reader.stop()
    assert [o for o, _ in got] == list(range(4000))
    assert sorted(k for _, k in got) == list(range(4000)), "no loss, no duplicate"
    assert all(acked[k] == o for o, k in got)


def test_fenced_broker_never_acknowledges_and_stops(
    tmp_path: Path, s3_bucket: str, aws_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_env)
    table = f"meta-{uuid.uuid4().hex[:8]}"
    store = DynamoDbMetadataStore(table=table)
    store.create_table()
    env = dict(BROKER_STORAGE=f"s3://{s3_bucket}/fence", BROKER_METADATA=f"dynamodb://{table}",
               BROKER_WAL="object", AWS_ENDPOINT_URL=aws_env)
    broker = BrokerProcess(tmp_path / "a", **env).start()
    try:
        before = _produce(broker.bootstrap, "fenced", 500)
        assert len(before) == 500
        store.register_broker(1, "elsewhere", 1, None, 1000)  # a new epoch: the old one is fenced
        p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all",
                      "message.timeout.ms": 8000})
        after: list[int] = []
        for i in range(500, 600):
            p.produce("fenced", key=str(i).encode(), value=b"late",
                      on_delivery=lambda err, msg: after.append(msg.offset()) if err is None
                      else None)
        p.poll(0.5)  # sent to the fenced broker
        assert broker.wait_exit(15) == 3, "the fenced broker stops with exit code 3"
        # it is gone: nothing more can come from it; what is still queued is dropped, the
        # delivery reports of everything are collected
        p.purge()
        p.flush(15)
        assert after == [], "a fenced broker acknowledged a write"
    finally:
        broker.kill()
    reader = BrokerProcess(tmp_path / "b", **env).start()
    try:
        got = _consume(reader.bootstrap, "fenced", 500)
    finally:
        reader.stop()
    assert sorted(k for _, k in got) == list(range(500))
