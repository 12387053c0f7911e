"""Where control functions read broker load from: one small interface, two implementations.

- ``CloudWatchMetricsSource``: the brokers' EMF metrics in CloudWatch (what the Lambdas use).
- ``ScrapedMetricsSource``: the brokers' own Prometheus ``/metrics`` endpoints, found in the
  metadata store's broker info (what the embedded timers and laptop clusters use).

Both give bytes per second, per broker and per partition, averaged over a window.
"""

from __future__ import annotations

import logging
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Load:
    bytes_in_per_s: float = 0.0
    bytes_out_per_s: float = 0.0

    @property
    def total(self) -> float:
        return self.bytes_in_per_s + self.bytes_out_per_s

    def __add__(self, other: Load) -> Load:
        return Load(self.bytes_in_per_s + other.bytes_in_per_s,
                    self.bytes_out_per_s + other.bytes_out_per_s)  # fmt: skip


@dataclass
class ClusterLoad:
    window_s: float
    brokers: dict[int, Load] = field(default_factory=dict)
    partitions: dict[tuple[str, int], Load] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(load.total for load in self.brokers.values())


class MetricsSource(Protocol):
    def cluster_load(self, window_s: float) -> ClusterLoad | None:
        """Load averaged over (about) the last ``window_s`` seconds; None when unknown yet."""
        ...


# -- CloudWatch -------------------------------------------------------------------------------
class CloudWatchMetricsSource:
    """Sums of the brokers' EMF metrics (per-interval deltas) over the window, divided by it.

    The dimension values to ask for (broker ids, topic partitions) come from the caller,
    normally the metadata store (``for_cluster``): one ``GetMetricData`` query per metric and
    dimension set, no ``ListMetrics`` (so brokers and partitions long gone cost nothing)."""

    def __init__(
        self,
        namespace: str,
        dimensions: Callable[[], tuple[list[int], list[tuple[str, int]]]],
        client: Any = None,
    ) -> None:
        import boto3

        self.namespace = namespace
        self.dimensions = dimensions
        self.client = client or boto3.client("cloudwatch")

    @classmethod
    def for_cluster(
        cls, namespace: str, metadata: Any, client: Any = None
    ) -> CloudWatchMetricsSource:
        def dimensions() -> tuple[list[int], list[tuple[str, int]]]:
            # Live brokers only: fenced ones (a new id per ECS task) would make the query
            # grow with the cluster's history.
            now_ms = int(time.time() * 1000)
            brokers = [b.broker_id for b in metadata.live_brokers(now_ms)]
            parts = [(p.topic, p.partition) for t in metadata.topics() for p in t.partitions]
            return brokers, parts

        return cls(namespace, dimensions, client)

    def _sums(self, queries: list[tuple[str, dict[str, str]]], window_s: int) -> list[float]:
        """Sum over the window of each (metric, dimensions) query, in order."""
        end = datetime.now(UTC)
        start = end - timedelta(seconds=window_s)
        sums = [0.0] * len(queries)
        for i in range(0, len(queries), 500):  # GetMetricData takes 500 queries per call
            chunk = queries[i : i + 500]
            request = [
                {
                    "Id": f"m{i + j}",
                    "MetricStat": {
                        "Metric": {
                            "Namespace": self.namespace,
                            "MetricName": metric,
                            "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
                        },
                        "Period": window_s,
                        "Stat": "Sum",
                    },
                    "ReturnData": True,
                }
                for j, (metric, dims) in enumerate(chunk)
            ]
            kwargs: dict[str, Any] = {"MetricDataQueries": request, "StartTime": start,
                                      "EndTime": end}  # fmt: skip
            while True:
                resp = self.client.get_metric_data(**kwargs)
                for r in resp["MetricDataResults"]:
                    sums[int(r["Id"][1:])] += float(sum(r.get("Values", [])))
                if not resp.get("NextToken"):
                    break
                kwargs["NextToken"] = resp["NextToken"]
        return sums

    def cluster_load(self, window_s: float) -> ClusterLoad:
        w = max(60, int(window_s) // 60 * 60)  # CloudWatch periods are multiples of 60 s
        brokers, partitions = self.dimensions()
        queries = [(m, {"BrokerId": str(b)}) for b in brokers for m in ("BytesIn", "BytesOut")]
        queries += [
            (m, {"Topic": t, "Partition": str(p)})
            for t, p in partitions
            for m in ("PartitionBytesIn", "PartitionBytesOut")
        ]
        sums = iter(self._sums(queries, w))
        load = ClusterLoad(float(w))
        for b in brokers:
            load.brokers[b] = Load(next(sums) / w, next(sums) / w)
        for tp in partitions:
            load.partitions[tp] = Load(next(sums) / w, next(sums) / w)
        return load


# -- Prometheus scrape --------------------------------------------------------------------------
@dataclass
class _Sample:
    at: float
    brokers: dict[int, tuple[float, float]]
    partitions: dict[tuple[int, str, int], tuple[float, float]]


Rates = tuple[float, float]  # bytes in, bytes out


def parse_scrape(text: str) -> tuple[Rates, dict[tuple[str, int], Rates]]:
    """(bytes in, bytes out) of the broker and of each partition from one /metrics page."""
    from prometheus_client.parser import text_string_to_metric_families

    from broker_service.metrics.prometheus import (
        BYTES_IN,
        BYTES_OUT,
        PARTITION_BYTES_IN,
        PARTITION_BYTES_OUT,
    )

    broker = [0.0, 0.0]
    parts: dict[tuple[str, int], list[float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if not s.name.endswith("_total"):
                continue
            if family.name in (BYTES_IN, BYTES_OUT):
                broker[family.name == BYTES_OUT] = s.value
            elif family.name in (PARTITION_BYTES_IN, PARTITION_BYTES_OUT):
                key = (s.labels["topic"], int(s.labels["partition"]))
                parts.setdefault(key, [0.0, 0.0])[family.name == PARTITION_BYTES_OUT] = s.value
    return (broker[0], broker[1]), {k: (v[0], v[1]) for k, v in parts.items()}


def http_get(url: str, timeout_s: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        return resp.read().decode()


class ScrapedMetricsSource:
    """Rates from two scrapes of every broker's /metrics. Keeps the previous scrape, so a
    timer calling it every N seconds gets the rate over the last N seconds; a one-off call
    scrapes, waits ``window_s`` and scrapes again."""

    def __init__(
        self,
        endpoints: Callable[[], dict[int, str]],
        fetch: Callable[[str], str] = http_get,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoints = endpoints
        self.fetch = fetch
        self.sleep = sleep
        self.clock = clock
        self._previous: _Sample | None = None

    @classmethod
    def from_metadata(cls, metadata: Any, now_ms: Callable[[], int]) -> ScrapedMetricsSource:
        """Live brokers' metrics URLs, as they published them in the metadata store."""

        def endpoints() -> dict[int, str]:
            info = metadata.broker_info()
            live = {b.broker_id for b in metadata.live_brokers(now_ms())}
            return {bid: i["metrics_url"] for bid, i in info.items()
                    if bid in live and i.get("metrics_url")}  # fmt: skip

        return cls(endpoints)

    def sample(self) -> _Sample:
        brokers: dict[int, tuple[float, float]] = {}
        partitions: dict[tuple[int, str, int], tuple[float, float]] = {}
        for bid, url in self.endpoints().items():
            try:
                b, parts = parse_scrape(self.fetch(url))
            except (OSError, ValueError) as exc:
                log.warning("cannot scrape broker %d at %s: %s", bid, url, exc)
                continue
            brokers[bid] = b
            for (topic, p), v in parts.items():
                partitions[(bid, topic, p)] = v
        return _Sample(self.clock(), brokers, partitions)

    def cluster_load(self, window_s: float) -> ClusterLoad | None:
        if self._previous is None:
            self._previous = self.sample()
            self.sleep(window_s)
        before, after = self._previous, self.sample()
        self._previous = after
        dt = after.at - before.at
        if dt <= 0:
            return None

        def rate(a: tuple[float, float], b: tuple[float, float] | None) -> Load:
            b = b or (0.0, 0.0)  # a broker restarted or appeared: its counters start at 0
            return Load(max(0.0, a[0] - b[0]) / dt, max(0.0, a[1] - b[1]) / dt)

        load = ClusterLoad(dt)
        for bid, v in after.brokers.items():
            prev = before.brokers.get(bid)  # none: a broker new since the last scrape
            load.brokers[bid] = rate(v, prev) if prev is not None else Load()
        for (bid, topic, p), v in after.partitions.items():
            prev = before.partitions.get((bid, topic, p))
            if prev is None and bid not in before.brokers:
                continue  # a new broker: no baseline for its counters yet
            load.partitions[(topic, p)] = load.partitions.get((topic, p), Load()) + rate(v, prev)
        return load
