"""Client quotas on a real broker: a producer over its byte-rate quota is throttled
(throttle_time_ms > 0, its channel muted) while another client's throughput is unaffected;
DescribeClientQuotas / AlterClientQuotas round trip; fetch quotas slow a consumer down."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from kio.index import load_request_schema

from tests import kafka_wire as w
from tests.support.broker import BrokerProcess

pytestmark = pytest.mark.timeout(120)

QUOTA = 200_000  # bytes/s
PRODUCER_QUOTA = 300_000  # bytes/s, the real-client test


def alter_quota(c: w.WireClient, client_id: str, key: str, value: float | None) -> None:
    m = w.schema_module(49, 1)
    req = load_request_schema(49, 1)(
        entries=(
            m.EntryData(
                entity=(m.EntityData(entity_type="client-id", entity_name=client_id),),
                ops=(m.OpData(key=key, value=value or 0.0, remove=value is None),),
            ),
        ),
        validate_only=False,
    )
    resp = c.call(req)
    assert int(resp.entries[0].error_code) == 0, resp


@pytest.fixture
def quota_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    # 100 ms windows: the rate is measured over >= 1 s, so tests need not run for 10 s
    b = BrokerProcess(tmp_path / "data", BROKER_QUOTA_WINDOW_MS="100").start()
    yield b
    b.stop()


def test_alter_and_describe_client_quotas(quota_broker: BrokerProcess) -> None:
    with w.WireClient(quota_broker.port) as c:
        alter_quota(c, "slow", "producer_byte_rate", QUOTA)
        alter_quota(c, "slow", "consumer_byte_rate", 1000)
        m = w.schema_module(48, 1)
        req = load_request_schema(48, 1)(
            components=(m.ComponentData(entity_type="client-id", match_type=0, match="slow"),),
            strict=False,
        )
        resp = c.call(req)
        assert int(resp.error_code) == 0
        [entry] = resp.entries
        assert [(e.entity_type, e.entity_name) for e in entry.entity] == [("client-id", "slow")]
        assert {v.key: v.value for v in entry.values} == {
            "consumer_byte_rate": 1000.0,
            "producer_byte_rate": float(QUOTA),
        }
        alter_quota(c, "slow", "consumer_byte_rate", None)  # remove one key
        assert [v.key for v in c.call(req).entries[0].values] == ["producer_byte_rate"]


def _produce(c: w.WireClient, topic: str, client_id: str, batch: bytes) -> tuple[int, float]:
    start = time.monotonic()
    resp = c.call_as(w.produce_request(9, {topic: {0: batch}}, acks=1), client_id)  # type: ignore[attr-defined]
    assert int(resp.responses[0].partition_responses[0].error_code) == 0
    return int(resp.throttle_time.total_seconds() * 1000), time.monotonic() - start


def test_producer_over_quota_is_throttled_and_muted(quota_broker: BrokerProcess) -> None:
    from tests.integration.security_support import SecureWire

    with SecureWire(quota_broker.port) as admin:
        alter_quota(admin, "slow", "producer_byte_rate", QUOTA)
        admin.call(w.create_topics_request(7, ["quota-wire"]))
    batch = w.batch_of_size(100_000)
    with SecureWire(quota_broker.port) as slow, SecureWire(quota_broker.port) as fast:
        results = [_produce(slow, "quota-wire", "slow", batch) for _ in range(10)]
        throttles = [t for t, _ in results]
        # 1 MB at once against 200 kB/s measured over >= 1 s
        assert throttles[0] == 0 and max(throttles) > 0, results
        # the channel is muted for the throttle time: the next answer waits for it
        for (throttle, _), (_, next_took) in zip(results, results[1:], strict=False):
            if throttle:
                assert next_took >= throttle / 1000 * 0.8, results
        # another client id has no quota: never throttled
        fast_throttles = [_produce(fast, "quota-wire", "fast", batch)[0] for _ in range(8)]
        assert fast_throttles == [0] * 8


def _timed_producer(
    bootstrap: str, client_id: str, topic: str, total: int, out: dict[str, Any]
) -> None:
    throttle = []

    def stats(raw: str) -> None:
        for b in json.loads(raw).get("brokers", {}).values():
            throttle.append(b.get("throttle", {}).get("max", 0))

    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "client.id": client_id,
            "linger.ms": 5,
            "batch.size": 50_000,  # many requests, so the quota is measured over time
            "statistics.interval.ms": 200,
            "stats_cb": stats,
        }
    )
    value = b"x" * 10_000
    start = time.monotonic()
    for _ in range(total // len(value)):
        while True:
            try:
                p.produce(topic, value)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    assert p.flush(60) == 0
    out[client_id] = (time.monotonic() - start, max(throttle, default=0))
    p.poll(0.5)


def test_throttled_producer_does_not_slow_another_client(quota_broker: BrokerProcess) -> None:
    with w.WireClient(quota_broker.port) as admin:
        alter_quota(admin, "slow", "producer_byte_rate", PRODUCER_QUOTA)
        admin.call(w.create_topics_request(7, ["quota-slow", "quota-fast"]))
    out: dict[str, Any] = {}
    total = 1_500_000  # slow: about 5 s at its quota; fast: well under a second
    threads = [
        threading.Thread(
            target=_timed_producer, args=(quota_broker.bootstrap, cid, f"quota-{cid}", total, out)
        )
        for cid in ("slow", "fast")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    slow_s, slow_throttle = out["slow"]
    fast_s, _ = out["fast"]
    print(
        f"slow: {total / slow_s / 1e3:.0f} kB/s (throttle max {slow_throttle} ms); "
        f"fast: {total / fast_s / 1e3:.0f} kB/s"
    )
    assert slow_throttle > 0
    assert total / slow_s < 2 * PRODUCER_QUOTA  # held near its quota (after a first burst)
    assert total / fast_s > 10 * PRODUCER_QUOTA  # the other client runs at full speed meanwhile


def test_consumer_over_fetch_quota_is_throttled(quota_broker: BrokerProcess) -> None:
    """consumer_byte_rate: responses carry throttle_time_ms, a consumer already over its
    quota gets empty answers until its rate is back under it, and it still gets everything."""
    from tests.integration.security_support import SecureWire

    fetch_quota = 100_000
    with SecureWire(quota_broker.port) as admin:
        admin.call(w.create_topics_request(7, ["quota-fetch"]))
        for _ in range(6):
            _produce(admin, "quota-fetch", "loader", w.batch_of_size(100_000))
        alter_quota(admin, "slowc", "consumer_byte_rate", fetch_quota)
    with SecureWire(quota_broker.port) as c:
        offset, received, throttled, empty = 0, 0, 0, 0
        start = time.monotonic()
        while offset < 6 and time.monotonic() - start < 30:
            resp = c.call_as(
                w.fetch_request(11, "quota-fetch", 0, offset, max_bytes=100_000), "slowc"
            )
            throttled += resp.throttle_time.total_seconds() > 0
            records = resp.responses[0].partitions[0].records if resp.responses else None
            if not records:
                empty += 1
                continue
            received += len(records)
            offset += 1  # one record per batch
        took = time.monotonic() - start
    print(f"fetched {received} B in {took:.1f} s; {throttled} throttled, {empty} empty answers")
    assert offset == 6
    assert throttled > 0 and empty > 0
    assert received / took < 2.5 * fetch_quota
