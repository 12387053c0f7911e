"""The balancer on the embedded timer: three brokers, every partition of a loaded topic on
broker 1 (where it was created). The controller scrapes the brokers' /metrics, moves
partitions (O(1) graceful reassignments) while the producer keeps going, and the cluster ends
with every broker's bytes in within +-10 % of the mean; every acknowledged record is there
once, at its offset."""

from __future__ import annotations

import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from broker_service.control.metrics_source import parse_scrape
from tests.support.broker import BrokerProcess
from tests.support.wait import timed_wait_until, wait_until

PARTITIONS = 6


def _leaders(bootstrap: str, topic: str) -> dict[int, int]:
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    return {p: m.leader for p, m in md.topics[topic].partitions.items()}


def _bytes_in(brokers: list[BrokerProcess]) -> list[float]:
    out = []
    for b in brokers:
        with urllib.request.urlopen(b.metrics_url, timeout=5) as resp:
            out.append(parse_scrape(resp.read().decode())[0][0])
    return out


@pytest.mark.slow
def test_skewed_cluster_ends_within_the_band_without_loss(tmp_path: Path) -> None:
    env = {"BROKER_LEASE_MS": "4000", "BROKER_AUTO_BALANCE": "true",
           "BROKER_BALANCE_INTERVAL_S": "3", "BROKER_BALANCE_MIN_BYTES_PER_S": "10000",
           "BROKER_UPLOAD_INTERVAL_MS": "1000", "BROKER_AUTOSCALER_INTERVAL_S": "2",
           "BROKER_AUTOSCALER_TARGET_MBPS": "0.5"}  # fmt: skip
    # The topic is created while broker 1 is alone (new topics are spread over the live
    # brokers), then brokers 2 and 3 join: a scale-out that left them empty.
    brokers = [BrokerProcess(tmp_path / "shared", BROKER_NODE_ID=str(i + 1), **env)
               for i in range(3)]  # fmt: skip
    stop = threading.Event()
    acked: dict[int, tuple[int, int]] = {}
    errors: list[str] = []
    try:
        brokers[0].start()
        first = brokers[0].bootstrap
        admin = AdminClient({"bootstrap.servers": first})
        for f in admin.create_topics([NewTopic("skewed", PARTITIONS, 1)]).values():
            f.result(10)
        assert set(_leaders(first, "skewed").values()) == {1}, "skewed: all on broker 1"
        for b in brokers[1:]:  # the balancer may start moving partitions from here on
            b.start()
        bootstrap = ",".join(b.bootstrap for b in brokers)

        def produce() -> None:  # ~600 records/s of 1 KiB, the same on every partition
            p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                          "enable.idempotence": False, "message.timeout.ms": 60000})  # fmt: skip

            def on_delivery(err: object, msg: object) -> None:
                if err is None:
                    acked[int(msg.key())] = (msg.partition(), msg.offset())  # type: ignore[attr-defined]
                else:
                    errors.append(str(err))

            i = 0
            while not stop.is_set():
                for _ in range(PARTITIONS):
                    p.produce("skewed", key=str(i).encode(), value=b"x" * 1024,
                              partition=i % PARTITIONS, on_delivery=on_delivery)  # fmt: skip
                    i += 1
                p.poll(0.01)
            assert p.flush(60) == 0

        producer = threading.Thread(target=produce)
        producer.start()
        def counts() -> dict[int, int]:
            leaders = list(_leaders(first, "skewed").values())
            return {b: leaders.count(b) for b in (1, 2, 3)}

        spread = timed_wait_until(lambda: sorted(counts().values()) == [2, 2, 2], 60,
                                  lambda: f"leaders per broker {counts()}", interval=0.5)
        # the producer has found the new leaders: every broker's bytes in grows
        last = [_bytes_in(brokers)]

        def all_growing() -> bool:
            now = _bytes_in(brokers)
            grew = all(a > b for a, b in zip(now, last[0], strict=True))
            last[0] = now
            return grew

        wait_until(all_growing, 30, "bytes in on every broker", interval=0.5)
        before = _bytes_in(brokers)
        t0 = time.monotonic()
        time.sleep(5)  # the measurement window of the rates below (not a wait)
        rates = [(a - b) / (time.monotonic() - t0) for a, b in zip(_bytes_in(brokers), before,
                                                                   strict=True)]  # fmt: skip
        mean = sum(rates) / 3
        print(f"\nspread over 3 brokers {spread:.1f} s after the load started; bytes in/s "
              f"{[round(r) for r in rates]} (mean {mean:.0f})")
        assert mean > 100_000, "the load is real"
        assert all(abs(r - mean) <= 0.10 * mean for r in rates), rates
        log = brokers[0].log()  # the controller explains itself
        assert "balancer: skewed-" in log and "autoscaler (log only" in log, log
        assert "autoscaler (log only" not in brokers[1].log(), "only the controller acts"
    finally:
        stop.set()
        if "producer" in locals():
            producer.join(90)
        if sys.exc_info()[0] is not None:  # failed before the checks below: stop the brokers
            for b in brokers:
                b.stop()
    try:
        assert not errors, errors[:5]
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "balanced-check",
                      "enable.auto.commit": False})  # fmt: skip
        c.assign([TopicPartition("skewed", p, 0) for p in range(PARTITIONS)])
        got: dict[int, tuple[int, int]] = {}
        dups = 0
        deadline = time.monotonic() + 60
        while len(got) < len(acked) and time.monotonic() < deadline:
            for m in c.consume(1000, 0.5):
                assert m.error() is None, m.error()
                k = int(m.key())
                dups += k in got
                got[k] = (m.partition(), m.offset())
        c.close()
        assert dups == 0
        assert got == acked, "every acknowledged record, at its acknowledged offset"
        for part in range(PARTITIONS):
            offsets = sorted(o for p, o in got.values() if p == part)
            assert offsets == list(range(len(offsets))), "offsets dense: none handed out twice"
    finally:
        for b in brokers:
            b.stop()
