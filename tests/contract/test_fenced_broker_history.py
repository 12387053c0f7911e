"""Fenced brokers do not pile up (BROKER_NODE_ID=auto gives every ECS task a new id): the
store forgets a fenced record on request (compare-and-set on its epoch), and recovery forgets
the auto-id fenced brokers that lead nothing after a grace period, with a cost per check that
does not grow with the number of fenced records. Every backend (SQLite, DynamoDB on moto)."""

from __future__ import annotations

import time

from broker_service.control.recovery import recover
from broker_service.metadata.records import ACTIVE, FENCED
from broker_service.metadata.store import MetadataStore

from .conftest import Backend


def now_ms() -> int:
    return int(time.time() * 1000)


def test_forget_broker_only_when_fenced_at_that_epoch(backend: Backend) -> None:
    s = backend.store()
    b = s.register_broker(7, "h", 1, None, 60_000)
    s.set_broker_info(7, b.epoch, {"node_id": "auto"})
    s.save_broker_endpoints(7, {"PLAINTEXT": ("h", 1)})
    assert s.forget_broker(7, b.epoch) is False  # serving: never
    fenced = s.fence_broker(7, b.epoch)
    assert s.forget_broker(7, b.epoch) is False  # stale epoch
    assert s.forget_broker(7, fenced.epoch) is True
    assert [x.broker_id for x in s.brokers()] == []
    assert 7 not in s.broker_info() and 7 not in s.broker_endpoints()
    assert s.forget_broker(7, fenced.epoch) is False  # gone already


def _history(s: MetadataStore, n: int, auto: bool = True) -> None:
    """``n`` past tasks: registered with a 1 ms lease, then fenced."""
    for i in range(n):
        b = s.register_broker(100 + i, "10.0.0.9", 9092, None, 1)
        if auto:
            s.set_broker_info(b.broker_id, b.epoch, {"node_id": "auto", "epoch": str(b.epoch)})
        s.fence_broker(b.broker_id, b.epoch)


def test_recovery_forgets_auto_id_fenced_brokers_that_lead_nothing(backend: Backend) -> None:
    s = backend.store()
    for bid in (1, 2):
        s.register_broker(bid, "10.0.0.1", 9092, None, 600_000)
    _history(s, 3)
    dead = s.register_broker(50, "10.0.0.5", 9092, None, 1)  # leads t, dies
    s.set_broker_info(50, dead.epoch, {"node_id": "auto"})
    s.create_topic("t", 2, {}, leader_ids=[50])
    fixed = s.register_broker(9, "10.0.0.9", 9092, None, 1)  # a fixed id (no node_id: auto)
    s.fence_broker(9, fixed.epoch)
    time.sleep(0.01)
    within_grace = recover(s, now_ms(), forget_after_ms=3_600_000)
    assert within_grace.forgotten == [] and len(within_grace.moved) == 2
    r = recover(s, now_ms(), forget_after_ms=0)
    # broker 50 was moved off first, so it leads nothing now: forgotten with the history
    assert sorted(r.forgotten) == [50, 100, 101, 102]
    left = {b.broker_id: b.state for b in s.brokers()}
    assert left == {1: ACTIVE, 2: ACTIVE, 9: FENCED}  # the fixed id keeps its epoch record
    assert {p.leader_id for p in s.topic("t").partitions} <= {1, 2}  # type: ignore[union-attr]


def test_a_fenced_broker_still_leading_is_not_forgotten(backend: Backend) -> None:
    """No live broker to take its partitions: it keeps them, and its record."""
    s = backend.store()
    dead = s.register_broker(60, "10.0.0.6", 9092, None, 1)
    s.set_broker_info(60, dead.epoch, {"node_id": "auto"})
    s.create_topic("u", 1, {}, leader_ids=[60])
    time.sleep(0.01)
    r = recover(s, now_ms(), forget_after_ms=0)
    assert r.fenced == [60] and r.forgotten == [] and r.moved == []
    assert [b.broker_id for b in s.brokers()] == [60]
