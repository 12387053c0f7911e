"""localstack_bridge's pure parts: EMF document -> PutMetricData items, alarm history item ->
the EventBridge entry CloudWatch sends. The bridge against a real LocalStack (metrics
published, alarm events delivered) is tests/localstack/test_localstack.py."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path

from broker_service.ops.localstack_bridge import (
    ALARM_STATE_CHANGE,
    alarm_state_change_event,
    emf_document,
    follow,
    metric_data,
)

TS_MS = 1_795_638_304_829
BROKER_LINE = json.dumps(
    {
        "_aws": {
            "Timestamp": TS_MS,
            "CloudWatchMetrics": [
                {
                    "Namespace": "Kafka/acme",
                    "Dimensions": [["BrokerId"]],
                    "Metrics": [
                        {"Name": "BytesIn", "Unit": "Bytes"},
                        {"Name": "ProduceLatencyMs", "Unit": "Milliseconds"},
                        {"Name": "Missing", "Unit": "Count"},
                    ],
                }
            ],
        },
        "BrokerId": "7",
        "BytesIn": 4096,
        "ProduceLatencyMs": [1.5, 2.5],
    }
)


def test_log_lines_and_plain_json_are_not_emf() -> None:
    line = "2026-11-25 20:33:31,564 INFO broker_service.runtime.broker: broker 1"
    assert emf_document(line) is None
    assert emf_document('{"level": "info", "msg": "not a metric"}') is None
    assert emf_document('{"_aws": ') is None
    assert emf_document(BROKER_LINE + "\n") is not None


def test_each_metric_per_dimension_set_and_cluster_wide() -> None:
    doc = emf_document(BROKER_LINE)
    assert doc is not None
    items = metric_data(doc)["Kafka/acme"]
    when = datetime.fromtimestamp(TS_MS / 1000, UTC)
    assert items == [
        {"MetricName": "BytesIn", "Dimensions": [{"Name": "BrokerId", "Value": "7"}],
         "Timestamp": when, "Unit": "Bytes", "Value": 4096.0},
        {"MetricName": "BytesIn", "Dimensions": [], "Timestamp": when, "Unit": "Bytes",
         "Value": 4096.0},
        {"MetricName": "ProduceLatencyMs", "Dimensions": [{"Name": "BrokerId", "Value": "7"}],
         "Timestamp": when, "Unit": "Milliseconds", "Values": [1.5, 2.5]},
        {"MetricName": "ProduceLatencyMs", "Dimensions": [], "Timestamp": when,
         "Unit": "Milliseconds", "Values": [1.5, 2.5]},
    ]  # fmt: skip
    without = metric_data(doc, cluster_series=False)["Kafka/acme"]
    assert [i["Dimensions"] for i in without] == [[{"Name": "BrokerId", "Value": "7"}]] * 2


def test_alarm_history_item_becomes_the_cloudwatch_event() -> None:
    alarm = {
        "AlarmName": "kafka-acme-throughput-high",
        "AlarmArn": "arn:aws:cloudwatch:us-east-1:000000000000:alarm:kafka-acme-throughput-high",
        "AlarmDescription": "produce rate above 80%",
        "Namespace": "Kafka/acme",
        "MetricName": "BytesIn",
        "Dimensions": [],
        "Period": 10,
        "Statistic": "Sum",
    }
    history = {
        "AlarmName": alarm["AlarmName"],
        "Timestamp": datetime(2026, 11, 25, 20, 0, tzinfo=UTC),
        "HistoryData": json.dumps(
            {
                "oldState": {"stateValue": "OK", "stateReason": "below"},
                "newState": {
                    "stateValue": "ALARM",
                    "stateReason": "Threshold Crossed",
                    "stateReasonData": {"recentDatapoints": [4096.0], "threshold": 800.0},
                },
            }
        ),
    }
    now = datetime(2026, 11, 25, 20, 0, 5, tzinfo=UTC)
    entry = alarm_state_change_event(alarm, history, now)
    assert (entry["Source"], entry["DetailType"]) == ("aws.cloudwatch", ALARM_STATE_CHANGE)
    assert entry["Resources"] == [alarm["AlarmArn"]]
    assert entry["Time"] == now
    detail = json.loads(entry["Detail"])
    assert detail["alarmName"] == "kafka-acme-throughput-high"
    assert (detail["previousState"]["value"], detail["state"]["value"]) == ("OK", "ALARM")
    assert json.loads(detail["state"]["reasonData"])["recentDatapoints"] == [4096.0]
    (metric,) = detail["configuration"]["metrics"]
    assert metric["metricStat"]["metric"] == {
        "namespace": "Kafka/acme", "name": "BytesIn", "dimensions": {},
    }  # fmt: skip


def test_follow_yields_complete_lines_of_files_that_appear_later(tmp_path: Path) -> None:
    log = tmp_path / "broker.log"
    stop = threading.Event()
    lines = follow([log], stop, interval_s=0.01)

    def write_later() -> None:
        with log.open("a") as f:
            f.write("first line\nsecond ")
            f.flush()
            stop.wait(0.05)
            f.write("line\n")

    writer = threading.Thread(target=write_later)
    writer.start()
    got = [next(lines), next(lines)]
    writer.join()
    stop.set()
    assert got == ["first line", "second line"]
