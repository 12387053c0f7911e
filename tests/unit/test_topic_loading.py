"""A broker serves a partition it leads only once it has loaded it.

A topic another broker created (or that changed while this one was down) is loaded on the
next metadata sync: for each partition led here, its committed ranges and producer state are
read from the metadata store. A partition published to the request handlers before that read
returned could take a produce meanwhile, and the load then put the partition back at the
committed end, wiping the acknowledged batch (its offsets were handed out again to the next
produce). A broker leading partitions of a topic created elsewhere goes through exactly this
load. Real SQLite store, real StreamStore with a file WAL; the ranges read is held open."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

from broker_service.kafka.log_store import AppendRefused, StreamStore
from broker_service.kafka.topics import Topics
from broker_service.metadata.ports import MetadataPorts
from broker_service.metadata.records import StreamRange, TopicRecord
from broker_service.metadata.sqlite import SqliteMetadataStore
from broker_service.protocol.record_batch import validate_batches
from broker_service.stream.objectstore.fs import FsObjectStore
from broker_service.stream.wal import FileWal
from tests.kafka_wire import build_batch


class HeldRanges(SqliteMetadataStore):
    """SQLite, whose ``stream_ranges`` waits until released (a slow store read)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.reading = threading.Event()
        self.release = threading.Event()

    def stream_ranges(self, stream_id: int) -> list[StreamRange]:
        self.reading.set()
        self.release.wait(10)
        return super().stream_ranges(stream_id)


def _topics(ports: MetadataPorts, store: StreamStore, live_ids: list[int]) -> Topics:
    """Broker 2's topics, its hooks doing nothing."""

    async def nothing(*_: object) -> None:
        return None

    async def live() -> list[int]:
        return live_ids

    async def seen(_records: list[TopicRecord]) -> None:
        return None

    return Topics(ports, store, 2, live_ids=live, on_leader_changed=nothing,
                  on_forget=lambda _n: None, before_sync=nothing, leaders_seen=seen)  # fmt: skip


async def _synced(tmp_path: Path, md: SqliteMetadataStore, epoch: int
                  ) -> tuple[FileWal, MetadataPorts, StreamStore, Topics]:  # fmt: skip
    """Broker 2 over ``md`` with a file WAL, its topics read once."""
    ports = MetadataPorts(md)
    wal = FileWal(tmp_path / "wal")
    await wal.open()
    store = StreamStore(FsObjectStore(tmp_path / "objects"), ports, wal, 2, epoch)
    topics = _topics(ports, store, [2])
    await topics.sync()
    return wal, ports, store, topics


def test_a_partition_being_loaded_takes_no_produce(tmp_path: Path) -> None:
    async def run() -> None:
        md = HeldRanges(tmp_path / "m.sqlite")
        me = md.register_broker(2, "h", 1, None, 60_000)
        md.create_topic("t", 1, {}, [2])  # created by another broker, placed here
        ports = MetadataPorts(md)
        wal = FileWal(tmp_path / "wal")
        await wal.open()
        store = StreamStore(FsObjectStore(tmp_path / "objects"), ports, wal, 2, me.epoch)

        topics = _topics(ports, store, [2])
        sync = asyncio.ensure_future(topics.sync())
        while not md.reading.is_set():
            await asyncio.sleep(0.01)
        # a produce arriving while the sync reads the partition's ranges
        during = topics.partition("t", 0)
        acknowledged = 0
        if during is not None:
            raw = bytearray(build_batch([b"v"]))
            try:
                _, durable = store.append_guarded(
                    during, memoryview(raw), validate_batches(memoryview(raw))
                )
                await durable
                acknowledged = 1
            except AppendRefused:
                pass
        md.release.set()
        await sync
        plog = topics.partition("t", 0)
        assert plog is not None and plog.leader_id == 2
        assert plog.high_watermark == acknowledged, (
            f"{acknowledged} batch acknowledged while loading, "
            f"the partition ends at {plog.high_watermark} after the load"
        )
        assert during is None, "a partition was served before its ranges were loaded"
        raw = bytearray(build_batch([b"after"]))
        base, durable = store.append_guarded(plog, memoryview(raw),
                                             validate_batches(memoryview(raw)))  # fmt: skip
        await durable
        assert (base, plog.high_watermark) == (0, 1)
        await wal.close()
        ports.close()
        md.close()

    asyncio.run(run())


def test_a_partition_added_elsewhere_and_moved_here_is_loaded_with_its_data(
    tmp_path: Path,
) -> None:
    """CreatePartitions through broker 1, records committed there, then the new partition
    moved to broker 2, all before broker 2's next sync: that sync sees the partition for the
    first time and led here, so it must read its ranges (it took it as empty: the next
    produce would have been given offsets 0... again, and the committed records hidden)."""

    async def run() -> None:
        md = SqliteMetadataStore(tmp_path / "m.sqlite")
        one = md.register_broker(1, "h", 1, None, 60_000)
        me = md.register_broker(2, "h", 2, None, 60_000)
        md.create_topic("t", 1, {}, [1])
        ports = MetadataPorts(md)
        wal = FileWal(tmp_path / "wal")
        await wal.open()
        store = StreamStore(FsObjectStore(tmp_path / "objects"), ports, wal, 2, me.epoch)

        topics = _topics(ports, store, [1, 2])
        await topics.sync()
        # broker 1, meanwhile: adds a partition it leads, commits 10 records to it, moves it
        added = md.add_partitions("t", 2, [1]).partitions[1]
        md.commit_object(1, one.epoch, "wal/one", 100,
                         [StreamRange(added.stream_id, 0, 10, "wal/one", 0, 100, 1)])  # fmt: skip
        md.move_partition("t", 1, 1, added.leader_epoch, 2)
        await topics.sync()
        plog = topics.partition("t", 1)
        assert plog is not None and plog.leader_id == 2
        assert plog.high_watermark == 10, (
            f"partition 1 loaded at {plog.high_watermark}: its 10 committed records not read"
        )
        await wal.close()
        ports.close()
        md.close()

    asyncio.run(run())


class HeldTopics(SqliteMetadataStore):
    """SQLite whose ``topics`` read, once armed, returns what it read only when released."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.armed = False
        self.reading = threading.Event()
        self.release = threading.Event()

    def topics(self) -> list[TopicRecord]:
        found = super().topics()
        if self.armed:
            self.armed = False
            self.reading.set()
            self.release.wait(10)
        return found


def test_a_sync_read_from_before_a_create_does_not_forget_the_topic(tmp_path: Path) -> None:
    """CreateTopics here while a sync's read of the topics is on its way (it began before the
    create): the sync took the topic for deleted elsewhere and forgot it until the next one,
    so a request right after the create found UNKNOWN_TOPIC_OR_PARTITION (seen in a full-suite
    run: AddPartitionsToTxn on a topic created a moment before). The same for a delete: the
    stale read would bring the deleted topic back. Topic changes made here now take turns
    with syncs (see the CreatePartitions test below)."""

    async def run() -> None:
        md = HeldTopics(tmp_path / "m.sqlite")
        me = md.register_broker(2, "h", 2, None, 60_000)
        md.create_topic("gone", 1, {}, [2])
        wal, ports, store, topics = await _synced(tmp_path, md, me.epoch)
        md.armed = True
        sync = asyncio.ensure_future(topics.sync())
        while not md.reading.is_set():
            await asyncio.sleep(0.01)
        # both wait for the sync (topic changes made here and syncs take turns); then the
        # sync's stale read can no longer undo either
        create = asyncio.ensure_future(topics.create("fresh", 1, {}))
        delete = asyncio.ensure_future(topics.delete("gone"))
        while len(getattr(topics._sync_lock, "_waiters", None) or ()) < 2:
            await asyncio.sleep(0.01)
        assert not create.done() and not delete.done()
        md.release.set()
        await asyncio.gather(sync, create, delete)
        assert topics.partition("fresh", 0) is not None, "the sync forgot a topic created here"
        assert topics.partition("gone", 0) is None, "the sync brought a deleted topic back"
        await wal.close()
        ports.close()
        md.close()

    asyncio.run(run())


class HeldAddAndRanges(SqliteMetadataStore):
    """SQLite whose ``add_partitions`` answers only when released (its write applied at
    once, the answer late) and whose ``stream_ranges`` waits when armed."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.added = threading.Event()
        self.answer_add = threading.Event()
        self.hold_ranges = False
        self.reading = threading.Event()
        self.release_ranges = threading.Event()

    def add_partitions(self, name: str, total: int, leaders: Sequence[int]) -> TopicRecord:
        rec = super().add_partitions(name, total, leaders)
        self.added.set()
        self.answer_add.wait(10)
        return rec

    def stream_ranges(self, stream_id: int) -> list[StreamRange]:
        if self.hold_ranges:
            self.reading.set()
            self.release_ranges.wait(10)
        return super().stream_ranges(stream_id)


def test_create_partitions_during_a_sync_adds_each_partition_once(tmp_path: Path) -> None:
    """CreatePartitions here while a metadata sync runs: the sync read the store after the
    new partition was written but before CreatePartitions went on, and loaded it too. The
    topic then had two logs for the new partition (Metadata answered 5 partitions for 4:
    librdkafka's 0081-admin on the cloud backend), and the store served the second while
    requests used the first. Real SQLite store and StreamStore; the store's answers held."""

    async def run() -> None:
        md = HeldAddAndRanges(tmp_path / "m.sqlite")
        me = md.register_broker(2, "h", 1, None, 60_000)
        md.create_topic("t", 3, {}, [2])
        wal, ports, store, topics = await _synced(tmp_path, md, me.epoch)
        md.hold_ranges = True
        grow = asyncio.ensure_future(topics.add_partitions("t", 4))
        while not md.added.is_set():
            await asyncio.sleep(0.01)
        sync = asyncio.ensure_future(topics.sync())
        # the sync is either loading the new partition (held) or queued behind the growth
        # (asyncio.Lock keeps its queue in ``_waiters``)
        while not (md.reading.is_set() or getattr(topics._sync_lock, "_waiters", None)):
            await asyncio.sleep(0.01)
        md.answer_add.set()
        await grow
        md.release_ranges.set()
        await sync
        state = topics.by_name["t"]
        assert [p.partition for p in state.logs] == [0, 1, 2, 3]
        for plog in state.logs:
            assert store.logs[plog.stream_id] is plog, f"partition {plog.partition}: two logs"
        await wal.close()
        ports.close()
        md.close()

    asyncio.run(run())
