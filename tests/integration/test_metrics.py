"""Broker metrics through the real thing: a broker process, a real client producing and
consuming, its Prometheus /metrics scraped over HTTP and its EMF lines read from its stdout."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from tests.emf_schema import validate_emf
from tests.support.broker import BrokerProcess
from tests.support.wait import wait_for_value


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_endpoint_and_emf_lines_show_real_traffic(tmp_path: Path) -> None:
    broker = BrokerProcess(tmp_path / "data", BROKER_METRICS_EMF="true",
                           BROKER_METRICS_INTERVAL_S="0.5", BROKER_NODE_ID="7").start()
    try:
        p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5})
        payload = b"x" * 1000
        for i in range(200):
            p.produce("metered", key=str(i).encode(), value=payload)
        assert p.flush(15) == 0

        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "lagging",
                      "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        c.assign([TopicPartition("metered", 0, 0)])
        got = 0
        deadline = time.monotonic() + 15
        while got < 200 and time.monotonic() < deadline:
            got += len([m for m in c.consume(500, 0.5) if m.error() is None])
        assert got == 200
        c.commit(offsets=[TopicPartition("metered", 0, 50)], asynchronous=False)
        c.close()

        b = (("broker_id", "7"),)
        part = (("broker_id", "7"), ("partition", "0"), ("topic", "metered"))
        lag_key = ("kafka_consumer_lag", (("broker_id", "7"), ("group", "lagging"),
                                          ("topic", "metered")))  # fmt: skip
        m = wait_for_value(lambda: _scrape(broker.metrics_url), lambda m: lag_key in m, 10,
                           "consumer lag (refreshed on the metrics interval)")  # fmt: skip
        assert m[lag_key] == 150, "high watermark 200 - committed 50"
        assert m[("kafka_broker_bytes_in_total", b)] >= 200 * len(payload)
        assert m[("kafka_broker_bytes_out_total", b)] >= 200 * len(payload)
        assert m[("kafka_partition_bytes_in_total", part)] == m[("kafka_broker_bytes_in_total", b)]
        assert m[("kafka_partition_bytes_out_total", part)] >= 200 * len(payload)
        assert m[("kafka_broker_produce_requests_total", b)] >= 1
        assert m[("kafka_broker_fetch_requests_total", b)] >= 1
        assert m[("kafka_broker_produce_latency_ms_count", b)] == m[
            ("kafka_broker_produce_requests_total", b)]
        assert m[("kafka_broker_produce_latency_ms_bucket", (*b, ("le", "+Inf")))] >= 1
        assert ("kafka_broker_fetch_queue_depth", b) in m
        assert m[("kafka_broker_s3_put_requests_total", b)] >= 0
    finally:
        broker.stop()  # prints the last interval's EMF lines too

    docs = []
    for line in broker.log_path.read_text().splitlines():
        if line.startswith("{"):
            doc = json.loads(line)
            validate_emf(doc)
            docs.append(doc)
    assert docs, "EMF lines on stdout"
    assert {d["_aws"]["CloudWatchMetrics"][0]["Namespace"] for d in docs} == {"Kafka/local"}
    per_broker = [d for d in docs if "BytesIn" in d]
    assert all(d["BrokerId"] == "7" for d in per_broker)
    assert sum(d["BytesIn"] for d in per_broker) >= 200 * len(payload), "deltas add up"
    assert sum(d["ProduceRequests"] for d in per_broker) >= 1
    per_partition = [d for d in docs if d.get("Topic") == "metered" and "PartitionBytesIn" in d]
    total_in = sum(d["BytesIn"] for d in per_broker)
    assert sum(d["PartitionBytesIn"] for d in per_partition) == total_in
    assert any(d.get("Group") == "lagging" and d["ConsumerLag"] == 150 for d in docs)
    # CloudWatch sums the brokers' lag datapoints of a period (the lag alarm's SUM per
    # (group, topic)): each broker reports a (group, topic) once per interval, stamped with
    # the interval's wall-clock boundary, and the last partial interval at stop repeats none.
    lag_docs = [(d["Group"], d["Topic"], d["_aws"]["Timestamp"])
                for d in docs if "ConsumerLag" in d]  # fmt: skip
    assert all(ts % 500 == 0 for _, _, ts in lag_docs), lag_docs
    assert len(set(lag_docs)) == len(lag_docs), lag_docs
