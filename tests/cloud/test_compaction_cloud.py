"""The compaction Lambda handler, invoked with a real EventBridge scheduled-event JSON, on
S3 + DynamoDB (moto server over HTTP) under a real broker with the object WAL and a real
Kafka client. Lambda itself needs Docker, so the handler is called directly with a stand-in
for the runtime's context object (the only in-process stand-in here)."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from broker_service.metadata.dynamodb import DynamoDbMetadataStore
from tests.cloud.conftest import s3_client
from tests.integration.compaction_helpers import (
    SMALL_OBJECTS_ENV,
    all_batches,
    create_topic,
    produce_rounds,
)
from tests.support.broker import BrokerProcess

EVENT = Path(__file__).resolve().parent.parent / "fixtures" / "scheduled_event.json"


@dataclass
class LambdaContextStandIn:
    """What the Lambda runtime passes as ``context`` (the attributes powertools reads)."""

    function_name: str = "broker-test-compaction"
    function_version: str = "$LATEST"
    invoked_function_arn: str = (
        "arn:aws:lambda:us-east-1:123456789012:function:broker-test-compaction"
    )
    memory_limit_in_mb: int = 512
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
    log_group_name: str = "/aws/lambda/broker-test-compaction"
    log_stream_name: str = "2026/11/25/[$LATEST]abcdef"
    remaining_ms: int = 900_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def _objects(bucket: str, endpoint: str) -> list[tuple[str, int]]:
    resp = s3_client(endpoint).list_objects_v2(Bucket=bucket, Prefix="cluster-a/")
    return [(o["Key"], o["Size"]) for o in resp.get("Contents", [])]


@pytest.fixture
def cloud_setup(
    tmp_path: Path, s3_bucket: str, aws_env: str, monkeypatch: pytest.MonkeyPatch
) -> Any:
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_env)
    table = f"meta-{uuid.uuid4().hex[:8]}"
    DynamoDbMetadataStore(table=table).create_table()
    broker = BrokerProcess(
        tmp_path / "data",
        BROKER_STORAGE=f"s3://{s3_bucket}/cluster-a",
        BROKER_METADATA=f"dynamodb://{table}",
        BROKER_WAL="object",
        BROKER_WAL_FLUSH_MS="5",
        AWS_ENDPOINT_URL=aws_env,
        **SMALL_OBJECTS_ENV,
    ).start()
    for name, value in {
        "TENANT": "test",
        "METADATA_TABLE": table,
        "STORAGE_URI": f"s3://{s3_bucket}/cluster-a",
        "METRICS_NAMESPACE": "BrokerServiceTest",
        "POWERTOOLS_SERVICE_NAME": "compaction",
        "COMPACTION_TARGET_OBJECT_BYTES": str(1 << 20),
    }.items():
        monkeypatch.setenv(name, value)
    try:
        yield broker, s3_bucket, aws_env
    finally:
        broker.stop()


def test_handler_compacts_on_s3_and_dynamodb(
    cloud_setup: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from functions.compaction.handler import handler

    broker, bucket, endpoint = cloud_setup
    topic = f"cloudy-{uuid.uuid4().hex[:6]}"
    create_topic(broker.bootstrap, topic)
    produce_rounds(broker.bootstrap, topic, rounds=15, per_round=20)
    before = all_batches(broker.port, topic)
    objects_before = _objects(bucket, endpoint)
    assert len(objects_before) >= 15
    event = json.loads(EVENT.read_text())

    # a scheduled run: merges, keeps the replaced objects for the grace period
    monkeypatch.setenv("COMPACTION_REPLACED_GRACE_MS", "600000")
    out = handler(event, LambdaContextStandIn())
    assert out["skipped"] is None and out["swaps"] >= 1 and out["objects_deleted"] == 0
    assert out["ranges_merged"] >= 15 and out["conflicts"] == 0
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines()
           if line.startswith("{") and "_aws" in line]
    assert any(m.get("CompactionSwaps") == [out["swaps"]] and m.get("Tenant") == "test"
               for m in emf), emf
    assert all_batches(broker.port, topic) == before

    # the next run, past the grace period, deletes what was replaced
    monkeypatch.setenv("COMPACTION_REPLACED_GRACE_MS", "0")
    out = handler(event, LambdaContextStandIn())
    assert out["objects_deleted"] >= len(objects_before) - 1
    objects_after = _objects(bucket, endpoint)
    assert len(objects_after) < len(objects_before) // 5
    assert all_batches(broker.port, topic) == before  # the leader follows the swap


def test_two_concurrent_invocations_one_runs(
    cloud_setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from functions.compaction.handler import handler

    broker, _bucket, _endpoint = cloud_setup
    topic = f"race-{uuid.uuid4().hex[:6]}"
    create_topic(broker.bootstrap, topic)
    produce_rounds(broker.bootstrap, topic, rounds=10, per_round=20)
    before = all_batches(broker.port, topic)
    monkeypatch.setenv("COMPACTION_REPLACED_GRACE_MS", "0")
    event = json.loads(EVENT.read_text())
    outs: list[dict[str, Any]] = []
    barrier = threading.Barrier(2)

    def invoke() -> None:
        barrier.wait()
        outs.append(handler(event, LambdaContextStandIn()))

    threads = [threading.Thread(target=invoke) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(outs) == 2
    assert [o["skipped"] is None for o in outs].count(True) >= 1
    assert all_batches(broker.port, topic) == before


def test_compactor_shards_run_at_once_on_s3_and_dynamodb(
    cloud_setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """COMPACTION_SHARDS=2 (the stacks' compaction_shards): the schedule's two targets, the
    scheduled event with detail {"shard": 0} and {"shard": 1}, both run at the same time under
    leases of their own and merge objects of their own time buckets; the data is unchanged."""
    from broker_service.control.compaction import object_created_ms
    from functions.compaction.handler import handler

    broker, bucket, endpoint = cloud_setup
    topic = f"shards-{uuid.uuid4().hex[:6]}"
    create_topic(broker.bootstrap, topic)
    produce_rounds(broker.bootstrap, topic, rounds=16, per_round=20)
    before = all_batches(broker.port, topic)
    created = sorted(t for k, _ in _objects(bucket, endpoint)
                     if (t := object_created_ms(k)) is not None)  # fmt: skip
    monkeypatch.setenv("COMPACTION_REPLACED_GRACE_MS", "0")
    monkeypatch.setenv("COMPACTION_SHARDS", "2")
    # ~4 buckets over the objects' times: each shard gets runs of several objects (1 ms
    # buckets gave each object's range no neighbour of its own shard to merge with)
    bucket_ms = max(1, (created[-1] - created[0]) // 3)
    monkeypatch.setenv("COMPACTION_SHARD_BUCKET_MS", str(bucket_ms))
    event = json.loads(EVENT.read_text())
    with pytest.raises(ValueError, match="shard 2 but COMPACTION_SHARDS=2"):
        handler({**event, "detail": {"shard": 2}}, LambdaContextStandIn())
    outs: dict[int, dict[str, Any]] = {}
    barrier = threading.Barrier(2)

    def invoke(shard: int) -> None:
        barrier.wait()
        outs[shard] = handler({**event, "detail": {"shard": shard}}, LambdaContextStandIn())

    threads = [threading.Thread(target=invoke, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert set(outs) == {0, 1}
    assert all(o["skipped"] is None and o["swaps"] >= 1 for o in outs.values()), outs
    assert outs[1]["objects_deleted"] == 0  # garbage collection is shard 0's
    assert all_batches(broker.port, topic) == before
