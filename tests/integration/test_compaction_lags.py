"""Kafka's compaction lags drive when a compacted topic is cleaned (issue 17, item 9):
``max.compaction.lag.ms`` gets even the newest range (Kafka's active segment) cleaned, so old
duplicates go; ``min.compaction.lag.ms`` keeps young records as written. Each case has a
control topic named to be compacted after it in the same run, showing a run happened. The
broker compacts every 0.5 s here. Both backends; confluent-kafka and kafka-python."""

from __future__ import annotations

import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaProducer

from tests.integration.surface import Surface, surface_fixture, unique, wait_for

surface = surface_fixture(BROKER_COMPACTION_INTERVAL_MS="500", BROKER_UPLOAD_INTERVAL_MS="200")
KEYS = [f"k{i}".encode() for i in range(5)]


def _create(surface: Surface, name: str, config: dict[str, str]) -> None:
    admin = AdminClient({"bootstrap.servers": surface.bootstrap})
    config = {"cleanup.policy": "compact", **config}
    admin.create_topics([NewTopic(name, 1, 1, config=config)])[name].result(30)


def _read(surface: Surface, topic: str) -> list[tuple[int, bytes, bytes]]:
    c = Consumer({"bootstrap.servers": surface.bootstrap, "group.id": unique("r"),
                  "enable.auto.commit": False})  # fmt: skip
    out: list[tuple[int, bytes, bytes]] = []
    try:
        _, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + 20
        while (not out or out[-1][0] < high - 1) and time.monotonic() < deadline:
            out += [(m.offset(), m.key(), m.value()) for m in c.consume(100, 0.3)
                    if m.error() is None]  # fmt: skip
    finally:
        c.close()
    return out


def _one_batch_of_duplicates(surface: Surface, topic: str, rounds: int) -> None:
    """rounds x every key, in one batch: one range, the newest (Kafka's active segment)."""
    p = Producer({"bootstrap.servers": surface.bootstrap, "linger.ms": 200})
    for r in range(rounds):
        for k in KEYS:
            p.produce(topic, f"{k.decode()}-v{r}".encode(), key=k)
    assert p.flush(30) == 0


def test_max_compaction_lag_cleans_the_newest_range(surface: Surface) -> None:
    lagged, control = unique("a-maxlag"), unique("b-nolag")
    _create(surface, lagged, {"max.compaction.lag.ms": "2000"})
    _create(surface, control, {})
    started = time.monotonic()
    for topic in (lagged, control):
        _one_batch_of_duplicates(surface, topic, 4)
    latest = {(k, f"{k.decode()}-v3".encode()) for k in KEYS}

    def compacted() -> list[tuple[int, bytes, bytes]] | None:
        got = _read(surface, lagged)
        return got if len(got) == len(KEYS) else None

    got = wait_for("max.compaction.lag.ms to clean the newest range", compacted, timeout=60)
    took = time.monotonic() - started
    assert {(k, v) for _, k, v in got} == latest
    assert [o for o, _, _ in got] == list(range(15, 20))  # offsets never change
    assert len(_read(surface, control)) == 20, "the control range (no max lag) was cleaned"
    print(f"duplicates gone {took:.1f} s after the produce (max.compaction.lag.ms 2 s)")


def _committed_end(surface: Surface, topic: str) -> int:
    """The end offset of the partition's newest range in the metadata store. (Not a count of
    ranges: the control topic's older ranges may be compacted into one at any moment.)"""
    store = surface.open_store()
    try:
        rec = store.topic(topic)
        assert rec is not None
        return max((r.end_offset for r in store.stream_ranges(rec.partitions[0].stream_id)),
                   default=0)  # fmt: skip
    finally:
        store.close()


def test_min_compaction_lag_keeps_young_records(surface: Surface) -> None:
    young, control = unique("a-minlag"), unique("b-nominlag")
    _create(surface, young, {"min.compaction.lag.ms": "3600000"})
    _create(surface, control, {})
    for topic in (young, control):
        kp = KafkaProducer(bootstrap_servers=surface.bootstrap)
        try:
            for batch in range(3):  # three ranges: the last, newest one is never cleanable
                for k in KEYS:
                    kp.send(topic, f"{k.decode()}-v{batch}".encode(), key=k)
                kp.flush(30)
                # in a range of its own: the batch before it was in a range already
                end = (batch + 1) * len(KEYS)
                wait_for("a range per batch",
                         lambda t=topic, n=end: _committed_end(surface, t) >= n)  # fmt: skip
        finally:
            kp.close(5)
    wait_for("the control topic cleaned", lambda: len(_read(surface, control)) < 3 * len(KEYS))
    assert len(_read(surface, young)) == 3 * len(KEYS)
