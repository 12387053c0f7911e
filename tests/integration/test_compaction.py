"""Compaction and retention on the embedded stores (local directory + SQLite), against a real
broker process and real Kafka clients; compaction runs in the test process on the same data
directory, exactly as another broker's timer (or the Lambda on S3/DynamoDB) would."""

from __future__ import annotations

import asyncio
import struct
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

from broker_service.config.compaction import CompactionConfig
from broker_service.control.compaction import CompactionResult, compact, object_created_ms
from broker_service.metadata.sqlite import SqliteMetadataStore
from broker_service.protocol.record_batch import iter_headers
from broker_service.protocol.record_filter import records_of
from broker_service.stream.objectstore.fs import FsObjectStore
from tests.integration.compaction_helpers import (
    SMALL_OBJECTS_ENV,
    all_batches,
    create_topic,
    fetch_error_and_records,
    list_offset,
    produce_rounds,
    wait_committed,
)
from tests.support.broker import BrokerProcess
from tests.support.objects import CountingGets
from tests.support.wait import wait_until

OFFSET_OUT_OF_RANGE = 1
POLICY_VIOLATION = 44


@pytest.fixture
def small_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    b = BrokerProcess(tmp_path / "data", **SMALL_OBJECTS_ENV).start()
    yield b
    b.stop()


def _run(data: Path, gets: Counter[str] | None = None, **knobs: float) -> CompactionResult:
    config = CompactionConfig(**{"replaced_grace_ms": 0, **knobs})  # type: ignore[arg-type]
    metadata = SqliteMetadataStore(data / "metadata.sqlite")
    objects = CountingGets(data / "objects")
    try:
        return asyncio.run(compact(metadata, objects, config))
    finally:
        metadata.close()
        if gets is not None:
            gets.update(objects.gets)


def _objects(data: Path) -> list[Path]:
    return sorted(p for p in (data / "objects").rglob("*.sso"))


def _topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _wait_committed(data: Path, topic: str, end: int) -> None:
    """Until the broker committed partition 0's offsets up to ``end`` (uploads are async)."""
    wait_committed(data, topic, {0: end})


def test_compaction_keeps_every_byte_and_drops_objects(small_broker: BrokerProcess) -> None:
    data = small_broker.data_dir
    topic = _topic("merge")
    create_topic(small_broker.bootstrap, topic)
    acked = produce_rounds(small_broker.bootstrap, topic, rounds=25, per_round=40, data=data)
    assert acked == 1000
    _wait_committed(data, topic, 1000)
    before = all_batches(small_broker.port, topic)
    objects_before = _objects(data)
    assert len(objects_before) >= 20

    # replaced objects stay for the grace period: readers holding them keep reading
    first = _run(data, target_object_bytes=1 << 20, replaced_grace_ms=60_000)
    assert first.swaps >= 1 and first.conflicts == 0 and first.objects_deleted == 0
    assert len(_objects(data)) == len(objects_before) + first.swaps
    assert all_batches(small_broker.port, topic) == before
    second = _run(data, target_object_bytes=1 << 20)  # grace period 0: delete them now
    assert second.swaps == 0
    assert second.objects_deleted == len(objects_before)
    objects_after = _objects(data)
    assert len(objects_after) <= 2, objects_after
    # the broker still names the deleted objects: it re-reads the ranges and serves the same
    assert all_batches(small_broker.port, topic) == before
    # and a real client reads every record at its offset
    c = Consumer({"bootstrap.servers": small_broker.bootstrap, "group.id": "g",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 1000 and time.monotonic() < deadline:
        for m in c.consume(500, 0.5):
            assert m.error() is None, m.error()
            got.append((m.offset(), m.key()))
    c.close()
    assert got == [(i, f"k{i}".encode()) for i in range(1000)]


def test_consumers_never_fail_while_compaction_swaps_and_deletes(
    small_broker: BrokerProcess,
) -> None:
    """Readers re-read from offset 0 in a loop while a producer appends and compaction runs
    with no grace period at all (the worst case: objects vanish right after the swap)."""
    data = small_broker.data_dir
    topic = _topic("busy")
    create_topic(small_broker.bootstrap, topic)
    produce_rounds(small_broker.bootstrap, topic, rounds=10, per_round=30, data=data)
    stop = threading.Event()
    failures: list[str] = []
    passes = 0

    def reader() -> None:
        nonlocal passes
        while not stop.is_set():
            try:
                batches = all_batches(small_broker.port, topic)
                offsets = [int.from_bytes(b[:8], "big") for b in batches]
                assert offsets == sorted(offsets) and offsets[0] == 0
                passes += 1
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                failures.append(repr(exc))

    def producer() -> None:
        while not stop.is_set():
            produce_rounds(small_broker.bootstrap, topic, rounds=1, per_round=20, pause=0.02)

    threads = [threading.Thread(target=reader), threading.Thread(target=producer)]
    for t in threads:
        t.start()
    try:
        swaps = runs = 0

        def compacted_enough() -> bool:  # at least 6 runs, 2 swaps, 3 full reads meanwhile
            nonlocal swaps, runs
            swaps += _run(data, target_object_bytes=256 << 10).swaps
            runs += 1
            return runs >= 6 and swaps >= 2 and passes >= 3 and not failures

        wait_until(compacted_enough, 90, lambda: f"{runs} runs, {swaps} swaps, {passes} "
                   f"passes, failures {failures[:3]}", interval=0)  # fmt: skip
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert failures == []
    hw = list_offset(small_broker.port, topic, -1)
    batches = all_batches(small_broker.port, topic)
    assert sum(int.from_bytes(b[57:61], "big") for b in batches) == hw  # every record, once


def test_retention_bytes_moves_the_log_start_and_deletes_whole_objects(
    small_broker: BrokerProcess,
) -> None:
    data = small_broker.data_dir
    topic = _topic("retain")
    create_topic(small_broker.bootstrap, topic, {"retention.bytes": "20000"})
    produce_rounds(small_broker.bootstrap, topic, rounds=20, per_round=20, data=data)
    _wait_committed(data, topic, 400)
    assert list_offset(small_broker.port, topic, -2) == 0
    result = _run(data, target_object_bytes=1)  # retention only: no range is small
    assert result.retention_moves and result.ranges_dropped > 0
    lso = result.retention_moves[0][2]
    assert 0 < lso < 400
    wait_until(lambda: list_offset(small_broker.port, topic, -2) == lso, 10,  # the leader
               "the log start offset moved")  # follows the metadata store  # fmt: skip
    error, _, _ = fetch_error_and_records(small_broker.port, topic, lso - 1)
    assert error == OFFSET_OUT_OF_RANGE
    assert int.from_bytes(all_batches(small_broker.port, topic, lso)[0][:8], "big") <= lso
    metadata = SqliteMetadataStore(data / "metadata.sqlite")
    try:
        rec = metadata.topic(topic)
        assert rec is not None
        ranges = metadata.stream_ranges(rec.partitions[0].stream_id)
        assert ranges[0].start_offset == lso  # whole ranges dropped, none cut
        assert sum(r.size for r in ranges) < 20000 + ranges[0].size
    finally:
        metadata.close()
    assert result.objects_deleted == result.ranges_dropped  # one stream per object here


def test_retention_ms_drops_old_data(small_broker: BrokerProcess) -> None:
    data = small_broker.data_dir
    topic = _topic("aged")
    create_topic(small_broker.bootstrap, topic, {"retention.ms": "60000"})
    now_ms = int(time.time() * 1000)  # retention reads the records' own (create) timestamps
    produce_rounds(small_broker.bootstrap, topic, rounds=5, per_round=10, data=data,
                   timestamp_ms=now_ms - 600_000)  # ten minutes old  # fmt: skip
    produce_rounds(small_broker.bootstrap, topic, rounds=2, per_round=10, data=data,
                   timestamp_ms=now_ms)  # fmt: skip
    result = _run(data, target_object_bytes=1)
    assert result.retention_moves and result.retention_moves[0][2] == 50


def test_delete_records(small_broker: BrokerProcess) -> None:
    data = small_broker.data_dir
    topic = _topic("delrec")
    create_topic(small_broker.bootstrap, topic)
    produce_rounds(small_broker.bootstrap, topic, rounds=10, per_round=10, data=data)
    _wait_committed(data, topic, 100)
    admin = AdminClient({"bootstrap.servers": small_broker.bootstrap})
    fut = admin.delete_records([TopicPartition(topic, 0, 55)])[TopicPartition(topic, 0, 55)]
    assert fut.result(15).low_watermark == 55  # the new low watermark
    assert list_offset(small_broker.port, topic, -2) == 55
    assert fetch_error_and_records(small_broker.port, topic, 54)[0] == OFFSET_OUT_OF_RANGE
    # the batch holding 55 is still served (the client skips records below 55)
    first = all_batches(small_broker.port, topic, 55)[0]
    assert int.from_bytes(first[:8], "big") <= 55
    # out of range and compact-only topics get Kafka's errors
    bad = admin.delete_records([TopicPartition(topic, 0, 1000)])[TopicPartition(topic, 0, 1000)]
    with pytest.raises(Exception) as err:
        bad.result(15)
    assert err.value.args[0].code() == KafkaError.OFFSET_OUT_OF_RANGE
    compacted = _topic("compact-only")
    create_topic(small_broker.bootstrap, compacted, {"cleanup.policy": "compact"})
    produce_rounds(small_broker.bootstrap, compacted, rounds=1, per_round=5, data=data)
    tp = TopicPartition(compacted, 0, 2)
    with pytest.raises(Exception) as err:
        admin.delete_records([tp])[tp].result(15)
    assert err.value.args[0].code() == KafkaError.POLICY_VIOLATION
    # the compactor drops the ranges below 55 and deletes their objects
    result = _run(data, target_object_bytes=1)
    assert result.ranges_dropped >= 5 and result.objects_deleted >= 5
    assert list_offset(small_broker.port, topic, -2) == 55
    assert int.from_bytes(all_batches(small_broker.port, topic, 55)[0][:8], "big") <= 55


def _records(batches: list[bytes]) -> list[tuple[int, bytes | None, bool]]:
    out = []
    for b in batches:
        for _, h in iter_headers(b):
            out += [(r.offset, r.key, r.is_tombstone) for r in records_of(h, b)]
    return out


def test_compacted_topic_keeps_the_last_value_per_key(small_broker: BrokerProcess) -> None:
    data = small_broker.data_dir
    topic = _topic("table")
    create_topic(
        small_broker.bootstrap, topic, {"cleanup.policy": "compact", "delete.retention.ms": "0"}
    )

    def record(n: int) -> tuple[bytes | None, bytes | None]:
        key = f"key-{n % 10}".encode()
        if n % 10 == 9 and n < 300:
            return key, None  # tombstones for key-9 while n < 300 ...
        return key, f"v{n}".encode()

    produce_rounds(small_broker.bootstrap, topic, rounds=20, per_round=20, record=record,
                   data=data)  # fmt: skip
    # ... and a last tombstone for key-3: after compaction key-3 is gone entirely
    produce_rounds(small_broker.bootstrap, topic, rounds=1, per_round=1,
                   record=lambda n: (b"key-3", None), data=data)  # fmt: skip
    produce_rounds(small_broker.bootstrap, topic, rounds=1, per_round=1,
                   record=lambda n: (b"other", b"head"), data=data)  # fmt: skip
    _wait_committed(data, topic, 402)
    before = _records(all_batches(small_broker.port, topic))
    assert len(before) == 402
    latest = {k: o for o, k, _ in before}

    metadata = SqliteMetadataStore(data / "metadata.sqlite")
    try:
        rec = metadata.topic(topic)
        assert rec is not None
        head = metadata.stream_ranges(rec.partitions[0].stream_id)[-1].start_offset
    finally:
        metadata.close()
    result = _run(data, target_object_bytes=1 << 20)
    assert result.records_removed > 300
    after = _records(all_batches(small_broker.port, topic))
    # every key's latest record is there at its offset, and only once per key (but the
    # newest range, like Kafka's active segment, is not cleaned)
    for key, offset in latest.items():
        if key == b"key-3":
            continue
        assert (offset, key, False) in after
    stale = [(o, k) for o, k, _ in after if o < head and o != latest[k]]
    assert stale == [], f"superseded records stayed: {stale}"
    # the tombstone and what it deleted are gone (the head range is not cleaned)
    assert not any(k == b"key-3" for o, k, _ in after if o < head)
    offsets = [o for o, _, _ in after]
    assert offsets == sorted(offsets)
    assert list_offset(small_broker.port, topic, -1) == 402  # the log end never moves
    # a real client reads the table and sees the latest value of each key
    c = Consumer({"bootstrap.servers": small_broker.bootstrap, "group.id": "t",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    table: dict[bytes, bytes | None] = {}
    deadline = time.monotonic() + 20
    last = -1
    while last < 401 and time.monotonic() < deadline:
        for m in c.consume(500, 0.5):
            assert m.error() is None, m.error()
            table[m.key()] = m.value()
            last = m.offset()
    c.close()
    assert table[b"key-0"] == b"v390" and table[b"other"] == b"head"
    assert b"key-3" not in table
    assert table[b"key-9"] == b"v399"


def test_two_concurrent_runs_do_not_corrupt_anything(small_broker: BrokerProcess) -> None:
    data = small_broker.data_dir
    topic = _topic("race")
    create_topic(small_broker.bootstrap, topic)
    produce_rounds(small_broker.bootstrap, topic, rounds=20, per_round=20, data=data)
    _wait_committed(data, topic, 400)
    before = all_batches(small_broker.port, topic)
    results: list[CompactionResult] = []
    barrier = threading.Barrier(2)

    def one() -> None:
        barrier.wait()
        results.append(_run(data, target_object_bytes=1 << 20))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 2
    assert sorted(r.skipped is None for r in results) in ([False, True], [True, True])
    assert all_batches(small_broker.port, topic) == before
    # a run whose lease was taken over is fenced: its swap is refused, nothing changes
    metadata = SqliteMetadataStore(data / "metadata.sqlite")
    try:
        stale = metadata.acquire_compactor_lease("stale", 1, int(time.time() * 1000) - 10)
        metadata.acquire_compactor_lease("new", 60_000, int(time.time() * 1000))
        rec = metadata.topic(topic)
        assert rec is not None
        ranges = metadata.stream_ranges(rec.partitions[0].stream_id)
        from broker_service.metadata.errors import ConcurrentUpdate

        with pytest.raises(ConcurrentUpdate):
            metadata.replace_stream_ranges(
                stale.epoch, ranges[0].stream_id, ranges, [], None, 0, int(time.time() * 1000)
            )
        assert metadata.stream_ranges(rec.partitions[0].stream_id) == ranges
    finally:
        metadata.close()


def test_orphans_are_deleted_after_the_grace_period_and_committed_objects_never(
    small_broker: BrokerProcess,
) -> None:
    data = small_broker.data_dir
    topic = _topic("orphan")
    create_topic(small_broker.bootstrap, topic)
    produce_rounds(small_broker.bootstrap, topic, rounds=3, per_round=10, data=data)
    _wait_committed(data, topic, 30)
    before = all_batches(small_broker.port, topic)
    committed = _objects(data)
    old_ns = time.time_ns() - 2 * 3600 * 10**9
    objects = FsObjectStore(data / "objects")
    asyncio.run(objects.put(f"sso/9-1-{old_ns}-1.sso", [b"written, never committed"]))
    asyncio.run(objects.put(f"wal/9-1-{time.time_ns()}-2.sso", [b"young: maybe committing"]))
    # no merging (huge objects count as big), default orphan grace of an hour
    result = _run(data, target_object_bytes=1, replaced_grace_ms=600_000)
    assert result.orphans_deleted == 1
    keys = asyncio.run(objects.list())
    assert f"sso/9-1-{old_ns}-1.sso" not in keys
    assert any(k.startswith("wal/9-1-") for k in keys)
    assert set(committed) <= set(_objects(data))  # every committed object is still there
    # even with no grace at all, referenced objects stay
    result = _run(data, target_object_bytes=1, orphan_grace_ms=0)
    assert result.orphans_deleted == 1 and result.objects_deleted == 0
    assert set(committed) <= set(_objects(data))
    assert all_batches(small_broker.port, topic) == before


def _self_compacting_broker(tmp_path: Path, interval_ms: int, **env: str) -> BrokerProcess:
    """An embedded broker compacting on its own timer, deleting replaced objects at once."""
    return BrokerProcess(
        tmp_path / "data",
        **{**SMALL_OBJECTS_ENV, "BROKER_COMPACTION_INTERVAL_MS": str(interval_ms)},
        COMPACTION_REPLACED_GRACE_MS="0",
        COMPACTION_TARGET_OBJECT_BYTES=str(1 << 20),
        **env,
    ).start()


@pytest.mark.parametrize("shards", ["1", "3"])
def test_an_embedded_broker_compacts_on_its_own_timer(tmp_path: Path, shards: str) -> None:
    """With COMPACTION_SHARDS=3 (objects spread over the shards by 1 ms buckets) the timer
    takes the shards in turn (a timer that ran shard 0 only left two thirds unmerged), and
    shard 0 merges what the others left after a while: here every range is alone in its
    bucket, so nothing else would ever merge it (and its object would never be deleted)."""
    broker = _self_compacting_broker(tmp_path, 300, COMPACTION_SHARDS=shards,
                                     COMPACTION_SHARD_BUCKET_MS="1",
                                     COMPACTION_SHARD_SWEEP_AFTER_MS="3000")  # fmt: skip
    try:
        topic = _topic("timer")
        create_topic(broker.bootstrap, topic)
        produce_rounds(broker.bootstrap, topic, rounds=15, per_round=20, data=broker.data_dir)
        before = all_batches(broker.port, topic)
        wait_until(lambda: len(_objects(broker.data_dir)) <= 2, 20,
                   lambda: f"compacted on the timer: {len(_objects(broker.data_dir))} objects")
        assert all_batches(broker.port, topic) == before
    finally:
        broker.stop()


def test_reads_racing_the_brokers_own_compaction_are_always_answered(tmp_path: Path) -> None:
    """The embedded broker compacts on its own timer and, with no grace, deletes the replaced
    objects at once: a read that picked a range before the swap finds its object gone after
    the broker already knows the new ranges. It must read the replacement (the same batches),
    never drop the connection (last CI run: "connection closed instead of answering")."""
    broker = _self_compacting_broker(tmp_path, 20)
    try:
        topic = _topic("race")
        create_topic(broker.bootstrap, topic)
        expected = 0
        for _ in range(40):  # a new small object each round keeps the compactor swapping
            expected += produce_rounds(broker.bootstrap, topic, rounds=1, per_round=5,
                                       data=broker.data_dir)  # fmt: skip
            batches = all_batches(broker.port, topic)  # every fetch answered, error 0
            records = sum(struct.unpack_from(">i", b, 57)[0] for b in batches)
            assert records == expected, "every record, once, through every swap"
    finally:
        broker.stop()


def _consume_all(bootstrap: str, topic: str, partitions: int, n: int) -> list[tuple]:  # type: ignore[type-arg]
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "all",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < n and time.monotonic() < deadline:
        for m in c.consume(500, 0.5):
            assert m.error() is None, m.error()
            got.append((m.partition(), m.offset(), m.key(), m.value(), m.timestamp()))
    c.close()
    return sorted(got)


@pytest.mark.parametrize("read_buffer", ["ample", "three objects"])
def test_objects_shared_by_partitions_go_once_every_partition_moved_out(
    small_broker: BrokerProcess, read_buffer: str
) -> None:
    """With a read buffer that holds three of the objects, not the run's fifteen, merges are
    cut at read windows and still read each object once (merging each partition's whole run
    read the objects past the buffer range by range: up to a GET per partition)."""
    data = small_broker.data_dir
    topic = _topic("shared")
    create_topic(small_broker.bootstrap, topic, partitions=3)
    produce_rounds(small_broker.bootstrap, topic, rounds=15, per_round=30, data=data)
    before = _consume_all(small_broker.bootstrap, topic, 3, 450)
    assert len(before) == 450 and len({p for p, *_ in before}) == 3
    objects_before = _objects(data)
    knobs: dict[str, float] = {"target_object_bytes": 1 << 20}
    if read_buffer == "three objects":
        knobs["read_buffer_bytes"] = 3 * max(p.stat().st_size for p in objects_before)
    gets: Counter[str] = Counter()
    result = _run(data, gets, **knobs)
    # each object, holding a range of all three partitions, was read with one GET (S3 bills
    # GETs: range by range it was three)
    shared = [k for k in gets if not k.startswith("so/")]
    assert shared and max(gets[k] for k in shared) == 1, gets
    # a buffer of three objects cuts each partition's merges short: more than one merge each
    assert result.swaps >= 3 if read_buffer == "ample" else result.swaps > 3, result
    assert result.gets == sum(gets.values()), (result.gets, gets)
    assert _consume_all(small_broker.bootstrap, topic, 3, 450) == before
    if read_buffer == "ample":
        assert result.objects_deleted == len(objects_before)
        assert len(_objects(data)) == result.swaps
        return
    # A window may end with one object, whose lone range per partition no merge took yet.
    # The next run joins each partition's short merges (and any such range) into one object
    # and retires at once the objects it emptied, though it lists one shard of compaction's
    # objects only
    again = _run(data, target_object_bytes=1 << 20)
    assert again.swaps == 3, again
    assert result.objects_deleted + again.objects_deleted == len(objects_before) + result.swaps
    assert len(_objects(data)) == 3
    assert _consume_all(small_broker.bootstrap, topic, 3, 450) == before


def test_compactor_shards_merge_their_own_objects_at_once_each_read_once(
    small_broker: BrokerProcess,
) -> None:
    """COMPACTION_SHARDS=2, both shards running at the same time: each merges the ranges of
    the objects of its own time buckets (every shared object read once in all), neither
    corrupts the other's swaps, shard 1 deletes nothing (garbage collection is shard 0's),
    and shard 0's next runs retire what both emptied."""
    data = small_broker.data_dir
    topic = _topic("shards")
    create_topic(small_broker.bootstrap, topic, partitions=3)
    produce_rounds(small_broker.bootstrap, topic, rounds=16, per_round=30, data=data)
    before = _consume_all(small_broker.bootstrap, topic, 3, 480)
    objects_before = _objects(data)
    created = sorted(t for p in objects_before if (t := object_created_ms(p.name)) is not None)
    bucket_ms = max(1, (created[-1] - created[0]) // 3)  # ~4 buckets: two a shard
    knobs: dict[str, float] = {"target_object_bytes": 1 << 20, "shards": 2,
                               "shard_bucket_ms": bucket_ms}  # fmt: skip
    gets: list[Counter[str]] = [Counter(), Counter()]
    results: dict[int, CompactionResult] = {}
    barrier = threading.Barrier(2)

    def shard(k: int) -> None:
        barrier.wait()
        results[k] = _run(data, gets[k], shard=k, **knobs)

    threads = [threading.Thread(target=shard, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert set(results) == {0, 1}
    assert all(r.skipped is None and r.swaps >= 1 for r in results.values()), results
    mine = [{k for k in g if not k.startswith("so/")} for g in gets]
    assert mine[0] and mine[1] and not mine[0] & mine[1], mine  # split, none read by both
    assert max((gets[0] + gets[1])[k] for k in mine[0] | mine[1]) == 1
    assert results[1].objects_deleted == 0 and results[1].objects_released == 0
    assert _consume_all(small_broker.bootstrap, topic, 3, 480) == before
    # shard 0 from here, its sweep age passed: merges what shard 1 left too (ranges alone in
    # their bucket) and retires every object nothing names any more
    for _ in range(4):
        if _run(data, shard=0, shard_sweep_after_ms=0, **knobs).swaps == 0:
            break
    assert _consume_all(small_broker.bootstrap, topic, 3, 480) == before
    left = {p.name for p in _objects(data)}
    assert not left & {p.name for p in objects_before}, left  # every WAL object retired


def test_compaction_drops_aborted_records_and_keeps_markers(small_broker: BrokerProcess) -> None:
    """A transactional producer on a compacted topic: an aborted value never supersedes the
    committed one, aborted records go, transaction markers stay."""
    from confluent_kafka import Producer

    data = small_broker.data_dir
    topic = _topic("txn-table")
    create_topic(small_broker.bootstrap, topic, {"cleanup.policy": "compact"})
    p = Producer({"bootstrap.servers": small_broker.bootstrap,
                  "transactional.id": f"tx-{uuid.uuid4().hex[:6]}"})
    p.init_transactions(15)
    for outcome, value in (("commit", b"v1"), ("abort", b"v2"), ("commit", b"c1")):
        p.begin_transaction()
        key = b"C" if value == b"c1" else b"A"
        p.produce(topic, key=key, value=value)
        if outcome == "abort":
            p.produce(topic, key=b"B", value=b"aborted")
        p.flush(15)
        if outcome == "commit":
            p.commit_transaction(15)
        else:
            p.abort_transaction(15)
        # each in its own object: committed (marker included) before the next one starts
        _wait_committed(data, topic, list_offset(small_broker.port, topic, -1))
    p.flush(15)
    produce_rounds(small_broker.bootstrap, topic, rounds=1, per_round=1,
                   record=lambda n: (b"head", b"h"), data=data)  # fmt: skip
    hw = list_offset(small_broker.port, topic, -1)
    _wait_committed(data, topic, hw)
    before = all_batches(small_broker.port, topic)
    markers_before = [b[:8] for b in before if int.from_bytes(b[21:23], "big") & 0x20]
    assert len(markers_before) == 3

    result = _run(data, target_object_bytes=1 << 20)
    assert result.records_removed >= 2  # the aborted A=v2 and B
    after = all_batches(small_broker.port, topic)
    assert [b[:8] for b in after if int.from_bytes(b[21:23], "big") & 0x20] == markers_before
    recs = _records(after)
    assert not any(k == b"B" for _, k, _ in recs)
    c = Consumer({"bootstrap.servers": small_broker.bootstrap, "group.id": "txn",
                  "enable.auto.commit": False, "isolation.level": "read_committed"})
    c.assign([TopicPartition(topic, 0, 0)])
    table: dict[bytes, bytes] = {}
    deadline = time.monotonic() + 20
    while b"head" not in table and time.monotonic() < deadline:
        for m in c.consume(100, 0.5):
            assert m.error() is None, m.error()
            table[m.key()] = m.value()
    c.close()
    assert table == {b"A": b"v1", b"C": b"c1", b"head": b"h"}
