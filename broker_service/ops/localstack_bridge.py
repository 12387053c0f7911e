"""``python -m broker_service.ops.localstack_bridge``: the two pieces of AWS plumbing that
LocalStack community (on the host, without Docker) does not do, for brokers run as local
processes. Local development only; in AWS neither is needed.

1. **EMF lines -> PutMetricData.** On ECS, brokers print CloudWatch embedded-metric-format
   (EMF) lines on stdout and the awslogs driver + CloudWatch Logs turn them into metrics.
   Locally nothing reads the broker's stdout, so the bridge reads the EMF lines (from stdin,
   passed through to stdout, or by following log files) and publishes them with
   PutMetricData, with the dimension sets the document names. It also publishes every
   metric without dimensions (the cluster-wide series): the local alarms (stacks/local.py)
   watch that series, because LocalStack evaluates simple metric alarms only, not the
   Metrics Insights queries the AWS alarms use to sum over brokers.
2. **Alarm state changes -> EventBridge.** In AWS, CloudWatch puts a "CloudWatch Alarm State
   Change" event on the default bus when an alarm changes state; LocalStack records the
   change in the alarm history but sends no event. The bridge polls the history of the
   alarms whose names start with ``--alarm-prefix`` and puts the event, in AWS's format, on
   the default bus, where the tenant's rules route it (to an SQS queue in the local flavour).

Endpoints and credentials come from the standard AWS_* variables (``localstack/host.sh env``).

    python -m broker_service serve ... | python -m broker_service.ops.localstack_bridge \\
        --alarm-prefix kafka-demo-
    python -m broker_service.ops.localstack_bridge --follow broker-1.log --follow broker-2.log
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import boto3

log = logging.getLogger("localstack_bridge")

ALARM_STATE_CHANGE = "CloudWatch Alarm State Change"
PUT_METRIC_DATA_MAX = 1000  # metric data items in one PutMetricData request
PUT_EVENTS_MAX = 10  # entries in one PutEvents request
VALID_UNITS = {
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
    "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
    "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second",
    "Terabytes/Second", "Bits/Second", "Kilobits/Second", "Megabits/Second", "Gigabits/Second",
    "Terabits/Second", "Count/Second", "None",
}  # fmt: skip


# -- EMF ------------------------------------------------------------------------------------
def emf_document(line: str) -> dict[str, Any] | None:
    """The EMF document on this line, or None (a log line, or JSON that is not EMF)."""
    line = line.strip()
    if not line.startswith("{") or '"_aws"' not in line:
        return None
    try:
        doc = json.loads(line)
    except ValueError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("_aws"), dict):
        return None
    return doc


def metric_data(
    doc: dict[str, Any], cluster_series: bool = True
) -> dict[str, list[dict[str, Any]]]:
    """PutMetricData items by namespace for one EMF document: each metric once per dimension
    set of its directive, plus once without dimensions when ``cluster_series``."""
    aws = doc["_aws"]
    timestamp = datetime.fromtimestamp(float(aws.get("Timestamp", time.time() * 1000)) / 1000, UTC)
    out: dict[str, list[dict[str, Any]]] = {}
    for directive in aws.get("CloudWatchMetrics", []):
        namespace = directive.get("Namespace")
        if not namespace:
            continue
        dimension_sets: list[list[str]] = [list(d) for d in directive.get("Dimensions", [])]
        if cluster_series and [] not in dimension_sets:
            dimension_sets.append([])
        for metric in directive.get("Metrics", []):
            name = metric.get("Name")
            if name not in doc:
                continue
            raw = doc[name]
            values = raw if isinstance(raw, list) else [raw]
            if not values or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in values
            ):
                continue
            unit = metric.get("Unit", "None")
            for dims in dimension_sets:
                if any(d not in doc for d in dims):
                    continue
                item: dict[str, Any] = {
                    "MetricName": name,
                    "Dimensions": [{"Name": d, "Value": str(doc[d])} for d in dims],
                    "Timestamp": timestamp,
                    "Unit": unit if unit in VALID_UNITS else "None",
                }
                if len(values) == 1:
                    item["Value"] = float(values[0])
                else:
                    item["Values"] = [float(v) for v in values]
                if metric.get("StorageResolution") == 1:
                    item["StorageResolution"] = 1
                out.setdefault(namespace, []).append(item)
    return out


class MetricPublisher:
    def __init__(self, cloudwatch: Any, cluster_series: bool = True) -> None:
        self.cloudwatch = cloudwatch
        self.cluster_series = cluster_series
        self.published = 0  # metric data items sent (for the log)

    def publish_line(self, line: str) -> int:
        doc = emf_document(line)
        if doc is None:
            return 0
        sent = 0
        for namespace, items in metric_data(doc, self.cluster_series).items():
            for i in range(0, len(items), PUT_METRIC_DATA_MAX):
                batch = items[i : i + PUT_METRIC_DATA_MAX]
                try:
                    self.cloudwatch.put_metric_data(Namespace=namespace, MetricData=batch)
                except Exception as exc:  # a local tool: report and keep going
                    log.warning("PutMetricData to %s failed: %s", namespace, exc)
                    continue
                sent += len(batch)
        self.published += sent
        return sent


# -- alarm state changes --------------------------------------------------------------------
def _iso(ts: Any) -> str:
    if isinstance(ts, datetime):
        return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"
    return str(ts)


def alarm_state_change_event(
    alarm: dict[str, Any], history: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """The PutEvents entry CloudWatch would send for one StateUpdate history item (``now``:
    when the change was seen; the bus fills in account and region)."""
    data = json.loads(history.get("HistoryData") or "{}")
    old, new = data.get("oldState", {}), data.get("newState", {})
    detail = {
        "alarmName": alarm["AlarmName"],
        "state": {
            "value": new.get("stateValue"),
            "reason": new.get("stateReason", ""),
            "reasonData": json.dumps(new.get("stateReasonData") or {}),
            "timestamp": _iso(now),
        },
        "previousState": {
            "value": old.get("stateValue"),
            "reason": old.get("stateReason", ""),
        },
        "configuration": {
            "description": alarm.get("AlarmDescription", ""),
            "metrics": [
                {
                    "id": str(uuid.uuid5(uuid.NAMESPACE_URL, alarm["AlarmArn"])),
                    "metricStat": {
                        "metric": {
                            "namespace": alarm.get("Namespace"),
                            "name": alarm.get("MetricName"),
                            "dimensions": {
                                d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])
                            },
                        },
                        "period": alarm.get("Period"),
                        "stat": alarm.get("Statistic"),
                    },
                    "returnData": True,
                }
            ],
        },
    }
    return {
        "Time": now,
        "Source": "aws.cloudwatch",
        "DetailType": ALARM_STATE_CHANGE,
        "Resources": [alarm["AlarmArn"]],
        "Detail": json.dumps(detail),
    }


class AlarmEventBridge:
    """Turns new StateUpdate items of the alarm history into EventBridge events.

    Items already in the history when the bridge starts are not sent. New items are told apart
    by their content, not their timestamp: LocalStack stamps a history item with the time the
    alarm entered its *previous* state."""

    def __init__(self, cloudwatch: Any, events: Any, alarm_prefix: str) -> None:
        self.cloudwatch = cloudwatch
        self.events = events
        self.alarm_prefix = alarm_prefix
        self.sent = 0
        self._seen: set[tuple[str, str, str, str]] | None = None  # None: not primed yet

    def _history(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        alarms = [
            a
            for page in self.cloudwatch.get_paginator("describe_alarms").paginate(
                AlarmNamePrefix=self.alarm_prefix, AlarmTypes=["MetricAlarm"]
            )
            for a in page["MetricAlarms"]
        ]
        return [
            (alarm, item)
            for alarm in alarms
            for item in self.cloudwatch.describe_alarm_history(
                AlarmName=alarm["AlarmName"],
                HistoryItemType="StateUpdate",
                ScanBy="TimestampAscending",
            )["AlarmHistoryItems"]
        ]

    @staticmethod
    def _key(item: dict[str, Any]) -> tuple[str, str, str, str]:
        return (
            item["AlarmName"],
            _iso(item["Timestamp"]),
            item.get("HistorySummary", ""),
            item.get("HistoryData", ""),
        )

    def poll(self) -> int:
        history = self._history()
        if self._seen is None:
            self._seen = {self._key(item) for _, item in history}
            log.info("alarm history read (%d earlier changes, not sent)", len(self._seen))
            return 0
        now = datetime.now(UTC)
        entries = []
        for alarm, item in history:
            key = self._key(item)
            if key in self._seen:
                continue
            self._seen.add(key)
            entries.append(alarm_state_change_event(alarm, item, now))
        for i in range(0, len(entries), PUT_EVENTS_MAX):
            batch = entries[i : i + PUT_EVENTS_MAX]
            result = self.events.put_events(Entries=batch)
            if result.get("FailedEntryCount"):
                log.warning("PutEvents: %d entries failed: %s", result["FailedEntryCount"], result)
            for entry in batch:
                detail = json.loads(entry["Detail"])
                log.info(
                    "alarm %s: %s -> %s (event sent)",
                    detail["alarmName"],
                    detail["previousState"]["value"],
                    detail["state"]["value"],
                )
        self.sent += len(entries)
        return len(entries)


# -- input ----------------------------------------------------------------------------------
def follow(paths: list[Path], stop: threading.Event, interval_s: float = 0.2) -> Iterator[str]:
    """New complete lines of these files (from their start), until ``stop``; a file that
    does not exist yet is waited for."""
    offsets = dict.fromkeys(paths, 0)
    partial = dict.fromkeys(paths, "")
    while not stop.is_set():
        got = False
        for path in paths:
            try:
                with path.open("r", errors="replace") as f:
                    f.seek(offsets[path])
                    chunk = f.read()
                    offsets[path] = f.tell()
            except FileNotFoundError:
                continue
            if not chunk:
                continue
            got = True
            *lines, partial[path] = (partial[path] + chunk).split("\n")
            yield from lines
        if not got:
            stop.wait(interval_s)


def pass_through(stream: TextIO, out: TextIO) -> Iterable[str]:
    for line in stream:
        out.write(line)
        out.flush()
        yield line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m broker_service.ops.localstack_bridge",
        description="Publish brokers' EMF lines to CloudWatch and alarm state changes to "
        "EventBridge, for LocalStack (which does neither on its own).",
    )
    parser.add_argument(
        "--follow",
        action="append",
        type=Path,
        default=[],
        help="broker log file to follow (repeatable); default: read stdin",
    )
    parser.add_argument(
        "--alarm-prefix",
        default=None,
        help="bridge state changes of the alarms named so (e.g. kafka-demo-)",
    )
    parser.add_argument("--alarm-poll-s", type=float, default=1.0)
    parser.add_argument(
        "--no-cluster-series",
        dest="cluster_series",
        action="store_false",
        help="do not also publish each metric without dimensions",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s localstack_bridge %(levelname)s %(message)s",
    )

    session = boto3.session.Session()
    cloudwatch = session.client("cloudwatch")
    publisher = MetricPublisher(cloudwatch, args.cluster_series)
    stop = threading.Event()

    def on_sigterm(*_: object) -> None:
        stop.set()
        raise KeyboardInterrupt  # also ends a blocking read of stdin

    signal.signal(signal.SIGTERM, on_sigterm)

    poller: threading.Thread | None = None
    if args.alarm_prefix:
        bridge = AlarmEventBridge(cloudwatch, session.client("events"), args.alarm_prefix)

        def poll_alarms() -> None:
            while not stop.is_set():
                try:
                    bridge.poll()
                except Exception as exc:  # LocalStack restarting, say: try again
                    log.warning("alarm poll failed: %s", exc)
                stop.wait(args.alarm_poll_s)

        poller = threading.Thread(target=poll_alarms, name="alarm-events", daemon=True)
        poller.start()

    log.info(
        "publishing EMF metrics from %s%s",
        ", ".join(map(str, args.follow)) or "stdin",
        f"; alarm events for {args.alarm_prefix}*" if args.alarm_prefix else "",
    )
    lines = follow(args.follow, stop) if args.follow else pass_through(sys.stdin, sys.stdout)
    try:
        for line in lines:
            publisher.publish_line(line)
            if stop.is_set():
                break
    except KeyboardInterrupt:
        pass
    stop.set()
    if poller is not None:
        poller.join(5)
    log.info("stopped after %d metric data items", publisher.published)
    return 0


if __name__ == "__main__":
    sys.exit(main())
