"""A broker serving a partition led in another zone (kafka/replicas.py) answers a fetch at
offset X with the batch holding X, never with batches of a later range, even when the window
of committed ranges its shadow keeps moves on while the fetch is under way.

The hazard: ``PartitionLog.range_for`` gives the first range for an offset below it (right for
a leader's log, where only retention or DeleteRecords leave such a gap), and a shadow's window
can lose the fetch's range between ``prepare`` and the read: a long poll's answer trims its
front (``MAX_RANGES``) or restarts it, and a reload from the metadata store after an object is
gone replaces it. The fetch was then answered from the new first range: records skipped,
silently (a Kafka client takes a batch above its position as a compacted gap).

Why not broker processes and a Kafka client: the skip needs the window to lose the fetch's
range inside a few milliseconds (the whole-object GET of an object-WAL object a read starts
with) and a partition with more committed ranges than a shadow keeps (20 000); neither can be
made to happen on cue in a cluster. So the parts are the real ones in one process: the real
ReplicaReads, StreamStore read path and object WAL (committed ``wal/`` objects in a local
directory, SQLite metadata), and the leader's real ReplicaState handler
(api/replica_state.py, its long poll included) behind a stand-in for the RPC connection. What
the test controls: one object's GET waits until the test releases it, and ``MAX_RANGES`` is 3
so that a fourth range overflows the window.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import cast

import pytest

from broker_service.api import replica_state
from broker_service.cluster.rpc import BrokerRpc
from broker_service.kafka import replicas
from broker_service.kafka.log_store import StreamStore
from broker_service.kafka.partition import PartitionLog
from broker_service.kafka.replicas import ReplicaReads
from broker_service.metadata.ports import MetadataPorts
from broker_service.metadata.records import PartitionRecord
from broker_service.metadata.sqlite import SqliteMetadataStore
from broker_service.protocol.record_batch import validate_batches
from broker_service.protocol.zone import REPLICA_STATE, parse_replica_request
from broker_service.stream.objectstore.fs import FsObjectStore
from broker_service.stream.wal import FileWal
from broker_service.stream.wal.object import ObjectWal
from tests.kafka_wire import build_batch
from tests.support.wait import wait_until_async

RECORDS = 5  # per batch; one batch per object-WAL flush, so one committed range each


class HeldGets(FsObjectStore):
    """The local-directory store of the replica's broker; a GET of a key in ``hold`` waits
    until the test sets its event."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.hold: dict[str, asyncio.Event] = {}
        self.waiting: set[str] = set()

    async def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        gate = self.hold.get(key)
        if gate is not None:
            self.waiting.add(key)
            await gate.wait()
        return await super().get(key, start, end)


class Leader:
    """Broker 1, the partition's leader, as its ReplicaState handler sees it (its real
    StreamStore and partition log). ``call_raw`` stands in for the RPC connection to it: it
    runs the leader's handler on the request bytes and returns the answer's bytes."""

    node_id = 1

    def __init__(self, plog: PartitionLog) -> None:
        self.plog = plog
        self.topics = {plog.topic: None}

    def partition(self, topic: str, partition: int) -> PartitionLog | None:
        return self.plog if (topic, partition) == (self.plog.topic, self.plog.partition) else None

    def request_refresh(self) -> None:
        pass

    async def learn_unknown_topics(self) -> None:
        pass

    async def call_raw(self, broker_id: int, api_key: int, version: int, body: bytes,
                       timeout: float = 15.0, channel: str = "") -> bytes:  # fmt: skip
        assert (broker_id, api_key) == (self.node_id, REPLICA_STATE)
        answer = await replica_state._answer(self, parse_replica_request(body))  # type: ignore[arg-type]
        return b"".join(bytes(b) for b in answer)


async def _produce(store: StreamStore, plog: PartitionLog) -> None:
    raw = bytearray(build_batch([b"v%d" % i for i in range(RECORDS)]))
    _, fut = store.append(plog, memoryview(raw), validate_batches(memoryview(raw)))
    await fut


def _bases(batches: list[memoryview | bytes]) -> list[int]:
    return [int.from_bytes(b[:8], "big") for b in batches]


async def _leader(
    tmp_path: Path,
) -> tuple[SqliteMetadataStore, MetadataPorts, ObjectWal, StreamStore, PartitionRecord, int]:
    """Broker 1 leads partition t-0 (object WAL on the local object store); broker 2 is
    registered: (store, ports, broker 1's WAL and StreamStore, the partition, 2's epoch)."""
    md = SqliteMetadataStore(tmp_path / "m.sqlite")
    leader_me = md.register_broker(1, "a", 1, None, 60_000)
    replica_me = md.register_broker(2, "b", 1, None, 60_000)
    rec = md.create_topic("t", 1, {}, [1]).partitions[0]
    ports = MetadataPorts(md)
    wal = ObjectWal(FsObjectStore(tmp_path / "objects"), ports, flush_interval_ms=0)
    wal.bind(1, leader_me.epoch)
    await wal.open()
    leader_store = StreamStore(FsObjectStore(tmp_path / "objects"), ports, wal, 1,
                               leader_me.epoch)  # fmt: skip
    part = PartitionRecord("t", 0, rec.stream_id, 1, rec.leader_epoch, 0)
    return md, ports, wal, leader_store, part, replica_me.epoch


def test_a_fetch_under_way_is_not_answered_from_a_later_range_when_the_window_moves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A consumer reads a partition from its start through the replica while another tails
    it: the tail's long poll brings a fourth range, which pushes the first out of the window
    (``MAX_RANGES`` 3) while the first consumer's read waits for the first range's object.
    That read must still answer from offset 0 (before the fix it answered from offset 5, the
    window's new first range: records 0-4 skipped); and a consumer reading on from there gets
    every offset once."""
    monkeypatch.setattr(replicas, "MAX_RANGES", 3)

    async def run() -> None:
        md, ports, wal, leader_store, part, replica_epoch = await _leader(tmp_path)
        leader_log = leader_store.add_partition(part, [])
        objects = HeldGets(tmp_path / "objects")
        replica_store = StreamStore(objects, ports, FileWal(tmp_path / "wal-2"), 2,
                                    replica_epoch)  # fmt: skip
        replica_log = replica_store.add_partition(part, [])
        leader = Leader(leader_log)
        reads = ReplicaReads(replica_store, cast(BrokerRpc, leader), ports, poll_wait_ms=5000)
        try:
            for _ in range(3):
                await _produce(leader_store, leader_log)
            assert [(r.start_offset, r.end_offset) for r in leader_log.ranges] == [
                (0, 5), (5, 10), (10, 15)
            ]  # fmt: skip

            sh = reads.shadow(replica_log)
            assert await reads.prepare(sh, 0, False) == 0
            assert sh.covers(0) and sh.end == 15
            first = sh.log.ranges[0].object_key
            assert first.startswith("wal/"), first  # read whole, with one GET
            gate = objects.hold[first] = asyncio.Event()
            reading = asyncio.ensure_future(reads.read(sh, 0, 1 << 20, False, True))
            await wait_until_async(lambda: first in objects.waiting, 5, "the read's GET")

            reads.want(sh)  # a tailing consumer waits at offset 15: a long poll from there
            await wait_until_async(lambda: leader_log.waiters, 5, "the poll waiting at the leader")
            await _produce(leader_store, leader_log)  # [15, 20): the poll answers
            await wait_until_async(lambda: sh.end == 20, 5, "the poll's answer")
            assert sh.log.ranges[0].start_offset > 0, "the window moved past offset 0"

            gate.set()
            bases = _bases(await reading)
            assert bases[:1] in ([], [0]), f"a fetch at offset 0 answered with batches {bases}"

            offset, seen = 0, []  # the first consumer reads on
            while offset < 20:
                assert await reads.prepare(sh, offset, False) == 0
                batches = await reads.read(sh, offset, 1 << 20, False, True)
                assert batches, f"nothing at {offset}"
                for base in _bases(batches):
                    assert base == offset, f"a fetch at {offset} answered from {base}"
                    seen.append(base)
                    offset = base + RECORDS
            assert seen == [0, 5, 10, 15]
        finally:
            reads.close()
            await wal.close()
            ports.close()
            md.close()

    asyncio.run(run())


def test_a_reload_after_compaction_keeps_the_range_the_read_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replica knows a partition's ranges [0, 20): three, that compaction then merges
    into one object, deleting theirs (grace 0), and a fourth. The leader commits three more.
    A read at offset 0 finds its object gone and re-reads the ranges from the metadata store:
    five, one more than the window holds (``MAX_RANGES`` 4). The reload kept the last four,
    and the read was answered from offset 15, the new first range (records 0-14 skipped); it
    must keep the range holding offset 0."""
    from broker_service.config.compaction import CompactionConfig
    from broker_service.control.compaction import compact

    monkeypatch.setattr(replicas, "MAX_RANGES", 4)

    async def run() -> None:
        md, ports, wal, leader_store, part, replica_epoch = await _leader(tmp_path)
        leader_log = leader_store.add_partition(part, [])
        replica_store = StreamStore(FsObjectStore(tmp_path / "objects"), ports,
                                    FileWal(tmp_path / "wal-2"), 2, replica_epoch)  # fmt: skip
        replica_log = replica_store.add_partition(part, [])
        reads = ReplicaReads(replica_store, cast(BrokerRpc, Leader(leader_log)), ports,
                             poll_wait_ms=5000)  # fmt: skip
        try:
            for _ in range(3):
                await _produce(leader_store, leader_log)
            sh = reads.shadow(replica_log)
            assert await reads.prepare(sh, 0, False) == 0
            assert [r.object_key[:4] for r in sh.log.ranges] == ["wal/"] * 3

            result = await compact(md, FsObjectStore(tmp_path / "objects"),
                                   CompactionConfig(replaced_grace_ms=0))  # fmt: skip
            assert result.swaps == 1, result
            assert not (tmp_path / "objects" / sh.log.ranges[0].object_key).exists()
            reads.want(sh)  # a tailing consumer learns [15, 20) by long poll, then leaves
            await wait_until_async(lambda: leader_log.waiters, 5, "the poll waiting at the leader")
            await _produce(leader_store, leader_log)
            await wait_until_async(lambda: sh.end == 20, 5, "the poll's answer")
            reads.close()
            for _ in range(3):
                await _produce(leader_store, leader_log)
            stored = md.stream_ranges(part.stream_id)
            assert [(r.start_offset, r.end_offset) for r in stored] == [
                (0, 15), (15, 20), (20, 25), (25, 30), (30, 35)
            ]  # fmt: skip

            assert await reads.prepare(sh, 0, False) == 0
            assert sh.covers(0) and reads.queries == 1, "the window holds offset 0: no query"
            bases = _bases(await reads.read(sh, 0, 1 << 20, False, True))
            assert reads.metadata_reloads == 1
            assert bases == [0, 5, 10], f"a fetch at offset 0 answered with batches {bases}"
        finally:
            reads.close()
            await wal.close()
            ports.close()
            md.close()

    asyncio.run(run())
