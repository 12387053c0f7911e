"""CloudWatch embedded metric format (EMF): one JSON document per dimension set, printed as
one line on stdout; CloudWatch Logs (the awslogs driver on ECS) turns them into metrics.

Specification: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/
CloudWatch_Embedded_Metric_Format_Specification.html. Values are per-interval deltas (bytes
and requests since the previous line), so a CloudWatch Sum over a period is the traffic in it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from broker_service.metrics.counters import BrokerMetrics, LatencyStats

BYTES, COUNT, MS = "Bytes", "Count", "Milliseconds"


def emf_document(
    namespace: str,
    timestamp_ms: int,
    dimensions: dict[str, str],
    metrics: dict[str, tuple[float, str]],
    properties: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One EMF document: ``metrics`` maps a name to (value, unit)."""
    doc: dict[str, Any] = {
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [list(dimensions)],
                    "Metrics": [{"Name": n, "Unit": u} for n, (_, u) in metrics.items()],
                }
            ],
        },
        **(properties or {}),
        **dimensions,
    }
    for name, (value, _) in metrics.items():
        doc[name] = value
    return doc


@dataclass
class _Snapshot:
    bytes_in: int = 0
    bytes_out: int = 0
    produce_count: int = 0
    produce_sum: float = 0.0
    fetch_count: int = 0
    fetch_sum: float = 0.0
    s3_puts: int = 0
    s3_gets: int = 0
    partition_in: dict[tuple[str, int], int] = field(default_factory=dict)
    partition_out: dict[tuple[str, int], int] = field(default_factory=dict)


def _mean_ms(stats: LatencyStats, count: int, total: float) -> float:
    n = stats.count - count
    return round((stats.sum_ms - total) / n, 3) if n > 0 else 0.0


class EmfEmitter:
    """Turns the cumulative counters into per-interval EMF documents."""

    def __init__(self, metrics: BrokerMetrics, namespace: str) -> None:
        self.metrics = metrics
        self.namespace = namespace
        self._last = _Snapshot()

    def documents(self, timestamp_ms: int) -> list[dict[str, Any]]:
        m, last = self.metrics, self._last
        broker = {"BrokerId": str(m.broker_id)}
        docs = [
            emf_document(
                self.namespace,
                timestamp_ms,
                broker,
                {
                    "BytesIn": (m.bytes_in - last.bytes_in, BYTES),
                    "BytesOut": (m.bytes_out - last.bytes_out, BYTES),
                    "ProduceRequests": (m.produce.count - last.produce_count, COUNT),
                    "FetchRequests": (m.fetch.count - last.fetch_count, COUNT),
                    # mean over the interval (EMF carries no histogram)
                    "ProduceLatencyMs": (
                        _mean_ms(m.produce, last.produce_count, last.produce_sum),
                        MS,
                    ),
                    "FetchLatencyMs": (_mean_ms(m.fetch, last.fetch_count, last.fetch_sum), MS),
                    "ProduceQueueDepth": (m.queue_depth(0), COUNT),
                    "FetchQueueDepth": (m.queue_depth(1), COUNT),
                    "S3PutRequests": (m.s3_puts - last.s3_puts, COUNT),
                    "S3GetRequests": (m.s3_gets - last.s3_gets, COUNT),
                },
            )
        ]
        partition_in = dict(m.partition_bytes_in)
        partition_out = dict(m.partition_bytes_out)
        for key in sorted(partition_in.keys() | partition_out.keys()):
            din = partition_in.get(key, 0) - last.partition_in.get(key, 0)
            dout = partition_out.get(key, 0) - last.partition_out.get(key, 0)
            if din or dout:  # idle partitions cost nothing
                docs.append(
                    emf_document(
                        self.namespace,
                        timestamp_ms,
                        {"Topic": key[0], "Partition": str(key[1])},
                        {"PartitionBytesIn": (din, BYTES), "PartitionBytesOut": (dout, BYTES)},
                        {"BrokerId": str(m.broker_id)},
                    )
                )
        for (group, topic), lag in sorted(m.consumer_lag.items()):
            docs.append(
                emf_document(
                    self.namespace,
                    timestamp_ms,
                    {"Group": group, "Topic": topic},
                    {"ConsumerLag": (lag, COUNT)},
                    {"BrokerId": str(m.broker_id)},  # lag of the partitions this broker leads
                )
            )
        self._last = _Snapshot(
            m.bytes_in, m.bytes_out, m.produce.count, m.produce.sum_ms, m.fetch.count,
            m.fetch.sum_ms, m.s3_puts, m.s3_gets, partition_in, partition_out,
        )  # fmt: skip
        return docs

    def lines(self, timestamp_ms: int) -> str:
        return "".join(
            json.dumps(d, separators=(",", ":")) + "\n" for d in self.documents(timestamp_ms)
        )
