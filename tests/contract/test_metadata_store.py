"""The MetadataStore contract, run against every backend (SQLite file, DynamoDB on moto)."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from broker_service.metadata.errors import (
    BrokerFenced,
    ConcurrentUpdate,
    MetadataError,
    ObjectAlreadyCommitted,
    TopicAlreadyExists,
    UnknownTopic,
)
from broker_service.metadata.records import CommittedOffset, GroupRecord, StreamRange
from broker_service.metadata.store import MetadataStore

from .conftest import Backend


def _range(sid: int, start: int, end: int, key: str, pos: int = 0) -> StreamRange:
    return StreamRange(sid, start, end, key, pos, (end - start) * 10, 1_000 + end)


# -- cluster and brokers -----------------------------------------------------------------
def test_cluster_id_is_stable_across_calls_and_instances(backend: Backend) -> None:
    a, b = backend.store(), backend.store()
    cid = a.cluster_id()
    assert cid and isinstance(cid, str)
    assert a.cluster_id() == cid
    assert b.cluster_id() == cid


def test_register_broker_bumps_epoch_and_lists_brokers(store: MetadataStore) -> None:
    before = int(time.time() * 1000)
    b2 = store.register_broker(2, "h2", 9093, None, 5_000)
    b1 = store.register_broker(1, "h1", 9092, "az-1", 5_000)
    assert (b1.broker_id, b1.host, b1.port, b1.rack, b1.epoch, b1.state) == (
        1, "h1", 9092, "az-1", 1, "ACTIVE",
    )  # fmt: skip
    assert b1.lease_expiry_ms >= before + 5_000
    again = store.register_broker(1, "h1b", 9094, None, 5_000)
    assert again.epoch == b1.epoch + 1
    assert (again.host, again.port, again.rack, again.state) == ("h1b", 9094, None, "ACTIVE")
    assert store.brokers() == [again, b2]


# -- topics ------------------------------------------------------------------------------
def test_create_topic_and_read_it_back(store: MetadataStore) -> None:
    t = store.create_topic("orders", 3, {"retention.ms": "1000", "cleanup.policy": ""}, [7])
    assert t.name == "orders" and isinstance(t.topic_id, uuid.UUID)
    assert t.configs == {"retention.ms": "1000", "cleanup.policy": ""}
    assert [p.partition for p in t.partitions] == [0, 1, 2]
    assert len({p.stream_id for p in t.partitions}) == 3
    assert all(
        (p.topic, p.leader_id, p.leader_epoch, p.log_start_offset) == ("orders", 7, 0, 0)
        for p in t.partitions
    )
    assert store.topic("orders") == t
    assert store.topic("missing") is None
    with pytest.raises(TopicAlreadyExists):
        store.create_topic("orders", 1, {}, [7])
    assert store.topic("orders") == t  # untouched by the failed create


def test_topics_are_listed_by_name(store: MetadataStore) -> None:
    assert store.topics() == []
    b = store.create_topic("b", 1, {}, [1])
    a = store.create_topic("a", 2, {}, [1])
    a_b = store.create_topic("a-b", 1, {}, [1])
    empty = store.create_topic("no-partitions", 0, {}, [1])
    assert empty.partitions == ()
    assert store.topics() == [a, a_b, b, empty]
    sids = [p.stream_id for t in store.topics() for p in t.partitions]
    assert len(sids) == len(set(sids)) == 4


def test_add_partitions_keeps_existing_and_allocates_new_streams(store: MetadataStore) -> None:
    t = store.create_topic("t", 2, {}, [1])
    other = store.create_topic("other", 1, {}, [1])
    grown = store.add_partitions("t", 5, [3])
    assert grown.topic_id == t.topic_id
    assert grown.partitions[:2] == t.partitions
    assert [(p.partition, p.leader_id) for p in grown.partitions[2:]] == [(2, 3), (3, 3), (4, 3)]
    sids = {p.stream_id for p in grown.partitions} | {other.partitions[0].stream_id}
    assert len(sids) == 6
    assert store.topic("t") == grown
    assert store.add_partitions("t", 5, [3]) == grown  # not more: unchanged
    with pytest.raises(UnknownTopic):
        store.add_partitions("missing", 3, [1])


def test_new_partitions_are_placed_round_robin_in_the_write_that_creates_them(
    backend: Backend,
) -> None:
    """Kafka's controller places a new partition: its final leader at leader epoch 0 from
    the first moment, never created led by one broker and moved afterwards."""
    store = backend.store()
    t = store.create_topic("t", 7, {}, [3, 1, 2])
    want = [(p, (3, 1, 2)[p % 3], 0, 0) for p in range(7)]
    assert [(p.partition, p.leader_id, p.leader_epoch, p.log_start_offset)
            for p in t.partitions] == want  # fmt: skip
    assert backend.store().topic("t") == t  # as any other broker reads it
    # the i-th added partition is led by leader_ids[i % n], whatever the topic had before
    grown = store.add_partitions("t", 12, [2, 4])
    assert grown.partitions[:7] == t.partitions
    assert [(p.partition, p.leader_id, p.leader_epoch) for p in grown.partitions[7:]] == [
        (7, 2, 0), (8, 4, 0), (9, 2, 0), (10, 4, 0), (11, 2, 0),
    ]  # fmt: skip
    assert backend.store().topic("t") == grown
    assert len({p.stream_id for p in grown.partitions}) == 12
    # more leaders than partitions: the first ones lead
    assert [p.leader_id for p in store.create_topic("few", 2, {}, [5, 6, 7]).partitions] == [5, 6]
    # a placed partition moves from the leader it was placed on, at epoch 0
    moved = store.move_partition("t", 8, 4, 0, 1)
    assert (moved.leader_id, moved.leader_epoch) == (1, 1)
    with pytest.raises(ConcurrentUpdate):
        store.move_partition("t", 9, 3, 0, 1)  # partition 9 was placed on 2, not 3
    got = backend.store().topic("t")
    assert got is not None
    assert [(p.leader_id, p.leader_epoch) for p in got.partitions] == [
        (p.leader_id, p.leader_epoch) if p.partition != 8 else (1, 1) for p in grown.partitions
    ]
    assert [p.partition for p in store.partitions_led_by(2)] == [2, 5, 7, 9, 11]
    with pytest.raises(ValueError):
        store.create_topic("nobody", 1, {}, [])
    with pytest.raises(ValueError):
        store.add_partitions("t", 13, [])
    assert store.topic("nobody") is None
    assert backend.store().topic("t") == got


def test_delete_topic_forgets_it_and_never_reuses_stream_ids(store: MetadataStore) -> None:
    store.register_broker(1, "h", 1, None, 1000)
    t = store.create_topic("t", 2, {"a": "b"}, [1])
    keep = store.create_topic("keep", 1, {}, [1])
    epoch = store.brokers()[0].epoch
    sid, keep_sid = t.partitions[0].stream_id, keep.partitions[0].stream_id
    store.commit_object(
        1, epoch, "o1", 100, [_range(sid, 0, 5, "o1"), _range(keep_sid, 0, 3, "o1")]
    )
    assert store.delete_topic("t") == t
    assert store.topic("t") is None
    assert [x.name for x in store.topics()] == ["keep"]
    assert store.stream_ranges(sid) == []
    assert store.stream_ranges(keep_sid) == [_range(keep_sid, 0, 3, "o1")]
    with pytest.raises(UnknownTopic):
        store.delete_topic("t")
    with pytest.raises(UnknownTopic):
        store.delete_topic("never-was")
    again = store.create_topic("t", 2, {}, [1])
    assert again.topic_id != t.topic_id and again.configs == {}
    old = {p.stream_id for p in t.partitions} | {keep_sid}
    assert not old & {p.stream_id for p in again.partitions}
    assert all(store.stream_ranges(p.stream_id) == [] for p in again.partitions)


def test_delete_topic_deletes_its_committed_offsets(store: MetadataStore) -> None:
    store.create_topic("t", 2, {}, [1])
    store.create_topic("u", 1, {}, [1])
    store.save_group(GroupRecord("g1", "classic", "consumer"))
    t0, u0 = CommittedOffset("t", 0, 5, 0, None, 1), CommittedOffset("u", 0, 7, 0, None, 1)
    store.commit_offsets("g1", [t0, u0])
    store.commit_offsets("g2", [CommittedOffset("t", 1, 9, 0, None, 1)])
    store.delete_topic("t")
    assert store.committed_offsets("g1") == [u0]
    assert store.committed_offsets("g2") == []
    assert [g.group_id for g in store.groups()] == ["g1"]  # g2 existed only by its offsets
    store.create_topic("t", 2, {}, [1])  # a new incarnation starts with no offsets
    assert store.committed_offsets("g1") == [u0]


# -- objects, ranges and fencing -----------------------------------------------------------
def test_stream_ranges_are_ordered_by_start_offset(store: MetadataStore) -> None:
    me = store.register_broker(1, "h", 1, None, 1000)
    t = store.create_topic("t", 2, {}, [1])
    s0, s1 = (p.stream_id for p in t.partitions)
    k2 = [_range(s0, 10, 20, "k2"), _range(s1, 0, 4, "k2", 100)]
    store.commit_object(1, me.epoch, "k2", 200, k2)
    store.commit_object(1, me.epoch, "k1", 100, [_range(s0, 0, 10, "k1")])
    store.commit_object(1, me.epoch, "k3", 100, [_range(s0, 20, 21, "k3")])
    store.commit_object(1, me.epoch, "empty", 0, [])
    assert store.stream_ranges(s0) == [
        _range(s0, 0, 10, "k1"),
        _range(s0, 10, 20, "k2"),
        _range(s0, 20, 21, "k3"),
    ]
    assert store.stream_ranges(s1) == [_range(s1, 0, 4, "k2", 100)]
    assert store.stream_ranges(12345) == []
    big = StreamRange(s1, 4, 2**40, "k4", 2**33, 2**32 + 5, -1)  # values past 32 bits
    store.commit_object(1, me.epoch, "k4", 2**34, [big])
    assert store.stream_ranges(s1)[-1] == big


def test_a_range_committed_again_under_another_key_replaces_the_first(backend: Backend) -> None:
    """A commit whose answer was lost may be retried with the same key (refused as
    ObjectAlreadyCommitted, nothing changes) or uploaded again under a new key from the same
    start offset (the file WAL's next upload): the later range replaces the first, which is
    then referenced by nothing (compaction releases it)."""
    store, reader = backend.store(), backend.store()
    me = store.register_broker(1, "h", 1, None, 60_000)
    sid = store.create_topic("t", 1, {}, [1]).partitions[0].stream_id
    first = _range(sid, 0, 10, "k1")
    store.commit_object(1, me.epoch, "k1", 100, [first])
    with pytest.raises(ObjectAlreadyCommitted):
        store.commit_object(1, me.epoch, "k1", 100, [first])
    again = _range(sid, 0, 14, "k2")  # the same records and four more, in a new object
    store.commit_object(1, me.epoch, "k2", 140, [again])
    store.commit_object(1, me.epoch, "k3", 100, [_range(sid, 14, 20, "k3")])
    assert reader.stream_ranges(sid) == [again, _range(sid, 14, 20, "k3")]
    with pytest.raises(MetadataError, match="duplicate"):
        store.commit_object(1, me.epoch, "k4", 100, [_range(sid, 20, 21, "k4")] * 2)
    assert store.committed_objects(["k1", "k2", "k4"]) == {"k1", "k2"}


def test_commit_is_fenced_by_epoch_after_re_registration(backend: Backend) -> None:
    a, b = backend.store(), backend.store()
    old = a.register_broker(1, "h", 1, None, 1000)
    sid = a.create_topic("t", 1, {}, [1]).partitions[0].stream_id
    r = _range(sid, 0, 10, "k1")
    a.commit_object(1, old.epoch, "k1", 118, [r])
    new = b.register_broker(1, "h", 1, None, 1000)  # a restart elsewhere: new epoch
    assert new.epoch == old.epoch + 1
    with pytest.raises(BrokerFenced):
        a.commit_object(1, old.epoch, "k2", 118, [_range(sid, 10, 20, "k2")])
    with pytest.raises(BrokerFenced):  # a future epoch is no better
        a.commit_object(1, new.epoch + 1, "k3", 118, [_range(sid, 10, 20, "k3")])
    with pytest.raises(BrokerFenced):  # a broker that never registered
        a.commit_object(99, 1, "k4", 118, [_range(sid, 10, 20, "k4")])
    assert a.stream_ranges(sid) == b.stream_ranges(sid) == [r]
    b.commit_object(1, new.epoch, "k5", 118, [_range(sid, 10, 20, "k5")])
    assert [x.object_key for x in a.stream_ranges(sid)] == ["k1", "k5"]


def test_commit_is_refused_unless_broker_is_active(backend: Backend) -> None:
    store = backend.store()
    me = store.register_broker(1, "h", 1, None, 1000)
    sid = store.create_topic("t", 1, {}, [1]).partitions[0].stream_id
    backend.set_broker_state(1, "FENCED")
    with pytest.raises(BrokerFenced):
        store.commit_object(1, me.epoch, "k1", 10, [_range(sid, 0, 1, "k1")])
    assert store.stream_ranges(sid) == []
    backend.set_broker_state(1, "ACTIVE")
    store.commit_object(1, me.epoch, "k1", 10, [_range(sid, 0, 1, "k1")])
    assert store.stream_ranges(sid) == [_range(sid, 0, 1, "k1")]


def test_commit_of_300_streams_is_atomic_and_readable(backend: Backend) -> None:
    """More ranges than DynamoDB allows items in one transaction (100)."""
    store, reader = backend.store(), backend.store()
    me = store.register_broker(1, "h", 1, None, 1000)
    t = store.create_topic("wide", 300, {}, [1])
    sids = [p.stream_id for p in t.partitions]
    ranges = [_range(sid, 0, 3 + i, "big", pos=i * 64) for i, sid in enumerate(sids)]
    store.commit_object(1, me.epoch, "big", 300 * 64, ranges)
    with ThreadPoolExecutor(8) as pool:  # 300 reads: in parallel to keep the test quick
        assert list(pool.map(reader.stream_ranges, sids)) == [[r] for r in ranges]
    # a fenced commit of as many streams leaves no trace at all
    store.register_broker(1, "h", 1, None, 1000)
    later = [
        _range(sid, r.end_offset, r.end_offset + 1, "big2")
        for sid, r in zip(sids, ranges, strict=True)
    ]
    with pytest.raises(BrokerFenced):
        store.commit_object(1, me.epoch, "big2", 300, later)
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(reader.stream_ranges, sids)) == [[r] for r in ranges]


# -- counters ------------------------------------------------------------------------------
def test_producer_id_blocks_are_consecutive_and_disjoint(store: MetadataStore) -> None:
    first = store.allocate_producer_ids(10)
    second = store.allocate_producer_ids(10)
    third = store.allocate_producer_ids(1)
    assert first >= 0
    assert second == first + 10 and third == second + 10


def test_counters_are_unique_across_store_instances(backend: Backend) -> None:
    stores = [backend.store(), backend.store()]

    def pids(i: int) -> list[int]:
        s = stores[i % 2]
        return [s.allocate_producer_ids(5) for _ in range(10)]

    def topics(i: int) -> list[int]:
        s = stores[i % 2]
        t = s.create_topic(f"t{i}", 3, {}, [1])
        return [p.stream_id for p in t.partitions]

    with ThreadPoolExecutor(4) as pool:
        starts = [x for xs in pool.map(pids, range(4)) for x in xs]
        sids = [x for xs in pool.map(topics, range(6)) for x in xs]
    ids = [s + k for s in starts for k in range(5)]
    assert len(ids) == len(set(ids)) == 200
    assert len(sids) == len(set(sids)) == 18


# -- consumer groups -------------------------------------------------------------------------
def test_groups_save_list_and_delete(store: MetadataStore) -> None:
    assert store.groups() == []
    store.save_group(GroupRecord("b", "consumer", "consumer"))
    store.save_group(GroupRecord("a", "classic", "consumer"))
    store.save_group(GroupRecord("a", "classic", "connect"))  # saved again: replaced
    store.commit_offsets("c-offsets-only", [CommittedOffset("t", 0, 1, 0, None, 1)])
    assert store.groups() == [
        GroupRecord("a", "classic", "connect"),
        GroupRecord("b", "consumer", "consumer"),
        GroupRecord("c-offsets-only", "classic", ""),
    ]
    store.commit_offsets("a", [CommittedOffset("t", 0, 1, 0, None, 1)])
    store.delete_group("a")
    store.delete_group("c-offsets-only")
    store.delete_group("never-was")
    assert store.groups() == [GroupRecord("b", "consumer", "consumer")]
    assert store.committed_offsets("a") == []
    assert store.committed_offsets("c-offsets-only") == []


def test_offsets_round_trip(backend: Backend) -> None:
    store, other = backend.store(), backend.store()
    assert store.committed_offsets("g") == []
    before = int(time.time() * 1000)
    store.commit_offsets(
        "g",
        [
            CommittedOffset("t", 1, 10, 3, "meta", 1234),
            CommittedOffset("b.topic", 0, 0, -1, None, 99),
            CommittedOffset("t", 0, 2**40, 0, "", 0),  # commit_ms 0: stamped now
            CommittedOffset("t", 1, 11, 4, "later wins", 1235),
        ],
    )
    got = other.committed_offsets("g")
    assert [(o.topic, o.partition) for o in got] == [("b.topic", 0), ("t", 0), ("t", 1)]
    assert got[0] == CommittedOffset("b.topic", 0, 0, -1, None, 99)
    assert (got[1].offset, got[1].leader_epoch, got[1].metadata) == (2**40, 0, "")
    assert got[1].commit_ms >= before
    assert got[2] == CommittedOffset("t", 1, 11, 4, "later wins", 1235)
    other.commit_offsets("g", [CommittedOffset("t", 1, 20, 4, None, 2000)])
    assert store.committed_offsets("g")[2] == CommittedOffset("t", 1, 20, 4, None, 2000)
    assert store.committed_offsets("other-group") == []


def test_many_offsets_in_one_commit(store: MetadataStore) -> None:
    offsets = [CommittedOffset(f"t{i % 3}", i, i * 2, 0, None, 5) for i in range(250)]
    store.commit_offsets("g", offsets)
    assert store.committed_offsets("g") == sorted(offsets, key=lambda o: (o.topic, o.partition))


def test_delete_offsets(store: MetadataStore) -> None:
    store.save_group(GroupRecord("g", "classic", "consumer"))
    store.commit_offsets(
        "g", [CommittedOffset("t", p, p, 0, None, 1) for p in range(3)]
        + [CommittedOffset("u", 0, 5, 0, None, 1)],
    )  # fmt: skip
    store.delete_offsets("g", [("t", 0), ("t", 2), ("t", 7), ("missing", 0)])
    assert store.committed_offsets("g") == [
        CommittedOffset("t", 1, 1, 0, None, 1),
        CommittedOffset("u", 0, 5, 0, None, 1),
    ]
    store.delete_offsets("g", [("t", 1), ("u", 0)])
    assert store.committed_offsets("g") == []
    assert store.groups() == [GroupRecord("g", "classic", "consumer")]  # the group stays
    store.commit_offsets("h", [CommittedOffset("t", 0, 1, 0, None, 1)])
    store.delete_offsets("h", [("t", 0)])
    assert [g.group_id for g in store.groups()] == ["g"]  # nothing left of h
