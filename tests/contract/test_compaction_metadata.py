"""Metadata operations of compaction and retention, on every backend (SQLite, DynamoDB on
moto): the compactor lease, the compare-and-set range swap, release marks."""

from __future__ import annotations

import threading

import pytest

from broker_service.metadata.errors import ConcurrentUpdate
from broker_service.metadata.records import (
    MAX_COMPACTOR_SHARDS,
    StreamRange,
    compactor_shard,
    next_compactor_epoch,
)
from broker_service.metadata.store import MetadataStore

from .conftest import Backend

NOW = 1_800_000_000_000


def _range(sid: int, start: int, end: int, key: str, pos: int = 0) -> StreamRange:
    return StreamRange(sid, start, end, key, pos, (end - start) * 10, 1_000 + end)


def _stream_with_objects(store: MetadataStore) -> tuple[int, list[StreamRange]]:
    """Topic with one partition whose stream has ranges in three broker objects."""
    sid = store.create_topic("t", 1, {}, [1]).partitions[0].stream_id
    b = store.register_broker(1, "h", 9092, None, 60_000)
    ranges = []
    for i, key in enumerate(["wal/a", "wal/b", "wal/c"]):
        r = _range(sid, i * 10, i * 10 + 10, key)
        store.commit_object(1, b.epoch, key, 100, [r])
        ranges.append(r)
    return sid, ranges


def test_compactor_lease_one_holder_at_a_time_and_epochs_grow(store: MetadataStore) -> None:
    first = store.acquire_compactor_lease("a", 1000, NOW)
    assert (first.owner, first.expiry_ms) == ("a", NOW + 1000)
    with pytest.raises(ConcurrentUpdate):
        store.acquire_compactor_lease("b", 1000, NOW + 999)
    second = store.acquire_compactor_lease("b", 1000, NOW + 1000)  # expired: taken over
    assert second.epoch == next_compactor_epoch(first.epoch, 0) > first.epoch
    store.release_compactor_lease(first.epoch)  # stale release: no effect
    with pytest.raises(ConcurrentUpdate):
        store.acquire_compactor_lease("c", 1000, NOW + 1001)
    store.release_compactor_lease(second.epoch)
    assert store.acquire_compactor_lease("a", 1000, NOW + 1001).epoch == next_compactor_epoch(
        second.epoch, 0
    )


def test_compactor_shards_have_leases_of_their_own(store: MetadataStore) -> None:
    """COMPACTION_SHARDS > 1: each shard's lease is taken, fenced and released on its own, and
    its epochs name it (a swap checks the lease of the shard whose epoch it carries)."""
    zero = store.acquire_compactor_lease("z", 60_000, NOW)
    one = store.acquire_compactor_lease("o", 1000, NOW, shard=1)  # shard 0 held: no matter
    three = store.acquire_compactor_lease("t", 60_000, NOW, shard=3)
    assert [compactor_shard(x.epoch) for x in (zero, one, three)] == [0, 1, 3]
    with pytest.raises(ConcurrentUpdate):
        store.acquire_compactor_lease("o2", 1000, NOW + 10, shard=1)
    sid, ranges = _stream_with_objects(store)
    # shard 1's lease expired while shards 0 and 3 hold theirs: its swap is refused
    with pytest.raises(ConcurrentUpdate):
        store.replace_stream_ranges(one.epoch, sid, ranges[:1], [], None, 0, NOW + 1500)
    assert store.stream_ranges(sid) == ranges
    store.replace_stream_ranges(three.epoch, sid, ranges[:1], [], None, 0, NOW + 1500)
    assert store.stream_ranges(sid) == ranges[1:]
    # a stale epoch of shard 1 does not end shard 3's lease, its own does
    store.release_compactor_lease(one.epoch)
    store.release_compactor_lease(three.epoch)
    again = store.acquire_compactor_lease("t2", 60_000, NOW + 1501, shard=3)
    assert again.epoch == next_compactor_epoch(three.epoch, 3)
    with pytest.raises(ConcurrentUpdate):
        store.replace_stream_ranges(three.epoch, sid, ranges[1:2], [], None, 0, NOW + 1502)
    with pytest.raises(ConcurrentUpdate):  # shard 0 is still held
        store.acquire_compactor_lease("z2", 60_000, NOW + 1502)


def test_next_compactor_epoch_names_the_shard_and_grows() -> None:
    assert next_compactor_epoch(0, 0) == MAX_COMPACTOR_SHARDS
    assert next_compactor_epoch(0, 5) == 5
    assert next_compactor_epoch(5, 5) == MAX_COMPACTOR_SHARDS + 5
    # a lease epoch of before shards (1, 2, ...) moves on to shard 0's next multiple
    assert next_compactor_epoch(7, 0) == MAX_COMPACTOR_SHARDS
    with pytest.raises(ValueError):
        next_compactor_epoch(0, MAX_COMPACTOR_SHARDS)


def test_racing_acquirers_get_one_lease(backend: Backend) -> None:
    stores = [backend.store() for _ in range(6)]
    won: list[int] = []
    lost: list[int] = []
    barrier = threading.Barrier(len(stores))

    def race(i: int) -> None:
        barrier.wait()
        try:
            stores[i].acquire_compactor_lease(f"r{i}", 60_000, NOW)
            won.append(i)
        except ConcurrentUpdate:
            lost.append(i)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(won) == 1 and len(lost) == len(stores) - 1


def test_swap_replaces_ranges_atomically_and_marks_no_object(store: MetadataStore) -> None:
    sid, ranges = _stream_with_objects(store)
    lease = store.acquire_compactor_lease("c", 60_000, NOW)
    merged = StreamRange(sid, 0, 20, "so/merged", 0, 200, ranges[1].max_timestamp)
    store.replace_stream_ranges(lease.epoch, sid, ranges[:2], [merged], "so/merged", 218, NOW)
    assert store.stream_ranges(sid) == [merged, ranges[2]]
    assert store.committed_objects(["so/merged", "wal/a", "wal/zzz"]) == {"so/merged", "wal/a"}
    # the old objects may hold other streams' ranges: garbage collection marks them once no
    # range names them (a mark per old object made each swap write ~80 items)
    assert store.released_objects() == {}

    # the same swap again: the old ranges are gone, nothing changes
    with pytest.raises(ConcurrentUpdate):
        store.replace_stream_ranges(
            lease.epoch, sid, ranges[:2], [merged], "so/other", 218, NOW + 1
        )
    assert store.stream_ranges(sid) == [merged, ranges[2]]
    assert "so/other" not in store.committed_objects(["so/other"])

    # a range that changed (another object now) is refused as well
    changed = StreamRange(sid, 20, 30, "wal/elsewhere", 0, 100, 1030)
    with pytest.raises(ConcurrentUpdate):
        store.replace_stream_ranges(lease.epoch, sid, [changed], [], None, 0, NOW)

    # retention: drop ranges, no new object
    store.replace_stream_ranges(lease.epoch, sid, [merged], [], None, 0, NOW + 5)
    assert store.stream_ranges(sid) == [ranges[2]]
    assert store.released_objects() == {}


def test_swap_is_fenced_by_the_lease(store: MetadataStore) -> None:
    sid, ranges = _stream_with_objects(store)
    old = store.acquire_compactor_lease("old", 1000, NOW)
    new = store.acquire_compactor_lease("new", 60_000, NOW + 2000)  # old one expired
    with pytest.raises(ConcurrentUpdate):  # the overrunning run is fenced
        store.replace_stream_ranges(old.epoch, sid, ranges[:1], [], None, 0, NOW + 500)
    with pytest.raises(ConcurrentUpdate):  # and a lease past its expiry is refused too
        store.replace_stream_ranges(new.epoch, sid, ranges[:1], [], None, 0, NOW + 70_000)
    assert store.stream_ranges(sid) == ranges
    assert store.released_objects() == {}
    store.replace_stream_ranges(new.epoch, sid, ranges[:1], [], None, 0, NOW + 2001)
    assert store.stream_ranges(sid) == ranges[1:]


def test_release_marks(store: MetadataStore) -> None:
    _sid, _ranges = _stream_with_objects(store)
    store.mark_released(["wal/a", "wal/b"], NOW)
    store.mark_released(["wal/a", "wal/c"], NOW + 10)  # keeps the older mark
    assert store.released_objects() == {"wal/a": NOW, "wal/b": NOW, "wal/c": NOW + 10}
    store.unmark_released(["wal/c"])
    store.forget_objects(["wal/a"])
    assert store.released_objects() == {"wal/b": NOW}
    assert store.committed_objects(["wal/a", "wal/b", "wal/c"]) == {"wal/b", "wal/c"}


def test_a_merge_of_the_most_ranges_a_run_swaps_lands(store: MetadataStore) -> None:
    """Compaction merges up to MAX_SWAP_RANGES ranges, from as many objects (WAL objects), in
    one swap: it must land (on DynamoDB: one transaction of at most 100 actions, or a merge of
    the stream's chunks first)."""
    from broker_service.control.compaction import MAX_SWAP_RANGES

    sid = store.create_topic("wide", 1, {}, [1]).partitions[0].stream_id
    b = store.register_broker(1, "h", 9092, None, 60_000)
    ranges = []
    per_object = 20  # ranges of the stream in one object: fewer calls, still many objects
    for i in range(0, MAX_SWAP_RANGES + 5, per_object):
        key = f"wal/w{i:04d}"
        batch = [_range(sid, j * 10, j * 10 + 10, key, j * 100) for j in range(i, i + per_object)]
        store.commit_object(1, b.epoch, key, 100 * per_object, batch)
        ranges += batch
    lease = store.acquire_compactor_lease("c", 60_000, NOW)
    old = ranges[:MAX_SWAP_RANGES]
    merged = StreamRange(sid, 0, old[-1].end_offset, "so/wide", 0, 10 * old[-1].end_offset,
                         old[-1].max_timestamp)  # fmt: skip
    store.replace_stream_ranges(lease.epoch, sid, old, [merged], "so/wide", 1000, NOW)
    assert store.stream_ranges(sid) == [merged, *ranges[MAX_SWAP_RANGES:]]
    assert store.released_objects() == {}
