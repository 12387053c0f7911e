"""The local flow on LocalStack community, on the host (no Docker): what it proves.

1. `cdklocal deploy -c flavour=local` deploys the tenant's deployable part (bucket, queues,
   EventBridge rule, alarms) and nothing LocalStack community cannot run (ECS, Lambda,
   DynamoDB).
2. Brokers keep their data in LocalStack's S3 (the deployed bucket) and serve real Kafka clients
   over TCP; a replacement broker serves every acknowledged record after the first is killed.
   Metadata: the embedded SQLite file (the default local flow) or moto server's DynamoDB (the
   stateless flow; LocalStack's own DynamoDB downloads Java at run time, see docs/LOCALSTACK.md).
3. Broker metrics (EMF lines on the broker's stdout) reach LocalStack's CloudWatch through
   broker_service.ops.localstack_bridge; the deployed throughput alarm fires, and its state
   change event goes through the deployed EventBridge rule to the control-events SQS queue.

Everything runs as real processes over HTTP / TCP on 127.0.0.1; every process is stopped by
its PID (LocalStack by tests/localstack/conftest.py, even after a failure).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from broker_service.control.sizing import (
    DEFAULT_READ_FANOUT,
    BrokerCapacity,
    produce_alarm_thresholds,
)
from broker_service.metadata.dynamodb import DynamoDbMetadataStore
from tests.localstack.conftest import (
    ACCOUNT,
    REGION,
    TENANT_KNOBS,
    DeployedTenant,
    LocalStackHost,
    _without_aws,
)
from tests.support.broker import REPO, BrokerProcess
from tests.support.clients import (
    assert_records,
    confluent_produce,
    kafka_python_consume,
    make_records,
)
from tests.support.wait import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]  # first test may install LocalStack

N_RECORDS = 2000


def test_cdklocal_deploys_the_local_flavour(
    localstack_host: LocalStackHost, deployed_tenant: DeployedTenant
) -> None:
    pins = json.loads((REPO / "package.json").read_text())["devDependencies"]
    installed = json.loads((REPO / "node_modules/aws-cdk-local/package.json").read_text())
    assert installed["version"] == pins["aws-cdk-local"]

    t = deployed_tenant.name
    out = deployed_tenant.outputs
    bucket = f"kafka-{t}-data-{ACCOUNT}-{REGION}"
    assert out["BucketName"] == bucket
    assert out["StorageUri"] == f"s3://{bucket}/data"
    localstack_host.client("s3").head_bucket(Bucket=bucket)

    cfn = localstack_host.client("cloudformation")
    (stack,) = cfn.describe_stacks(StackName=f"Kafka-{t}-Local")["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    types = {
        r["ResourceType"]
        for r in cfn.list_stack_resources(StackName=f"Kafka-{t}-Local")["StackResourceSummaries"]
    }
    assert types >= {
        "AWS::S3::Bucket", "AWS::SQS::Queue", "AWS::Events::Rule", "AWS::CloudWatch::Alarm"
    }  # fmt: skip
    assert not {x for x in types if x.split("::")[1] in ("ECS", "Lambda", "DynamoDB", "EC2")}

    alarms = {
        a["AlarmName"]: a
        for a in localstack_host.client("cloudwatch").describe_alarms(
            AlarmNamePrefix=f"kafka-{t}-"
        )["MetricAlarms"]
    }
    high = alarms[f"kafka-{t}-throughput-high"]
    assert (high["Namespace"], high["MetricName"], high["Dimensions"]) == (
        f"Kafka/{t}",
        "BytesIn",
        [],
    )
    assert (high["Period"], high["EvaluationPeriods"]) == (10, 1)
    # The one sizing model (control/sizing.py), scaled to the 10 s local period: one broker
    # sized for 0.0001 MB/s of produce (0.0001 x 91.8 / 102.3 MB/s of consume) carries
    # 0.0000473 MB/s of produce read once; the alarm is at 80 % of it: 37.8 B/s, 378 bytes
    # in 10 s.
    expected = produce_alarm_thresholds(
        BrokerCapacity.for_produce(float(TENANT_KNOBS["target_mbps_per_broker"])),
        int(TENANT_KNOBS["min_brokers"]),
        DEFAULT_READ_FANOUT,
    )
    assert high["Threshold"] == pytest.approx(expected.high_bytes_per_s * 10)
    assert high["Threshold"] == pytest.approx(
        0.8 * 10 / (1 / 100 + 1 / (100 * 91.8 / 102.3)), rel=1e-6
    )

    events = localstack_host.client("events")
    rule = events.describe_rule(Name=f"kafka-{t}-throughput-alarms")
    pattern = json.loads(rule["EventPattern"])
    assert pattern["source"] == ["aws.cloudwatch"]
    assert pattern["detail-type"] == ["CloudWatch Alarm State Change"]
    assert sorted(pattern["resources"]) == sorted(
        alarms[f"kafka-{t}-throughput-{x}"]["AlarmArn"] for x in ("high", "low")
    )
    (target,) = events.list_targets_by_rule(Rule=f"kafka-{t}-throughput-alarms")["Targets"]
    assert target["Arn"] == f"arn:aws:sqs:{REGION}:{ACCOUNT}:kafka-{t}-control-events"


def _objects(host: LocalStackHost, bucket: str, prefix: str) -> list[str]:
    pages = (
        host.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    )
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


@pytest.mark.parametrize("metadata", ["sqlite", "moto-dynamodb"])
def test_brokers_on_localstack_s3_serve_clients_and_restart_without_loss(
    metadata: str,
    localstack_host: LocalStackHost,
    deployed_tenant: DeployedTenant,
    moto_endpoint: str,
    tmp_path: Path,
) -> None:
    bucket = deployed_tenant.outputs["BucketName"]
    prefix = f"data/{metadata}-{uuid.uuid4().hex[:8]}"
    env = {
        **localstack_host.aws_env,
        "BROKER_STORAGE": f"s3://{bucket}/{prefix}",
        "BROKER_WAL": "object",  # every acknowledged batch is an object in LocalStack's S3
        "BROKER_METRICS_PORT": "0",
    }
    if metadata == "sqlite":
        env["BROKER_METADATA"] = str(tmp_path / "metadata.sqlite")  # outlives the brokers
    else:
        table = f"meta-{uuid.uuid4().hex[:8]}"
        env["BROKER_METADATA"] = f"dynamodb://{table}"
        env["AWS_ENDPOINT_URL_DYNAMODB"] = moto_endpoint
        dynamodb = localstack_host.client("dynamodb", endpoint_url=moto_endpoint)
        DynamoDbMetadataStore(table=table, client=dynamodb).create_table()

    topic = f"local-{metadata}"
    records = make_records("confluent", "lz4", N_RECORDS)
    first = BrokerProcess(tmp_path / "first", None, **env).start()
    try:
        confluent_produce(first.bootstrap, topic, records, "lz4")  # acks=all, every one acked
    finally:
        first.kill()  # SIGKILL: nothing flushed on the way out
    assert _objects(localstack_host, bucket, prefix), "no object in LocalStack's bucket"
    local = [p for p in (tmp_path / "first").rglob("*") if p.is_file()]
    assert local == [], f"the broker kept local state: {local}"
    shutil.rmtree(tmp_path / "first", ignore_errors=True)  # its disk is gone with it

    second = BrokerProcess(tmp_path / "second", None, **env).start()
    try:
        assert_records(kafka_python_consume(second.bootstrap, topic, N_RECORDS), records)
    finally:
        second.stop()


@pytest.fixture
def bridge(
    localstack_host: LocalStackHost, deployed_tenant: DeployedTenant, tmp_path: Path
) -> Iterator[tuple[Path, Path]]:
    """broker_service.ops.localstack_bridge following a broker log that does not exist yet;
    yields (broker log path, bridge log path); stopped by its PID."""
    broker_log = tmp_path / "broker.log"
    bridge_log = tmp_path / "bridge.log"
    env = {
        **_without_aws(os.environ),
        **localstack_host.aws_env,
        "PYTHONPATH": str(REPO),
    }
    cmd = [sys.executable, "-m", "broker_service.ops.localstack_bridge", "--follow",
           str(broker_log), "--alarm-prefix", f"kafka-{deployed_tenant.name}-",
           "--alarm-poll-s", "0.5"]  # fmt: skip
    with bridge_log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    try:
        _wait(lambda: "alarm history read" in bridge_log.read_text(), 30, "bridge start")
        yield broker_log, bridge_log
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


def _wait(ready: Any, timeout: float, what: str) -> Any:
    return wait_until(ready, timeout, what, interval=0.5)


def test_broker_metrics_reach_cloudwatch_and_the_alarm_event_reaches_sqs(
    localstack_host: LocalStackHost,
    deployed_tenant: DeployedTenant,
    bridge: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    broker_log, bridge_log = bridge
    t = deployed_tenant.name
    bucket = deployed_tenant.outputs["BucketName"]
    broker = BrokerProcess(
        tmp_path / "broker",
        None,
        **localstack_host.aws_env,
        BROKER_STORAGE=f"s3://{bucket}/data/metrics-{uuid.uuid4().hex[:8]}",
        BROKER_METRICS_NAMESPACE=f"Kafka/{t}",  # EMF lines on stdout, as on ECS
        BROKER_METRICS_INTERVAL_S="1",
        BROKER_METRICS_PORT="0",
    )
    broker.log_path = broker_log  # stdout (EMF) and stderr (logs) go where the bridge reads
    cloudwatch = localstack_host.client("cloudwatch")
    sqs = localstack_host.client("sqs")
    queue = sqs.get_queue_url(QueueName=f"kafka-{t}-control-events")["QueueUrl"]
    dlq = sqs.get_queue_url(QueueName=f"kafka-{t}-control-dlq")["QueueUrl"]
    started = datetime.now(UTC)
    broker.start()
    try:
        records = make_records("confluent", "none", N_RECORDS)
        payload = sum(len(r.value or b"") for r in records)
        confluent_produce(broker.bootstrap, "metered", records, "none")

        def bytes_in(dimensions: list[dict[str, str]]) -> float:
            points = cloudwatch.get_metric_statistics(
                Namespace=f"Kafka/{t}",
                MetricName="BytesIn",
                Dimensions=dimensions,
                StartTime=started - timedelta(minutes=1),
                EndTime=datetime.now(UTC) + timedelta(minutes=1),
                Period=60,
                Statistics=["Sum"],
            )["Datapoints"]
            return float(sum(p["Sum"] for p in points))

        # Per broker (as the EMF line says) and the cluster-wide series the alarm watches.
        _wait(lambda: bytes_in([{"Name": "BrokerId", "Value": "1"}]) >= payload, 60,
              "BytesIn of broker 1 in CloudWatch")  # fmt: skip
        assert bytes_in([]) >= payload

        def alarm_event() -> dict[str, Any] | None:
            got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            for message in got.get("Messages", []):
                event = json.loads(message["Body"])
                detail = event["detail"]
                if (detail["alarmName"], detail["state"]["value"]) == (
                    f"kafka-{t}-throughput-high", "ALARM",
                ):  # fmt: skip
                    return dict(event)
            return None

        event = _wait(alarm_event, 90, "the throughput-high ALARM event in the queue")
        assert event["source"] == "aws.cloudwatch"
        assert event["detail-type"] == "CloudWatch Alarm State Change"
        (alarm,) = cloudwatch.describe_alarms(AlarmNames=[f"kafka-{t}-throughput-high"])[
            "MetricAlarms"
        ]
        assert event["resources"] == [alarm["AlarmArn"]]
        assert sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=0).get("Messages") is None
    finally:
        broker.stop()
    assert "event sent" in bridge_log.read_text()
