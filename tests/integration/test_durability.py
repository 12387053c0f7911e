"""Restart durability: after SIGKILL, every acknowledged record is there, once, at its offset."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from tests.support.broker import BrokerProcess


def _produce_acked(bootstrap: str, topic: str, n: int, start: int = 0) -> dict[int, int]:
    """Produce n records with acks=all; return {record number: acknowledged offset}."""
    acked: dict[int, int] = {}

    def on_delivery(err: object, msg: object) -> None:
        if err is None:
            acked[int(msg.key())] = msg.offset()  # type: ignore[attr-defined]

    p = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 2, "enable.idempotence": False}
    )
    for i in range(start, start + n):
        p.produce(topic, key=str(i).encode(), value=f"value-{i}".encode(), on_delivery=on_delivery)
        if i % 500 == 0:
            p.poll(0)
    assert p.flush(30) == 0
    return acked


def _consume_all(bootstrap: str, topic: str, expect: int) -> list[tuple[int, bytes, bytes]]:
    c = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "durability", "enable.auto.commit": False}
    )
    c.assign([TopicPartition(topic, 0, 0)])
    out: list[tuple[int, bytes, bytes]] = []
    deadline = time.monotonic() + 30
    while len(out) < expect and time.monotonic() < deadline:
        for m in c.consume(1000, 0.5):
            assert m.error() is None, m.error()
            out.append((m.offset(), m.key(), m.value()))
    c.close()
    return out


@pytest.mark.parametrize("wal", ["file", "object"])
def test_sigkill_loses_no_acknowledged_record(tmp_path: Path, wal: str) -> None:
    """File WAL: nothing is uploaded before the kill, all of it lives in the WAL. Object WAL:
    every acknowledged batch is already a committed object; the broker keeps no local state."""
    broker = BrokerProcess(
        tmp_path / "data", BROKER_UPLOAD_INTERVAL_MS="600000", BROKER_WAL=wal
    ).start()
    try:
        first = _produce_acked(broker.bootstrap, "durable", 3000)
        broker.kill()
        if wal == "object":
            assert not (tmp_path / "data" / "wal").exists(), "the object WAL writes no files"
        broker.start()
        second = _produce_acked(broker.bootstrap, "durable", 2000, start=3000)
        broker.kill()
        broker.start()
        acked = {**first, **second}
        assert len(acked) == 5000
        records = _consume_all(broker.bootstrap, "durable", 5000)
        assert [o for o, _, _ in records] == list(range(5000)), "offsets are dense and unique"
        for offset, key, value in records:
            i = int(key)
            assert acked[i] == offset
            assert value == f"value-{i}".encode()
    finally:
        broker.stop()


def test_graceful_stop_uploads_and_trims_wal(tmp_path: Path) -> None:
    data = tmp_path / "data"
    broker = BrokerProcess(data, BROKER_UPLOAD_INTERVAL_MS="600000").start()
    acked = _produce_acked(broker.bootstrap, "uploaded", 2000)
    assert broker.stop() == 0
    objects = list((data / "objects").rglob("*.sso"))
    assert objects, "a graceful stop uploads the WAL's data to the object store"
    # Read back from objects only: remove the WAL to prove it is not needed any more.
    for seg in (data / "wal").rglob("*.wal"):
        seg.unlink()
    broker.start()
    try:
        records = _consume_all(broker.bootstrap, "uploaded", 2000)
        assert [(o, int(k)) for o, k, _ in records] == sorted((o, i) for i, o in acked.items())
    finally:
        broker.stop()
