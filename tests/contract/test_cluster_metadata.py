"""Multi-broker groundwork of the MetadataStore contract: leases, fencing, broker states and
partition leadership, run against every backend (SQLite file, DynamoDB on moto).

Races use one store instance per racer (separate SQLite connections / DynamoDB clients), the
way separate broker or recovery processes would.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from broker_service.metadata.errors import (
    BrokerFenced,
    ConcurrentUpdate,
    UnknownBroker,
    UnknownTopic,
)
from broker_service.metadata.records import ACTIVE, DRAINING, FENCED, PartitionRecord, StreamRange
from broker_service.metadata.store import MetadataStore
from tests.support.wait import wait_until

from .conftest import Backend

T = TypeVar("T")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _range(sid: int, start: int, end: int, key: str) -> StreamRange:
    return StreamRange(sid, start, end, key, 0, (end - start) * 10, 1_000 + end)


def _race(backend: Backend, n: int, call: Callable[[MetadataStore, int], T]) -> list[T | Exception]:
    """Run ``call(store_i, i)`` for n racers at once, each on a store instance of its own."""
    stores = [backend.store() for _ in range(n)]
    barrier = threading.Barrier(n)

    def run(i: int) -> T | Exception:
        barrier.wait()
        try:
            return call(stores[i], i)
        except Exception as e:  # collected: the test checks who won and how the others lost
            return e

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def _partition(store: MetadataStore, topic: str, partition: int) -> PartitionRecord:
    t = store.topic(topic)
    assert t is not None
    return t.partitions[partition]


# -- leases --------------------------------------------------------------------------------
def test_renew_lease_extends_the_lease_of_the_current_epoch(backend: Backend) -> None:
    a, b = backend.store(), backend.store()
    me = a.register_broker(1, "h", 9092, "az", 1_000)
    before = _now_ms()
    renewed = a.renew_lease(1, me.epoch, 60_000)
    assert renewed.lease_expiry_ms >= before + 60_000
    assert renewed == me.__class__(1, "h", 9092, "az", me.epoch, ACTIVE, renewed.lease_expiry_ms)
    assert b.brokers() == [renewed]  # durable and visible to another instance at once
    with pytest.raises(BrokerFenced):
        a.renew_lease(1, me.epoch - 1, 60_000)
    with pytest.raises(BrokerFenced):
        a.renew_lease(1, me.epoch + 1, 60_000)
    with pytest.raises(BrokerFenced):  # never registered
        a.renew_lease(42, 1, 60_000)
    assert b.brokers() == [renewed]  # the refused renewals changed nothing
    assert [x.broker_id for x in b.brokers()] == [1]


def test_live_brokers_are_active_with_an_unexpired_lease(backend: Backend) -> None:
    a, b = backend.store(), backend.store()
    assert a.live_brokers(_now_ms()) == []
    b1 = a.register_broker(1, "h1", 1, None, 10_000)
    b2 = a.register_broker(2, "h2", 2, None, 60_000)
    b3 = a.register_broker(3, "h3", 3, None, 60_000)
    now = _now_ms()
    assert b.live_brokers(now) == [b1, b2, b3]  # another instance sees them at once
    # lease_expiry_ms is the first instant the lease is expired
    assert b.live_brokers(b1.lease_expiry_ms - 1) == [b1, b2, b3]
    assert b.live_brokers(b1.lease_expiry_ms) == [b2, b3]
    assert b.live_brokers(b3.lease_expiry_ms + 1) == []
    b1 = a.renew_lease(1, b1.epoch, 120_000)  # renewal brings it back / keeps it
    assert b.live_brokers(b3.lease_expiry_ms) == [b1]
    a.set_broker_state(2, b2.epoch, DRAINING)
    a.fence_broker(3, b3.epoch)
    assert b.live_brokers(now) == [b1]  # DRAINING and FENCED brokers are not live
    assert [x.state for x in b.brokers()] == [ACTIVE, DRAINING, FENCED]


# -- fencing -------------------------------------------------------------------------------
def test_fence_broker_bumps_the_epoch_and_stops_its_commits_and_renewals(
    backend: Backend,
) -> None:
    owner, recoverer = backend.store(), backend.store()
    me = owner.register_broker(1, "h", 1, None, 60_000)
    sid = owner.create_topic("t", 1, {}, [1]).partitions[0].stream_id
    owner.commit_object(1, me.epoch, "k1", 10, [_range(sid, 0, 5, "k1")])
    fenced = recoverer.fence_broker(1, me.epoch)
    assert (fenced.broker_id, fenced.host, fenced.epoch, fenced.state) == (
        1, "h", me.epoch + 1, FENCED,
    )  # fmt: skip
    assert owner.brokers() == [fenced]
    with pytest.raises(BrokerFenced):
        owner.commit_object(1, me.epoch, "k2", 10, [_range(sid, 5, 9, "k2")])
    with pytest.raises(BrokerFenced):
        owner.renew_lease(1, me.epoch, 60_000)
    with pytest.raises(BrokerFenced):
        owner.set_broker_state(1, me.epoch, DRAINING)
    # the bumped epoch is no way back in either: the broker is FENCED at that epoch
    with pytest.raises(BrokerFenced):
        owner.commit_object(1, fenced.epoch, "k3", 10, [_range(sid, 5, 9, "k3")])
    with pytest.raises(BrokerFenced):
        owner.renew_lease(1, fenced.epoch, 60_000)
    with pytest.raises(BrokerFenced):
        owner.set_broker_state(1, fenced.epoch, ACTIVE)
    assert recoverer.stream_ranges(sid) == [_range(sid, 0, 5, "k1")]
    assert recoverer.live_brokers(_now_ms()) == []
    # fencing the same epoch again: someone already did
    with pytest.raises(ConcurrentUpdate):
        recoverer.fence_broker(1, me.epoch)
    with pytest.raises(UnknownBroker):
        recoverer.fence_broker(42, 1)
    # a restart re-registers with a fresh epoch and serves again
    back = owner.register_broker(1, "h", 1, None, 60_000)
    assert (back.epoch, back.state) == (fenced.epoch + 1, ACTIVE)
    owner.commit_object(1, back.epoch, "k4", 10, [_range(sid, 5, 9, "k4")])
    assert [r.object_key for r in recoverer.stream_ranges(sid)] == ["k1", "k4"]


def test_fencing_a_broker_that_restarted_meanwhile_is_refused(backend: Backend) -> None:
    a, recoverer = backend.store(), backend.store()
    old = a.register_broker(1, "h", 1, None, 1_000)
    new = a.register_broker(1, "h", 1, None, 60_000)  # restarted before the recoverer acted
    with pytest.raises(ConcurrentUpdate):
        recoverer.fence_broker(1, old.epoch)
    assert recoverer.brokers() == [new]


def test_racing_recoverers_fence_once(backend: Backend) -> None:
    me = backend.store().register_broker(7, "h", 1, None, 1_000)
    results = _race(backend, 8, lambda s, _i: s.fence_broker(7, me.epoch))
    won = [r for r in results if not isinstance(r, Exception)]
    lost = [r for r in results if isinstance(r, Exception)]
    assert len(won) == 1, results
    assert all(isinstance(e, ConcurrentUpdate) for e in lost), lost
    assert (won[0].epoch, won[0].state) == (me.epoch + 1, FENCED)
    assert backend.store().brokers() == [won[0]]  # bumped exactly once


# -- graceful shutdown ----------------------------------------------------------------------
def test_a_draining_broker_keeps_its_lease_and_flushes_but_is_not_live(backend: Backend) -> None:
    store = backend.store()
    me = store.register_broker(1, "h", 1, None, 60_000)
    sid = store.create_topic("t", 1, {}, [1]).partitions[0].stream_id
    draining = store.set_broker_state(1, me.epoch, DRAINING)
    assert (draining.epoch, draining.state, draining.lease_expiry_ms) == (
        me.epoch, DRAINING, me.lease_expiry_ms,
    )  # fmt: skip
    assert store.live_brokers(_now_ms()) == []
    assert store.renew_lease(1, me.epoch, 60_000).state == DRAINING
    store.commit_object(1, me.epoch, "last", 10, [_range(sid, 0, 3, "last")])  # final flush
    assert store.stream_ranges(sid) == [_range(sid, 0, 3, "last")]
    assert store.set_broker_state(1, me.epoch, DRAINING).state == DRAINING  # idempotent
    back = store.set_broker_state(1, me.epoch, ACTIVE)  # shutdown called off
    assert [b.broker_id for b in store.live_brokers(_now_ms())] == [1]
    assert back.state == ACTIVE and back.epoch == me.epoch
    with pytest.raises(BrokerFenced):
        store.set_broker_state(1, me.epoch + 1, DRAINING)
    with pytest.raises(BrokerFenced):
        store.set_broker_state(9, 1, DRAINING)
    with pytest.raises(ValueError):
        store.set_broker_state(1, me.epoch, FENCED)  # that is fence_broker's job
    # a recoverer may fence a draining broker (it hung half-way through its shutdown)
    store.set_broker_state(1, me.epoch, DRAINING)
    assert store.fence_broker(1, me.epoch).state == FENCED


# -- partition leadership -------------------------------------------------------------------
def test_move_partition_is_a_compare_and_set_on_leader_and_epoch(backend: Backend) -> None:
    a, b = backend.store(), backend.store()
    me = a.register_broker(1, "h", 1, None, 60_000)
    t = a.create_topic("t", 3, {"retention.ms": "5"}, [1])
    p1 = t.partitions[1]
    a.commit_object(1, me.epoch, "k1", 10, [_range(p1.stream_id, 0, 5, "k1")])
    moved = a.move_partition("t", 1, 1, 0, 2)
    assert moved == PartitionRecord("t", 1, p1.stream_id, 2, 1, 0)
    # reads reflect it at once, through every instance; the other partitions are untouched
    assert b.topic("t") == a.topic("t")
    got = b.topic("t")
    assert got is not None and got.topic_id == t.topic_id and got.configs == t.configs
    assert got.partitions == (t.partitions[0], moved, t.partitions[2])
    assert b.topics() == [got]
    assert b.stream_ranges(p1.stream_id) == [_range(p1.stream_id, 0, 5, "k1")]  # no data moved
    # stale expectations: wrong leader, wrong epoch, or both
    for leader, epoch in ((1, 0), (2, 0), (1, 1), (3, 1), (2, 2)):
        with pytest.raises(ConcurrentUpdate):
            b.move_partition("t", 1, leader, epoch, 3)
    assert _partition(b, "t", 1) == moved
    # moving back and to the same leader both bump the epoch
    back = b.move_partition("t", 1, 2, 1, 1)
    assert (back.leader_id, back.leader_epoch) == (1, 2)
    again = a.move_partition("t", 1, 1, 2, 1)
    assert (again.leader_id, again.leader_epoch) == (1, 3)
    assert _partition(b, "t", 1) == again
    with pytest.raises(UnknownTopic):
        a.move_partition("missing", 0, 1, 0, 2)
    with pytest.raises(UnknownTopic):
        a.move_partition("t", 3, 1, 0, 2)
    with pytest.raises(UnknownTopic):
        a.move_partition("t", -1, 1, 0, 2)


def test_racing_moves_of_one_partition_move_it_once(backend: Backend) -> None:
    backend.store().create_topic("t", 2, {}, [1])
    results = _race(backend, 8, lambda s, i: s.move_partition("t", 0, 1, 0, 10 + i))
    won = [r for r in results if not isinstance(r, Exception)]
    assert len(won) == 1, results
    assert all(isinstance(r, ConcurrentUpdate) for r in results if isinstance(r, Exception))
    assert won[0].leader_epoch == 1 and won[0].leader_id >= 10
    assert _partition(backend.store(), "t", 0) == won[0]
    assert _partition(backend.store(), "t", 1).leader_epoch == 0


def test_moves_of_different_partitions_do_not_conflict(backend: Backend) -> None:
    backend.store().create_topic("t", 8, {}, [1])
    results = _race(backend, 8, lambda s, i: s.move_partition("t", i, 1, 0, 2))
    assert all(not isinstance(r, Exception) for r in results), results
    t = backend.store().topic("t")
    assert t is not None
    assert [(p.leader_id, p.leader_epoch) for p in t.partitions] == [(2, 1)] * 8


def test_partitions_led_by_lists_what_a_broker_leads(store: MetadataStore) -> None:
    store.create_topic("b", 2, {}, [1])
    store.create_topic("a", 3, {}, [2])
    store.create_topic("gone", 1, {}, [1])
    assert store.partitions_led_by(3) == []
    assert [(p.topic, p.partition) for p in store.partitions_led_by(1)] == [
        ("b", 0), ("b", 1), ("gone", 0),
    ]  # fmt: skip
    store.move_partition("a", 1, 2, 0, 1)
    store.move_partition("b", 0, 1, 0, 3)
    store.delete_topic("gone")
    store.add_partitions("b", 3, [1])
    led = store.partitions_led_by(1)
    assert [(p.topic, p.partition, p.leader_epoch) for p in led] == [
        ("a", 1, 1), ("b", 1, 0), ("b", 2, 0),
    ]  # fmt: skip
    a, b = store.topic("a"), store.topic("b")
    assert a is not None and b is not None
    assert led == [a.partitions[1], b.partitions[1], b.partitions[2]]
    assert store.partitions_led_by(2) == [a.partitions[0], a.partitions[2]]
    assert store.partitions_led_by(3) == [b.partitions[0]]


def test_failover_fences_the_dead_broker_and_moves_its_partitions(backend: Backend) -> None:
    """The sequence a recoverer runs: find expired brokers, fence, move what they led."""
    dead_store, survivor = backend.store(), backend.store()
    dead = dead_store.register_broker(1, "h1", 1, None, 1)  # its lease is about to lapse
    alive = survivor.register_broker(2, "h2", 2, None, 60_000)
    t = survivor.create_topic("t", 3, {}, [1])
    dead_store.commit_object(
        1, dead.epoch, "o", 30, [_range(p.stream_id, 0, 4, "o") for p in t.partitions]
    )
    now = wait_until(lambda: (t := _now_ms()) > dead.lease_expiry_ms and t, 5, "lease lapsed")
    assert survivor.live_brokers(now) == [alive]
    expired = [b for b in survivor.brokers() if b.state != FENCED and b.lease_expiry_ms <= now]
    assert [b.broker_id for b in expired] == [1]
    survivor.fence_broker(1, expired[0].epoch)
    for p in survivor.partitions_led_by(1):
        survivor.move_partition(p.topic, p.partition, p.leader_id, p.leader_epoch, 2)
    assert survivor.partitions_led_by(1) == []
    assert [(p.leader_id, p.leader_epoch) for p in survivor.partitions_led_by(2)] == [(2, 1)] * 3
    with pytest.raises(BrokerFenced):  # the zombie's late upload is refused
        dead_store.commit_object(
            1, dead.epoch, "late", 9, [_range(t.partitions[0].stream_id, 4, 6, "late")]
        )
    # the new leader continues each stream at the highest committed end offset
    for p in t.partitions:
        assert survivor.stream_ranges(p.stream_id)[-1].end_offset == 4
    survivor.commit_object(2, alive.epoch, "n", 9, [_range(t.partitions[0].stream_id, 4, 6, "n")])
    assert [r.object_key for r in dead_store.stream_ranges(t.partitions[0].stream_id)] == ["o", "n"]


# -- log start offset -----------------------------------------------------------------------
def test_log_start_offset_only_moves_forward(backend: Backend) -> None:
    a, b = backend.store(), backend.store()
    t = a.create_topic("t", 2, {}, [1])
    p0 = t.partitions[0]
    assert a.set_log_start_offset("t", 0, 10) == PartitionRecord("t", 0, p0.stream_id, 1, 0, 10)
    assert _partition(b, "t", 0).log_start_offset == 10
    assert b.set_log_start_offset("t", 0, 5).log_start_offset == 10  # never backwards
    assert b.set_log_start_offset("t", 0, 10).log_start_offset == 10
    assert b.set_log_start_offset("t", 0, 0).log_start_offset == 10
    assert a.set_log_start_offset("t", 0, 25).log_start_offset == 25
    assert _partition(b, "t", 0).log_start_offset == 25
    assert _partition(b, "t", 1) == t.partitions[1]
    # leadership moves keep it, and it keeps leadership
    moved = b.move_partition("t", 0, 1, 0, 2)
    assert (moved.leader_id, moved.leader_epoch, moved.log_start_offset) == (2, 1, 25)
    assert a.set_log_start_offset("t", 0, 30) == PartitionRecord("t", 0, p0.stream_id, 2, 1, 30)
    assert b.topics()[0].partitions[0] == PartitionRecord("t", 0, p0.stream_id, 2, 1, 30)
    with pytest.raises(UnknownTopic):
        a.set_log_start_offset("missing", 0, 1)
    with pytest.raises(UnknownTopic):
        a.set_log_start_offset("t", 2, 1)
    with pytest.raises(ValueError):
        a.set_log_start_offset("t", 1, -1)


def test_concurrent_moves_and_log_start_offsets_lose_no_update(backend: Backend) -> None:
    backend.store().create_topic("t", 1, {}, [0])

    def work(store: MetadataStore, i: int) -> None:
        if i == 0:  # a controller moving the partition round and round
            for n in range(10):
                store.move_partition("t", 0, n % 3, n, (n + 1) % 3)
        else:  # retention advancing the log start, from two places at once
            for off in range(i, 41, 2):
                store.set_log_start_offset("t", 0, off)

    results = _race(backend, 3, work)
    assert results == [None, None, None]
    p = _partition(backend.store(), "t", 0)
    assert (p.leader_id, p.leader_epoch, p.log_start_offset) == (10 % 3, 10, 40)


# -- topic lifecycle with changed partitions --------------------------------------------------
def test_changed_partitions_survive_growth_and_vanish_with_the_topic(store: MetadataStore) -> None:
    t = store.create_topic("t", 2, {}, [1])
    store.move_partition("t", 1, 1, 0, 5)
    store.set_log_start_offset("t", 1, 7)
    grown = store.add_partitions("t", 4, [2])
    assert grown.partitions[0] == t.partitions[0]
    assert (grown.partitions[1].leader_id, grown.partitions[1].log_start_offset) == (5, 7)
    assert [(p.leader_id, p.leader_epoch) for p in grown.partitions[2:]] == [(2, 0), (2, 0)]
    assert store.topic("t") == grown
    assert store.delete_topic("t") == grown  # returns the state it had
    with pytest.raises(UnknownTopic):
        store.move_partition("t", 1, 5, 1, 1)
    with pytest.raises(UnknownTopic):
        store.set_log_start_offset("t", 1, 9)
    again = store.create_topic("t", 2, {}, [3])  # a new incarnation starts afresh
    assert [(p.leader_id, p.leader_epoch, p.log_start_offset) for p in again.partitions] == [
        (3, 0, 0), (3, 0, 0),
    ]  # fmt: skip
    assert store.topic("t") == again
    assert store.partitions_led_by(5) == []


# -- SQLite across processes -------------------------------------------------------------------
def _sqlite_process(path: str, barrier: Any, results: Any, i: int) -> None:
    from broker_service.metadata.sqlite import SqliteMetadataStore

    store = SqliteMetadataStore(Path(path))
    barrier.wait()
    try:
        store.fence_broker(1, 1)
        won = True
    except ConcurrentUpdate:
        won = False
    moves = conflicts = 0
    while moves < 10:  # read-then-compare-and-set, as a controller would
        p = _partition(store, "t", 0)
        try:
            store.move_partition("t", 0, p.leader_id, p.leader_epoch, i)
            moves += 1
        except ConcurrentUpdate:
            conflicts += 1
    store.close()
    results.put((won, moves, conflicts))


def test_sqlite_compare_and_set_holds_across_processes(tmp_path: Path) -> None:
    from broker_service.metadata.sqlite import SqliteMetadataStore

    path = tmp_path / "metadata.sqlite"
    store = SqliteMetadataStore(path)
    store.register_broker(1, "h", 1, None, 1_000)
    store.create_topic("t", 1, {}, [0])
    ctx = multiprocessing.get_context("spawn")
    n = 4
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [
        ctx.Process(target=_sqlite_process, args=(str(path), barrier, results, i)) for i in range(n)
    ]
    for proc in procs:
        proc.start()
    try:
        got = [results.get(timeout=60) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=10)
    assert all(proc.exitcode == 0 for proc in procs)
    assert sum(won for won, _, _ in got) == 1  # fenced exactly once
    b = store.brokers()[0]
    assert (b.epoch, b.state) == (2, FENCED)
    p = _partition(store, "t", 0)
    assert p.leader_epoch == n * 10  # every successful move counted exactly once
    store.close()
