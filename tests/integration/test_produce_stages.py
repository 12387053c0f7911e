"""Where a produce request's time goes (broker_service/metrics/stages.py), through the real
thing: a broker process, an idempotent librdkafka producer sending large requests, and the
per-stage histograms scraped from /metrics. The numbers themselves are the benchmark's
(bench/produce_stages.py); here every stage must be observed, once per request (or once per
WAL record or group), and the histograms must be well formed."""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from broker_service.metrics.stages import PRODUCE_STAGES
from tests.support.broker import BrokerProcess

STAGE = "kafka_broker_produce_stage_ms"
PER_REQUEST = ("receive", "queue", "parse", "durable_wait", "respond", "send_wait", "total")
WAL_GROUP = ("write", "sync", "complete")


def _stages(url: str) -> tuple[dict[str, dict[str, float]], float]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, dict[str, float]] = {}
    requests = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "kafka_broker_produce_requests_total":
                requests = s.value
            if family.name != STAGE:
                continue
            d = out.setdefault(s.labels["stage"], {})
            key = s.name.removeprefix(STAGE)
            d[f"{key}{s.labels.get('le', '')}"] = s.value
    return out, requests


def test_every_stage_of_a_produce_is_measured(tmp_path: Path) -> None:
    broker = BrokerProcess(tmp_path / "data").start()
    try:
        p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all",
                      "enable.idempotence": True, "linger.ms": 20, "batch.size": 1 << 20,
                      "message.max.bytes": (1 << 20) + 4096, "compression.type": "none"})
        value = os.urandom(1024)
        for i in range(4000):  # ~4 MB over 2 partitions: several large requests
            p.produce("staged", value, partition=i % 2)
            p.poll(0)
        assert p.flush(30) == 0
        stages, requests = _stages(broker.metrics_url)
    finally:
        broker.stop()

    assert requests >= 2
    assert set(stages) == set(PRODUCE_STAGES)
    for name in PER_REQUEST:  # the whole request
        assert stages[name]["_count"] == requests, name
    for name in ("validate", "append", "wal_wait"):  # once per partition of each request
        assert stages[name]["_count"] >= requests, name
    for name in WAL_GROUP:  # once per group commit: at least one, at most one per record
        assert 1 <= stages[name]["_count"] <= stages["wal_wait"]["_count"], name
    assert stages["sync"]["_sum"] > 0, "the file WAL fsyncs every group"
    for name, h in stages.items():  # cumulative buckets ending in the count
        bounds = sorted((float(k.removeprefix("_bucket")), v) for k, v in h.items()
                        if k.startswith("_bucket"))
        counts = [v for _, v in bounds]
        assert counts == sorted(counts) and counts[-1] == h["_count"], name
