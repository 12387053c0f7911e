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
        sid = md.create_topic("t", 1, {}, 1).partitions[0].stream_id
        store = _GatedStore(tmp_path / "objects")
        ports = MetadataPorts(md)
        wal = ObjectWal(store, ports, flush_interval_ms=0, max_in_flight=2)
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
        sid = md.create_topic("t", 1, {}, 1).partitions[0].stream_id
        store = _GatedStore(tmp_path / "objects")
        ports = MetadataPorts(md)
        wal = ObjectWal(store, ports, flush_interval_ms=0, max_in_flight=2)
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
        a, b = (p.stream_id for p in md.create_topic("t", 2, {}, 1).partitions)
        store = _GatedStore(tmp_path / "objects")
        ports = MetadataPorts(md)
        wal = ObjectWal(store, ports, flush_interval_ms=0, max_in_flight=3)
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
