"""The WAL's group commit (stream/wal/base.py) and the partition's durability callbacks
(kafka/partition.py), on a real file WAL and a real object WAL (local store + SQLite):
records that arrive while a commit runs form the next group, a linger is cut short by
flush_bytes and skipped by close, a record past its deadline is refused, object WAL flushes
overlap but commit in order; a partition reports durability to callbacks synchronously, in
order, and an observer's failure does not stop the others."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from broker_service.kafka.partition import NotDurable, PartitionLog
from broker_service.metadata.ports import MetadataPorts
from broker_service.metadata.records import StreamRange
from broker_service.metadata.sqlite import SqliteMetadataStore
from broker_service.stream.objectstore.base import Buffer
from broker_service.stream.objectstore.fs import FsObjectStore
from broker_service.stream.wal import (
    FileWal,
    ObjectWal,
    Wal,
    WalRecord,
    WalStreamFailed,
    WalTimeout,
)


def _append(wal: Wal, stream: int, base: int, data: bytes,
            deadline: float = math.inf) -> asyncio.Future[object]:  # fmt: skip
    fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()

    def done(rec: WalRecord, committed: StreamRange | None, exc: BaseException | None) -> None:
        fut.set_exception(exc) if exc is not None else fut.set_result(committed)

    wal.append(WalRecord(stream, base, base + 1, data, -1, done, deadline))
    return fut


def test_records_arriving_during_a_commit_form_the_next_group(tmp_path: Path) -> None:
    async def run() -> int:
        wal = FileWal(tmp_path)
        await wal.open()
        first = _append(wal, 1, 0, b"a")  # its commit starts at once
        rest = [_append(wal, 1, i, b"b") for i in range(1, 50)]  # all wait for it
        await asyncio.gather(first, *rest)
        await wal.close()
        return wal.flushes

    assert asyncio.run(run()) == 2


def test_a_linger_is_cut_short_by_flush_bytes_and_skipped_by_close(tmp_path: Path) -> None:
    async def run() -> None:
        wal = FileWal(tmp_path, flush_interval_ms=600_000, flush_bytes=100)
        await wal.open()
        small = _append(wal, 1, 0, b"x" * 10)  # lingers: 10 < 100 bytes
        await asyncio.sleep(0)
        assert not small.done() and wal.flushes == 0
        big = _append(wal, 2, 0, b"y" * 200)  # over flush_bytes: committed now, with small
        await asyncio.wait_for(asyncio.gather(small, big), 30)
        assert wal.flushes == 1
        last = _append(wal, 1, 1, b"z")  # lingers again...
        await wal.close()  # ...but close commits it at once
        assert last.done() and last.exception() is None and wal.flushes == 2

    asyncio.run(run())


def test_a_late_record_and_the_rest_of_its_stream_are_refused(tmp_path: Path) -> None:
    async def run() -> None:
        wal = FileWal(tmp_path, flush_interval_ms=600_000)
        await wal.open()
        late = _append(wal, 1, 0, b"a", deadline=0.0)  # its deadline has passed
        after = _append(wal, 1, 1, b"b")  # its offsets follow the late one's
        other = _append(wal, 2, 0, b"c")
        await wal.close()
        with pytest.raises(WalTimeout):
            await late
        with pytest.raises(WalStreamFailed):
            await after
        assert await other is None

    asyncio.run(run())


def _plog() -> PartitionLog:
    return PartitionLog("t", 0, 1, 0, 0)


def test_durability_callbacks_run_synchronously_in_offset_order() -> None:
    plog = _plog()
    plog.next_offset = 30
    seen: list[tuple[str, object]] = []
    for name, end in (("a", 10), ("b", 20), ("c", 30)):
        plog.when_durable(end, lambda exc, name=name: seen.append((name, exc)))
    plog.durable(20, None)
    assert seen == [("a", None), ("b", None)]  # before durable() returned
    plog.when_durable(5, lambda exc: seen.append(("done already", exc)))
    assert seen[-1] == ("done already", None)
    plog.failed(20, RuntimeError("disk gone"))
    name, exc = seen[-1]
    assert name == "c" and isinstance(exc, NotDurable) and plog.next_offset == 20


def test_a_failing_observer_does_not_stop_the_others() -> None:
    plog = _plog()
    plog.next_offset = 2
    seen: list[int] = []

    def broken(exc: BaseException | None) -> None:
        raise ValueError("an observer's bug")

    plog.when_durable(1, broken)
    plog.when_durable(2, lambda exc: seen.append(2))
    fut_seen: list[object] = []

    async def with_future() -> None:
        fut = plog.wait_durable(2)
        plog.durable(2, None)
        fut_seen.append(await fut)

    asyncio.run(with_future())
    assert seen == [2] and fut_seen == [None] and plog.high_watermark == 2


class _GatedStore(FsObjectStore):
    """The real local-directory store whose PUTs wait for the test's go (a slow first PUT)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gates: list[asyncio.Event] = []
        self.started = asyncio.Queue[str]()

    async def put(self, key: str, parts: Sequence[Buffer]) -> None:
        gate = asyncio.Event()
        self.gates.append(gate)
        await self.started.put(key)
        await gate.wait()
        await super().put(key, parts)


def test_object_wal_flushes_overlap_but_commit_and_complete_in_order(tmp_path: Path) -> None:
    """Two flushes in flight: the second's PUT finishes first, yet it is committed (and its
    records reported) only after the first: ranges stay contiguous, completions in order."""

    async def run() -> tuple[list[str], list[StreamRange]]:
        md = SqliteMetadataStore(tmp_path / "m.sqlite")
        me = md.register_broker(1, "h", 1, None, 60_000)
        sid = md.create_topic("t", 1, {}, [1]).partitions[0].stream_id
        store = _GatedStore(tmp_path / "objects")
        ports = MetadataPorts(md)
        wal = ObjectWal(store, ports, flush_interval_ms=0, flush_bytes=10, max_in_flight=2)
        wal.bind(1, me.epoch)
        await wal.open()
        done: list[str] = []

        def record(base: int, name: str) -> WalRecord:
            def on_done(rec: WalRecord, rng: StreamRange | None, exc: BaseException | None):  # type: ignore[no-untyped-def]
                assert exc is None, exc
                done.append(name)

            return WalRecord(sid, base, base + 1, b"x" * 10, 5, on_done)

        wal.append(record(0, "first"))  # flush 1 starts at once
        await store.started.get()
        wal.append(record(1, "second"))  # flush 2 starts too: a slot is free
        await store.started.get()
        store.gates[1].set()  # the second PUT lands first...
        while wal.stages.write.count < 1:  # ...and its flush reaches its commit, which waits
            await asyncio.sleep(0.01)
        assert done == [] and md.stream_ranges(sid) == []
        store.gates[0].set()  # ...then the first
        await wal.close()
        ranges = md.stream_ranges(sid)
        ports.close()
        md.close()
        return done, ranges

    done, ranges = asyncio.run(run())
    assert done == ["first", "second"]
    assert [(r.start_offset, r.end_offset) for r in ranges] == [(0, 1), (1, 2)]


def test_a_second_flush_in_flight_takes_a_full_group_only(tmp_path: Path) -> None:
    """Two slots: while a flush is in flight, records short of flush_bytes wait for it, past
    their linger too (the next object is as large as with one slot: the PUTs a GiB costs do
    not grow), and a full group starts the second flush at once (a broker whose PUTs take
    longer than the records' arrival keeps up, with full-size objects)."""

    async def run() -> tuple[list[str], list[tuple[int, int]], int]:
        store = _GatedStore(tmp_path / "objects")
        wal, md, ports, sid = _object_wal(tmp_path, store, flush_interval_ms=1, flush_bytes=100,
                                          max_in_flight=2)  # fmt: skip
        await wal.open()
        done: list[str] = []

        def record(base: int, size: int) -> WalRecord:
            def on_done(rec: WalRecord, rng: StreamRange | None, exc: BaseException | None):  # type: ignore[no-untyped-def]
                assert exc is None, exc
                done.append(str(base))

            return WalRecord(sid, base, base + 1, b"x" * size, 5, on_done)

        wal.append(record(0, 10))  # lingers 1 ms, then flush 1
        await store.started.get()
        wal.append(record(1, 10))  # short of flush_bytes: waits for flush 1, no linger runs
        assert (wal.in_flight, wal.lingering) == (1, False)
        wal.append(record(2, 95))  # 105 bytes pending: a full group, flush 2 starts now
        await asyncio.wait_for(store.started.get(), 10)
        assert wal.in_flight == 2
        for gate in store.gates:
            gate.set()
        await wal.close()
        ranges = [(r.start_offset, r.end_offset) for r in md.stream_ranges(sid)]
        ports.close()
        md.close()
        return done, ranges, len(store.gates)

    done, ranges, puts = asyncio.run(run())
    assert done == ["0", "1", "2"] and puts == 2
    assert ranges == [(0, 1), (1, 3)]


def test_a_linger_is_skipped_while_it_gathers_nothing(tmp_path: Path) -> None:
    """A producer with one request in flight at a time (librdkafka's for a partition whose
    batches fill faster than its linger, or any serial producer) paid the WAL's whole linger
    on every request, for nothing: no other record ever joined. A linger that gathered
    nothing is skipped next time; records arriving while a flush is in flight (or during a
    linger) bring it back, so a steady load still makes large objects."""

    async def run() -> None:
        store = _GatedStore(tmp_path / "objects")
        wal, md, ports, sid = _object_wal(tmp_path, store, flush_interval_ms=100)
        await wal.open()
        done: list[int] = []
        lingering_at_done: list[bool] = []

        def record(base: int) -> WalRecord:
            def on_done(rec: WalRecord, rng: StreamRange | None, exc: BaseException | None):  # type: ignore[no-untyped-def]
                assert exc is None, exc
                done.append(base)
                lingering_at_done.append(wal.lingering)  # the next group began first

            return WalRecord(sid, base, base + 1, b"x" * 10, 5, on_done)

        async def put_passes() -> None:
            await asyncio.wait_for(store.started.get(), 10)
            store.gates[-1].set()

        wal.append(record(0))  # a linger first: nothing says it would not pay
        assert wal.lingering
        await put_passes()
        while done != [0]:
            await asyncio.sleep(0.005)
        wal.append(record(1))  # that linger gathered nothing: this one is flushed at once
        assert not wal.lingering and wal.in_flight == 1
        await asyncio.wait_for(store.started.get(), 10)
        wal.append(record(2))  # ...and a record arriving while it is in flight
        store.gates[-1].set()
        await put_passes()  # 2 is flushed after its linger again
        while done != [0, 1, 2]:
            await asyncio.sleep(0.005)
        assert lingering_at_done == [False, True, False]  # 2 waited out a linger
        assert len(store.gates) == 3
        await wal.close()
        ports.close()
        md.close()

    asyncio.run(run())


def test_an_overlapping_flush_past_its_deadline_is_settled_and_completes_in_order(
    tmp_path: Path,
) -> None:
    """The second of two flushes in flight reaches its deadline while its commit waits for
    the first: its key is settled (aborted, so no late commit of it can land), yet its
    records are told so only after the first flush's records: completions stay in order,
    and the first is still committed."""

    async def run() -> tuple[list[str], list[StreamRange], int]:
        md = SqliteMetadataStore(tmp_path / "m.sqlite")
        me = md.register_broker(1, "h", 1, None, 60_000)
        sid = md.create_topic("t", 1, {}, [1]).partitions[0].stream_id
        store = _GatedStore(tmp_path / "objects")
        ports = MetadataPorts(md)
        wal = ObjectWal(store, ports, flush_interval_ms=0, flush_bytes=10, max_in_flight=2)
        wal.bind(1, me.epoch)
        await wal.open()
        done: list[str] = []

        def record(base: int, name: str, deadline: float = math.inf) -> WalRecord:
            def on_done(rec: WalRecord, rng: StreamRange | None, exc: BaseException | None):  # type: ignore[no-untyped-def]
                done.append(name if exc is None else f"{name}: {type(exc).__name__}")

            return WalRecord(sid, base, base + 1, b"x" * 10, 5, on_done, deadline)

        wal.append(record(0, "first"))
        await store.started.get()
        wal.append(record(1, "second", deadline=time.monotonic() + 0.3))
        await store.started.get()
        store.gates[1].set()  # the second's PUT lands; its commit waits for the first
        while wal.aborted < 1:  # its deadline passes: settled as aborted
            await asyncio.sleep(0.01)
        assert done == []  # but not reported before the first
        store.gates[0].set()
        await wal.close()
        while len(asyncio.all_tasks()) > 1:  # the abandoned attempt of the second ends
            await asyncio.sleep(0.01)
        ranges = md.stream_ranges(sid)
        ports.close()
        md.close()
        return done, ranges, wal.aborted

    done, ranges, aborted = asyncio.run(run())
    assert done == ["first", "second: WalTimeout"]
    assert [(r.start_offset, r.end_offset) for r in ranges] == [(0, 1)]
    assert aborted == 1


def test_a_failed_flush_fails_the_flushes_in_flight_of_its_streams_only(tmp_path: Path) -> None:
    """Flush 1 (stream A) times out while flushes 2 (stream A, later offsets) and 3 (stream
    B) are in flight: 2 fails (its offsets follow void ones), 3 commits, and a flush of A
    begun after the failure (the partition assigned the offsets again) commits too."""

    async def run() -> tuple[list[str], dict[int, list[tuple[int, int]]]]:
        md = SqliteMetadataStore(tmp_path / "m.sqlite")
        me = md.register_broker(1, "h", 1, None, 60_000)
        a, b = (p.stream_id for p in md.create_topic("t", 2, {}, [1]).partitions)
        store = _GatedStore(tmp_path / "objects")
        ports = MetadataPorts(md)
        wal = ObjectWal(store, ports, flush_interval_ms=0, flush_bytes=10, max_in_flight=3)
        wal.bind(1, me.epoch)
        await wal.open()
        done: list[str] = []

        def record(sid: int, base: int, name: str, deadline: float = math.inf) -> WalRecord:
            def on_done(rec: WalRecord, rng: StreamRange | None, exc: BaseException | None):  # type: ignore[no-untyped-def]
                done.append(name if exc is None else f"{name}: {type(exc).__name__}")

            return WalRecord(sid, base, base + 1, b"x" * 10, 5, on_done, deadline)

        wal.append(record(a, 0, "a0", deadline=time.monotonic() + 0.3))
        await store.started.get()
        wal.append(record(a, 1, "a1"))
        await store.started.get()
        wal.append(record(b, 0, "b0"))
        await store.started.get()
        store.gates[1].set()
        store.gates[2].set()  # flush 1's PUT never lands: its deadline passes
        while len(done) < 3:
            await asyncio.sleep(0.01)
        wal.append(record(a, 0, "a0 again"))
        await store.started.get()
        store.gates[3].set()
        await wal.close()
        store.gates[0].set()  # the abandoned attempt of flush 1 ends (and cannot commit)
        while len(asyncio.all_tasks()) > 1:
            await asyncio.sleep(0.01)
        ranges = {s: [(r.start_offset, r.end_offset) for r in md.stream_ranges(s)]
                  for s in (a, b)}  # fmt: skip
        ports.close()
        md.close()
        return done, ranges

    done, ranges = asyncio.run(run())
    assert done == ["a0: WalTimeout", "a1: WalStreamFailed", "b0", "a0 again"]
    assert list(ranges.values()) == [[(0, 1)], [(0, 1)]]


# -- forwarded records riding in the object WAL's flush (kafka/zone_forward.py) -------------
def _object_wal(tmp_path: Path, store: FsObjectStore, **kw: float) -> tuple[
        ObjectWal, SqliteMetadataStore, MetadataPorts, int]:  # fmt: skip
    md = SqliteMetadataStore(tmp_path / "m.sqlite")
    me = md.register_broker(1, "h", 1, None, 60_000)
    sid = md.create_topic("t", 1, {}, [1]).partitions[0].stream_id
    ports = MetadataPorts(md)
    wal = ObjectWal(store, ports, **kw)  # type: ignore[arg-type]
    wal.bind(1, me.epoch)
    return wal, md, ports, sid


def _ride(wal: Wal, leader: int, data: bytes, seen: list[str], name: str,
          deadline: float = math.inf) -> asyncio.Future[StreamRange]:  # fmt: skip
    """A forwarded batch (stream 999: another broker's partition) for ``leader``."""
    fut: asyncio.Future[StreamRange] = asyncio.get_running_loop().create_future()

    def done(rec: WalRecord, span: StreamRange | None, exc: BaseException | None) -> None:
        seen.append(name if exc is None else f"{name}: {type(exc).__name__}")
        fut.set_exception(exc) if exc is not None else fut.set_result(span)  # type: ignore[arg-type]

    wal.append(WalRecord(999, 0, 1, data, 7, done, deadline, forward_to=leader))
    return fut


def _own(sid: int, base: int, seen: list[str], name: str,
         deadline: float = math.inf) -> WalRecord:  # fmt: skip
    def done(rec: WalRecord, rng: StreamRange | None, exc: BaseException | None) -> None:
        seen.append(name if exc is None else f"{name}: {type(exc).__name__}")

    return WalRecord(sid, base, base + 1, b"own%d" % base, 5, done, deadline)


def test_forwarded_records_ride_in_the_flush_and_are_handed_over_before_its_commit(
    tmp_path: Path,
) -> None:
    """One flush, one PUT: the object holds the own record (committed, its range only) and
    the forwarded batches after it, grouped by leader, under a stream id no range names;
    each forwarded record gets its span once the PUT returned, before the commit."""
    from broker_service.stream.object_format import FORWARDED_STREAM_ID, parse_object

    async def run() -> None:
        store = FsObjectStore(tmp_path / "objects")
        size = len(b"own0") + len(b"for-3") + len(b"for-2a") + len(b"for-2b")
        # the linger ends when the last of them arrives (flush_bytes)
        wal, md, ports, sid = _object_wal(tmp_path, store, flush_interval_ms=600_000,
                                          flush_bytes=size)  # fmt: skip
        await wal.open()
        seen: list[str] = []
        wal.append(_own(sid, 0, seen, "own"))
        to3 = _ride(wal, 3, b"for-3", seen, "to 3")
        to2 = [_ride(wal, 2, b"for-2a", seen, "to 2a"), _ride(wal, 2, b"for-2b", seen, "to 2b")]
        spans = await asyncio.wait_for(asyncio.gather(to3, *to2), 30)
        await wal.close()
        keys = await store.list()
        assert len(keys) == 1 and keys[0].startswith("wal/") and wal.flushes == 1
        assert seen == ["to 2a", "to 2b", "to 3", "own"]  # leader order; before the commit
        obj = await store.get(keys[0])
        for span, data in zip(spans, [b"for-3", b"for-2a", b"for-2b"], strict=True):
            assert span.object_key == keys[0]
            assert obj[span.position : span.position + span.size] == data
        [own] = md.stream_ranges(sid)
        assert (own.object_key, own.start_offset, own.end_offset) == (keys[0], 0, 1)
        assert own.position + own.size <= min(s.position for s in spans)  # own bytes first
        index = parse_object(obj)
        assert [e.stream_id for e in index] == [sid] + [FORWARDED_STREAM_ID] * 3
        ports.close()
        md.close()

    asyncio.run(run())


def test_an_object_wal_flush_stays_one_put_whatever_is_pending(tmp_path: Path) -> None:
    """A group may take more than flush_bytes (what arrived during a commit), but never more
    than one PUT carries: 40 MiB pending at once at the default 12 MiB flush bytes are three
    objects of at most 16 MiB, none a multipart upload."""
    from broker_service.config import BrokerConfig
    from broker_service.stream.objectstore.base import SINGLE_PUT_MAX_BYTES

    async def run() -> list[int]:
        store = FsObjectStore(tmp_path / "objects")
        flush_bytes = BrokerConfig(wal="object").effective_wal_flush_bytes
        wal, md, ports, sid = _object_wal(tmp_path, store, flush_interval_ms=600_000,
                                          flush_bytes=flush_bytes)  # fmt: skip
        await wal.open()
        mib = bytes(1 << 20)
        await asyncio.wait_for(asyncio.gather(*(_append(wal, sid, i, mib) for i in range(40))), 60)
        await wal.close()
        sizes = [len(await store.get(k)) for k in await store.list()]
        assert sum(r.end_offset - r.start_offset for r in md.stream_ranges(sid)) == 40
        ports.close()
        md.close()
        return sizes

    sizes = asyncio.run(run())
    assert len(sizes) == 3 and max(sizes) <= SINGLE_PUT_MAX_BYTES, sizes


def test_a_flush_of_forwarded_records_only_is_written_not_committed_and_swept_as_an_orphan(
    tmp_path: Path,
) -> None:
    """Forwarded records alone wake a flush (after its linger): one PUT, no metadata commit;
    compaction's orphan sweep keeps the object within its grace and deletes it after."""
    from broker_service.control.compaction import CompactionConfig, compact

    async def run() -> None:
        store = FsObjectStore(tmp_path / "objects")
        wal, md, ports, _sid = _object_wal(tmp_path, store, flush_interval_ms=20)
        await wal.open()
        seen: list[str] = []
        span = await asyncio.wait_for(_ride(wal, 2, b"alone", seen, "to 2"), 30)
        await wal.close()
        assert wal.forward_only == 1 and wal.stages.write.count == 1
        assert await store.get(span.object_key, span.position, span.position + span.size) == (
            b"alone"
        )
        assert md.committed_objects([span.object_key]) == set()
        kept = await compact(md, store, CompactionConfig())
        assert kept.orphans_deleted == 0 and await store.list() == [span.object_key]
        swept = await compact(md, store, CompactionConfig(orphan_grace_ms=0))
        assert swept.orphans_deleted == 1 and await store.list() == []
        ports.close()
        md.close()

    asyncio.run(run())


class _FailingStore(FsObjectStore):
    """The real local store whose first ``fail`` PUTs raise (after writing nothing)."""

    def __init__(self, root: Path, fail: int) -> None:
        super().__init__(root)
        self.fail = fail
        self.keys: list[str] = []

    async def put(self, key: str, parts: Sequence[Buffer]) -> None:
        self.keys.append(key)
        if self.fail:
            self.fail -= 1
            raise OSError("S3 said 500")
        await super().put(key, parts)


def test_a_failed_put_fails_its_forwarded_records_at_once_and_the_retry_keeps_its_key(
    tmp_path: Path,
) -> None:
    """The flush's PUT fails: its forwarded record is failed at once (a storage error, not a
    timeout: the client retries), while the WAL retries its own record under the same key;
    the next flush carries forwarded records again."""
    from broker_service.stream.wal import WalError

    async def run() -> None:
        store = _FailingStore(tmp_path / "objects", fail=1)
        wal, md, ports, sid = _object_wal(tmp_path, store, flush_interval_ms=600_000,
                                          flush_bytes=len(b"own0") + 3)  # fmt: skip
        await wal.open()
        seen: list[str] = []
        wal.append(_own(sid, 0, seen, "own"))
        failed = _ride(wal, 2, b"fwd", seen, "to 2")
        with pytest.raises(WalError) as info:
            await asyncio.wait_for(failed, 30)
        assert not isinstance(info.value, WalTimeout)
        again = _ride(wal, 2, b"fwd", seen, "to 2 again")
        await wal.close()
        span = await again
        assert seen == ["to 2: WalError", "own", "to 2 again"]
        assert store.keys[0] == store.keys[1] != span.object_key  # retried as the same object
        assert [r.object_key for r in md.stream_ranges(sid)] == [store.keys[0]]
        ports.close()
        md.close()

    asyncio.run(run())


def test_forwarded_records_are_handed_over_in_flush_order_and_refused_past_their_deadline(
    tmp_path: Path,
) -> None:
    """Two flushes in flight, the second's PUT lands first: its forwarded records wait for
    the first flush's (a partition's batches reach its leader in order). A forwarded record
    past its deadline when its object is written is refused, never handed a span; its
    failure is its own (the own record of the same flush commits)."""

    async def run() -> None:
        store = _GatedStore(tmp_path / "objects")
        wal, md, ports, sid = _object_wal(tmp_path, store, flush_interval_ms=50,
                                          flush_bytes=14, max_in_flight=2)  # fmt: skip
        await wal.open()
        seen: list[str] = []
        first = _ride(wal, 2, b"first", seen, "first")  # flush 1, after its linger
        await store.started.get()
        late_at = time.monotonic() + 1.0
        wal.append(_own(sid, 0, seen, "own"))  # flush 2 once 14 bytes wait (a full group)
        second = _ride(wal, 2, b"second", seen, "second")
        late = _ride(wal, 2, b"late", seen, "late", deadline=late_at)
        await store.started.get()
        while time.monotonic() <= late_at:  # its deadline passes while the PUT runs
            await asyncio.sleep(0.01)
        store.gates[1].set()  # flush 2 is written first...
        while wal.stages.write.count < 1:
            await asyncio.sleep(0.01)
        assert seen == []  # ...but its forwarded records wait for flush 1's
        store.gates[0].set()
        spans = await asyncio.wait_for(asyncio.gather(first, second), 30)
        with pytest.raises(WalTimeout):
            await late
        await wal.close()
        assert seen == ["first", "second", "late: WalTimeout", "own"]
        assert spans[0].object_key != spans[1].object_key
        assert [r.object_key for r in md.stream_ranges(sid)] == [spans[1].object_key]
        ports.close()
        md.close()

    asyncio.run(run())


def test_a_host_paused_during_a_flush_never_commits_it_past_the_request_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host pauses (a stopped microVM) while a flush's PUT is under way: on resume the
    wall clock has moved 22 s, the monotonic one has not. The producer's request timed out
    meanwhile (its clock ran) and it sent the records again, so the commit must not land:
    the store checks the deadline by the wall clock, and the WAL turned the request's
    monotonic deadline into wall-clock time at commit, after the pause, 22 s too late."""
    real_time = time.time
    paused = {"s": 0.0}
    monkeypatch.setattr(time, "time", lambda: real_time() + paused["s"])

    async def run() -> tuple[list[str], list[StreamRange]]:
        md = SqliteMetadataStore(tmp_path / "m.sqlite")
        me = md.register_broker(1, "h", 1, None, 600_000)
        sid = md.create_topic("t", 1, {}, [1]).partitions[0].stream_id
        store = _GatedStore(tmp_path / "objects")
        ports = MetadataPorts(md)
        wal = ObjectWal(store, ports, flush_interval_ms=0)
        wal.bind(1, me.epoch)
        await wal.open()
        done: list[str] = []

        def on_done(rec: WalRecord, rng: StreamRange | None, exc: BaseException | None) -> None:
            done.append("committed" if exc is None else type(exc).__name__)

        wal.append(WalRecord(sid, 0, 1, b"x" * 10, 5, on_done, time.monotonic() + 5.0))
        await store.started.get()
        paused["s"] = 22.0  # the pause: only the wall clock moved
        store.gates[0].set()
        await wal.close()
        ranges = md.stream_ranges(sid)
        ports.close()
        md.close()
        return done, ranges

    done, ranges = asyncio.run(run())
    assert ranges == [], "committed 22 s past the request's deadline"
    assert done and done != ["committed"], done
