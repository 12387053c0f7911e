"""The counters the hot paths bump. Each hook is a few integer additions and one dict update
per partition per request (never per record), so produce throughput does not notice them.

Everything here is cumulative; the EMF emitter turns it into per-interval deltas and the
Prometheus collector exposes it as counters.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from dataclasses import dataclass, field

from broker_service.metrics.stages import ProduceStages

PRODUCE_KEY = 0
FETCH_KEY = 1

# Latency buckets (ms) of the Prometheus histograms: 1 ms .. 10 s, roughly x2.5 apart.
LATENCY_BUCKETS_MS: tuple[float, ...] = (
    1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000,
)  # fmt: skip


@dataclass(slots=True)
class LatencyStats:
    """Count, sum and bucket counts of request latencies in ms (a cumulative histogram is
    built from ``buckets`` when scraped: bucket i counts values <= LATENCY_BUCKETS_MS[i])."""

    count: int = 0
    sum_ms: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_MS) + 1))

    def observe(self, ms: float) -> None:
        self.count += 1
        self.sum_ms += ms
        self.buckets[bisect_left(LATENCY_BUCKETS_MS, ms)] += 1


class BrokerMetrics:
    """One broker's counters. Single-threaded writers (the event loop); readers in other
    threads (the Prometheus server) only read ints, which the GIL keeps whole."""

    def __init__(self, broker_id: int) -> None:
        self.broker_id = broker_id
        self.bytes_in = 0
        self.bytes_out = 0
        self.produce = LatencyStats()  # produce requests answered, and their latency
        self.fetch = LatencyStats()
        self.stages = ProduceStages()  # where a produce request's time goes (stages.py)
        self.s3_puts = 0  # object store PUTs (one per object, however many parts)
        self.s3_gets = 0  # object store GETs (ranged reads included)
        self.partition_bytes_in: dict[tuple[str, int], int] = {}
        self.partition_bytes_out: dict[tuple[str, int], int] = {}
        # this broker's requests to other brokers by (API key, connection channel: e.g. the
        # replicas' long polls have one of their own; cluster/rpc.py): [bytes sent, bytes
        # received (the answers), requests]
        self.inter_broker_bytes: dict[tuple[int, str], list[int]] = {}
        # Set by the broker: how many produce / fetch requests wait for an answer now, and
        # the consumer lag (group, topic) -> messages, refreshed on the metrics timer.
        self.queue_depth = lambda api_key: 0
        self.consumer_lag: dict[tuple[str, str], int] = {}

    # -- hot-path hooks ---------------------------------------------------------------------
    def inter_broker(self, api_key: int, channel: str, sent: int, received: int) -> None:
        key = (api_key, channel)
        counts = self.inter_broker_bytes.get(key)
        if counts is None:
            counts = self.inter_broker_bytes[key] = [0, 0, 0]
        counts[0] += sent
        counts[1] += received
        counts[2] += sent > 0

    def produced(self, topic: str, partition: int, nbytes: int) -> None:
        self.bytes_in += nbytes
        key = (topic, partition)
        d = self.partition_bytes_in
        d[key] = d.get(key, 0) + nbytes

    def fetched(self, topic: str, partition: int, nbytes: int) -> None:
        if nbytes:
            self.bytes_out += nbytes
            key = (topic, partition)
            d = self.partition_bytes_out
            d[key] = d.get(key, 0) + nbytes

    def answered(
        self, api_key: int, started: float, received: float = 0.0, ready_at: float = 0.0
    ) -> None:
        """A request was answered (its response written). Times are ``time.perf_counter()``:
        ``started`` when it began to run, ``received`` when its whole frame had arrived,
        ``ready_at`` when its answer was ready (it may wait for earlier ones to leave)."""
        now = time.perf_counter()
        if api_key == PRODUCE_KEY:
            self.produce.observe((now - started) * 1000)
            if received:
                self.stages.total.observe((now - received) * 1000)
            if ready_at:
                self.stages.send_wait.observe((now - ready_at) * 1000)
        elif api_key == FETCH_KEY:
            self.fetch.observe((now - started) * 1000)
