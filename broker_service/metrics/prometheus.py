"""Prometheus exposition of the broker's counters (prometheus-client). A custom collector
reads the plain counters when scraped, so the hot paths never touch prometheus-client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from broker_service.metrics.counters import LATENCY_BUCKETS_MS, BrokerMetrics, LatencyStats
from broker_service.metrics.stages import STAGE_BUCKETS_MS, ProduceStages

# Names the local metrics source (control/metrics_source.py) reads back.
BYTES_IN = "kafka_broker_bytes_in"
BYTES_OUT = "kafka_broker_bytes_out"
PARTITION_BYTES_IN = "kafka_partition_bytes_in"
PARTITION_BYTES_OUT = "kafka_partition_bytes_out"


def _histogram(name: str, doc: str, labels: list[str], stats: LatencyStats) -> Metric:
    h = HistogramMetricFamily(name, doc, labels=["broker_id"])
    cumulative, buckets = 0, []
    for bound, n in zip(LATENCY_BUCKETS_MS, stats.buckets, strict=False):
        cumulative += n
        buckets.append((str(float(bound)), cumulative))
    buckets.append(("+Inf", stats.count))
    h.add_metric(labels, buckets, stats.sum_ms)
    return h


PRODUCE_STAGE = "kafka_broker_produce_stage_ms"


def _stage_histograms(broker_id: str, stages: ProduceStages) -> Metric:
    """One histogram per stage of the produce path (metrics/stages.py), label ``stage``."""
    h = HistogramMetricFamily(
        PRODUCE_STAGE,
        "Time a produce request spends in each stage (ms; metrics/stages.py)",
        labels=["broker_id", "stage"],
    )
    for name, stats in list(stages.stats.items()):
        cumulative, buckets = 0, []
        for bound, n in zip(STAGE_BUCKETS_MS, list(stats.buckets), strict=False):
            cumulative += n
            buckets.append((str(float(bound)), cumulative))
        buckets.append(("+Inf", cumulative + stats.buckets[-1]))
        h.add_metric([broker_id, name], buckets, stats.sum_ms)
    return h


class BrokerCollector(Collector):
    def __init__(self, metrics: BrokerMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        b = [str(m.broker_id)]

        def counter(name: str, doc: str, value: float) -> Metric:
            c = CounterMetricFamily(name, doc, labels=["broker_id"])
            c.add_metric(b, value)
            return c

        def gauge(name: str, doc: str, value: float) -> Metric:
            g = GaugeMetricFamily(name, doc, labels=["broker_id"])
            g.add_metric(b, value)
            return g

        yield counter(BYTES_IN, "Record batch bytes accepted by Produce", m.bytes_in)
        yield counter(BYTES_OUT, "Record batch bytes returned by Fetch", m.bytes_out)
        yield counter("kafka_broker_produce_requests", "Produce requests answered",
                      m.produce.count)  # fmt: skip
        yield counter("kafka_broker_fetch_requests", "Fetch requests answered", m.fetch.count)
        yield _histogram("kafka_broker_produce_latency_ms", "Produce request latency (ms)", b,
                         m.produce)  # fmt: skip
        yield _histogram("kafka_broker_fetch_latency_ms", "Fetch request latency (ms)", b,
                         m.fetch)  # fmt: skip
        yield gauge("kafka_broker_produce_queue_depth", "Produce requests waiting for an answer",
                    m.queue_depth(0))  # fmt: skip
        yield gauge("kafka_broker_fetch_queue_depth", "Fetch requests waiting (long polls)",
                    m.queue_depth(1))  # fmt: skip
        yield _stage_histograms(b[0], m.stages)
        yield counter("kafka_broker_s3_put_requests", "Object store PUTs", m.s3_puts)
        yield counter("kafka_broker_s3_get_requests", "Object store GETs", m.s3_gets)
        ib = CounterMetricFamily(
            "kafka_broker_inter_broker_bytes",
            "Bytes of this broker's requests to other brokers (sent) and their answers "
            "(received), by API key and connection channel: on AWS each crosses an AZ",
            labels=["broker_id", "api_key", "channel", "direction"],
        )
        ir = CounterMetricFamily(
            "kafka_broker_inter_broker_requests",
            "Requests this broker sent to other brokers, by API key and connection channel",
            labels=["broker_id", "api_key", "channel"],
        )
        for (api_key, channel), (sent, received, requests) in sorted(
            dict(m.inter_broker_bytes).items()
        ):
            ib.add_metric([*b, str(api_key), channel, "sent"], sent)
            ib.add_metric([*b, str(api_key), channel, "received"], received)
            ir.add_metric([*b, str(api_key), channel], requests)
        yield ib
        yield ir
        for name, doc, values in (
            (PARTITION_BYTES_IN, "Bytes produced to a partition here", m.partition_bytes_in),
            (PARTITION_BYTES_OUT, "Bytes fetched from a partition here", m.partition_bytes_out),
        ):
            c = CounterMetricFamily(name, doc, labels=["broker_id", "topic", "partition"])
            for (topic, partition), v in sorted(dict(values).items()):
                c.add_metric([*b, topic, str(partition)], v)
            yield c
        lag = GaugeMetricFamily(
            "kafka_consumer_lag",
            "Messages between a group's committed offset and the high watermark, summed over "
            "the topic's partitions led by this broker",
            labels=["broker_id", "group", "topic"],
        )
        for (group, topic), v in sorted(dict(m.consumer_lag).items()):
            lag.add_metric([*b, group, topic], v)
        yield lag


def registry_for(metrics: BrokerMetrics) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BrokerCollector(metrics))
    return registry


def start_http_server(metrics: BrokerMetrics, host: str, port: int) -> Any:
    """Serve ``/metrics`` from a thread; returns the server (``shutdown()`` stops it)."""
    from prometheus_client import start_http_server as start

    server, _thread = start(port, addr=host, registry=registry_for(metrics))
    return server
