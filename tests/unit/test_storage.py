"""The storage layer on its own: WAL recovery, object format, fencing of object commits."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from broker_service.metadata.errors import BrokerFenced
from broker_service.metadata.records import StreamRange
from broker_service.metadata.sqlite import SqliteMetadataStore
from broker_service.stream.block_cache import BlockCache
from broker_service.stream.object_format import StreamSetObjectBuilder, parse_object
from broker_service.stream.wal import FileWal, Wal, WalError, WalRecord, WalStreamFailed


def append(wal: Wal, stream: int, base: int, end: int, data: bytes) -> asyncio.Future[object]:
    """Queue a record; the future resolves with its outcome (the WAL's on_done)."""
    fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()

    def done(rec: WalRecord, committed: StreamRange | None, exc: BaseException | None) -> None:
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(committed)

    wal.append(WalRecord(stream, base, end, data, -1, done))
    return fut


def test_wal_recovers_durable_entries_and_drops_a_torn_tail(tmp_path: Path) -> None:
    async def write() -> None:
        wal = FileWal(tmp_path)
        assert await wal.open() == []
        futs = [append(wal, 7, i * 10, i * 10 + 10, b"x" * (100 + i)) for i in range(5)]
        await asyncio.gather(*futs)
        await wal.close()

    asyncio.run(write())
    seg = next(tmp_path.glob("*.wal"))
    with open(seg, "ab") as f:  # a crash in the middle of the next write
        f.write(b"\x00\x00\x01\x00garbage")

    async def recover() -> list[tuple[int, int, int, int]]:
        wal = FileWal(tmp_path)
        entries = await wal.open()
        await wal.close()
        return [(e.stream_id, e.base_offset, e.end_offset, len(e.data)) for e in entries]

    assert asyncio.run(recover()) == [(7, i * 10, i * 10 + 10, 100 + i) for i in range(5)]


def test_wal_trim_deletes_only_fully_committed_segments(tmp_path: Path) -> None:
    async def run() -> list[str]:
        wal = FileWal(tmp_path, segment_bytes=1)  # every flush closes its segment
        await wal.open()
        await append(wal, 1, 0, 5, b"a" * 10)
        await append(wal, 2, 0, 3, b"b" * 10)
        wal.trim({1: 5, 2: 2})  # stream 2 is not fully committed yet
        names = sorted(p.name for p in tmp_path.glob("*.wal"))
        await wal.close()
        return names

    names = asyncio.run(run())
    assert len(names) == 2  # the second segment (stream 2) and the new active one


def test_one_group_commit_larger_than_iov_max_is_written_whole(tmp_path: Path) -> None:
    """2,000 records in one group need 4,000 buffers: writev takes at most IOV_MAX (1024) per
    call (EINVAL beyond), which once stopped the broker (one producer, 50 partitions,
    linger.ms=0)."""

    async def run() -> list[tuple[int, int]]:
        wal = FileWal(tmp_path, flush_interval_ms=50)  # linger so they form one group
        await wal.open()
        futs = [append(wal, i, 0, 1, bytes([i % 256]) * 7) for i in range(2000)]
        await asyncio.gather(*futs)
        assert wal.flushes == 1
        await wal.close()
        again = FileWal(tmp_path)
        entries = await again.open()
        await again.close()
        return [(e.stream_id, e.data[0]) for e in entries]

    assert asyncio.run(run()) == [(i, i % 256) for i in range(2000)]


def test_a_failed_write_is_undone_refused_and_the_next_one_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails (here: fsync says the disk is full) leaves nothing in the log, its
    records and the stream's later ones are refused, and the WAL keeps working."""
    import errno
    import os

    real_fsync = os.fsync
    failures = iter([OSError(errno.ENOSPC, "No space left on device")])

    def fsync(fd: int) -> None:
        exc = next(failures, None)
        if exc is not None:
            raise exc
        real_fsync(fd)

    async def run() -> list[tuple[int, int, int]]:
        wal = FileWal(tmp_path)
        await wal.open()
        await append(wal, 1, 0, 1, b"ok")
        monkeypatch.setattr(os, "fsync", fsync)
        first = append(wal, 1, 1, 2, b"lost")
        with pytest.raises(WalError):
            await first
        monkeypatch.setattr(os, "fsync", real_fsync)
        await append(wal, 1, 1, 2, b"again")  # the offsets are assigned again
        await wal.close()
        again = FileWal(tmp_path)
        entries = await again.open()
        await again.close()
        return [(e.stream_id, e.base_offset, len(e.data)) for e in entries]

    assert asyncio.run(run()) == [(1, 0, 2), (1, 1, 5)]
    assert WalStreamFailed  # (a later record of the same stream gets this one; see base.py)


def test_stream_set_object_round_trip_and_block_split() -> None:
    b = StreamSetObjectBuilder(block_bytes=4)
    b.add_stream(1, [(0, 2, 10, b"aaa"), (2, 3, 30, b"bb"), (3, 5, 20, b"c")])
    b.add_stream(9, [(100, 101, 5, b"d")])
    obj = b"".join(b.build())
    idx = parse_object(obj)
    # stream 1 splits into blocks of at most 4 bytes at batch boundaries
    assert [(e.stream_id, e.start_offset, e.end_offset, e.max_timestamp) for e in idx] == [
        (1, 0, 2, 10),
        (1, 2, 5, 30),
        (9, 100, 101, 5),
    ]
    assert [obj[e.position : e.position + e.size] for e in idx] == [b"aaa", b"bbc", b"d"]
    assert [(s.stream_id, s.start_offset, s.end_offset, s.position, s.size) for s in b.spans] == [
        (1, 0, 5, 0, 6),
        (9, 100, 101, 6, 1),
    ]


def test_object_commit_is_fenced_by_broker_epoch(tmp_path: Path) -> None:
    md = SqliteMetadataStore(tmp_path / "m.sqlite")
    old = md.register_broker(1, "h", 1, None, 1000)
    topic = md.create_topic("t", 1, {}, [1])
    sid = topic.partitions[0].stream_id
    r = StreamRange(sid, 0, 10, "k1", 0, 100, 5)
    md.commit_object(1, old.epoch, "k1", 118, [r])
    new = md.register_broker(1, "h", 1, None, 1000)  # a restart: new epoch
    assert new.epoch == old.epoch + 1
    with pytest.raises(BrokerFenced):
        md.commit_object(1, old.epoch, "k2", 118, [StreamRange(sid, 10, 20, "k2", 0, 100, 5)])
    assert md.stream_ranges(sid) == [r]
    md.close()


def test_block_cache_is_bounded_lru() -> None:
    c = BlockCache(10)
    c.put("a", 0, b"12345")
    c.put("b", 0, b"12345")
    assert c.get("a", 0) == b"12345"  # a is now most recent
    c.put("c", 0, b"12345")  # evicts b
    assert c.get("b", 0) is None
    assert c.get("a", 0) is not None and c.get("c", 0) is not None
    assert c.size == 10
