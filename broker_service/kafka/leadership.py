"""Partition leadership on this broker: taking a partition over, handing one over, draining.

Leadership is a compare-and-set in the metadata store (leader id and leader epoch); no data
moves with it. Taking over reads the partition's committed ranges and producer state (and,
with a file WAL on a shared disk, commits what the previous leader's WAL still holds);
handing over first makes everything acknowledged committed, so the new leader misses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from broker_service.control.placement import LeastLoaded
from broker_service.kafka.log_store import StreamStore
from broker_service.kafka.partition import NotDurable, PartitionLog
from broker_service.kafka.topics import Topics
from broker_service.metadata.errors import ConcurrentUpdate, UnknownTopic
from broker_service.metadata.ports import MetadataPorts
from broker_service.metadata.records import DRAINING, BrokerRecord, PartitionRecord
from broker_service.protocol.errors import NotLeaderOrFollower
from broker_service.stream.wal import read_wal_dir

log = logging.getLogger(__name__)

DURABLE_WAIT_S = 30.0  # a hand-over waits this long for in-flight batches to settle


class NotLeader(NotLeaderOrFollower):
    pass


class _OutcomeUnknown(RuntimeError):
    """A move failed and the store could not say whether it applied."""


class Leadership:
    def __init__(
        self,
        ports: MetadataPorts,
        store: StreamStore,
        node_id: int,
        *,
        shared_wal_dir: Path | None,
        drain_timeout_ms: int,
        is_live: Callable[[int], Awaitable[bool]],
        topics: Callable[[], Topics],
        on_draining: Callable[[list[int]], None],
    ) -> None:
        self.ports = ports
        self.metadata = ports.store  # the few calls made before serving, in a thread
        self.store = store
        self.node_id = node_id
        self.shared_wal_dir = shared_wal_dir  # file WAL on a shared disk: other brokers' WALs
        self.drain_timeout_s = drain_timeout_ms / 1000
        self._is_live = is_live
        self._topics = topics
        self._on_draining = on_draining
        self.drained_epoch: int | None = None  # set once this broker became DRAINING
        self._settling: set[asyncio.Future[None]] = set()  # hand-overs of unknown outcome

    async def changed(self, plog: PartitionLog, rec: PartitionRecord) -> None:
        """The metadata store says ``rec`` now leads ``plog``: follow it."""
        previous = plog.leader_id
        if rec.leader_id != self.node_id:
            if previous == self.node_id:
                log.info("%s-%d: now led by broker %d", plog.topic, plog.partition, rec.leader_id)
            plog.leader_id, plog.leader_epoch = rec.leader_id, rec.leader_epoch
            plog.clear_cache()
            plog.abandon(f"{plog.topic}-{plog.partition} is now led by broker {rec.leader_id}")
            return
        ranges = await self.ports.streams.stream_ranges(plog.stream_id)
        plog.clear_cache()
        plog.log_start_offset = rec.log_start_offset
        plog.load_ranges(ranges)
        await self.store.load_producer_state(plog)
        recovered = await self._recover_file_wal(plog, previous)
        plog.leader_epoch = rec.leader_epoch
        plog.leader_id = self.node_id
        log.info(
            "%s-%d: now led here (epoch %d) from offset %d%s",
            plog.topic,
            plog.partition,
            rec.leader_epoch,
            plog.next_offset,
            f", {recovered} batches recovered from broker {previous}'s WAL" if recovered else "",
        )

    async def _recover_file_wal(self, plog: PartitionLog, previous: int) -> int:
        """With a file WAL on a shared disk, the previous leader's acknowledged batches that
        never reached an object are in its WAL: commit them before serving the partition."""
        if previous < 0 or previous == self.node_id or self.shared_wal_dir is None:
            return 0
        wal_dir = self.shared_wal_dir / f"broker-{previous}"
        if not wal_dir.exists():
            return 0
        entries = [
            e
            for e in await asyncio.to_thread(read_wal_dir, wal_dir)
            if e.stream_id == plog.stream_id
        ]
        plog.leader_id = self.node_id  # replay and upload only touch partitions led here
        n = self.store.replay(entries)
        if n:
            await self.store.upload()
        return n

    async def hand_over(self, topic: str, partition: int, target: int) -> None:
        """Graceful move of a partition this broker leads: stop accepting, make everything
        acknowledged committed, then hand over with leader_epoch + 1. No data is copied: the
        new leader reads the committed ranges."""
        plog = self._topics().partition(topic, partition)
        if plog is None:
            raise UnknownTopic(f"{topic}-{partition}")
        if plog.leader_id != self.node_id:
            raise NotLeader(f"{topic}-{partition} is led by broker {plog.leader_id}")
        if target == self.node_id:
            return
        if not await self._is_live(target):
            raise ValueError(f"broker {target} is not a live broker")
        plog.moving = True
        moved = False
        try:
            if plog.in_flight():  # what the WAL holds completes (durable or refused) first
                try:
                    await asyncio.wait_for(
                        asyncio.shield(plog.wait_durable(plog.next_offset)), DURABLE_WAIT_S
                    )
                except NotDurable:
                    pass  # refused and truncated: nothing of it was acknowledged
            empty_rounds = 0
            while plog.committed_end < plog.high_watermark:  # file WAL: upload what is left
                if await self.store.upload():
                    continue
                empty_rounds += 1  # a concurrent upload may just have taken it: look again
                if empty_rounds > 20:
                    raise RuntimeError(
                        f"durable data of {topic}-{partition} could not be uploaded: committed "
                        f"{plog.committed_end}, high watermark {plog.high_watermark}, "
                        f"{len(plog.cache)} cached batches from {plog.cache_start()}"
                    )
                await asyncio.sleep(0.05)
            # the new leader starts from this snapshot: no batches to replay
            await self.store.save_producer_snapshots(force=True, only=plog)
            epoch = plog.leader_epoch
            try:
                rec = await self._move(topic, partition, epoch, target)
            except _OutcomeUnknown:
                # it may have moved: refuse writes here until the store says
                moved = True
                settle = asyncio.ensure_future(self._settle(plog, epoch))
                self._settling.add(settle)
                settle.add_done_callback(self._settling.discard)
                raise
            moved = True
        finally:
            if not moved:
                plog.moving = False
        await self.changed(plog, rec)
        plog.moving = False

    async def _settle(self, plog: PartitionLog, epoch: int) -> None:
        """A hand-over's outcome was unknown: read the partition until the store answers,
        then follow the leader it names (it moved) or accept writes again (it did not)."""
        delay = 0.5
        while True:
            try:
                current = await self._current(plog.topic, plog.partition)
                break
            except Exception as exc:
                log.warning("%s-%d: hand-over outcome still unknown: %s", plog.topic,
                            plog.partition, exc)  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        if current is not None and (current.leader_id, current.leader_epoch) != (
            self.node_id, epoch,
        ):  # fmt: skip
            await self.changed(plog, current)
        plog.moving = False

    async def _move(self, topic: str, partition: int, epoch: int, target: int) -> PartitionRecord:
        """The move's compare-and-set, correct when its outcome is unknown (an error after
        it applied, a lost answer): the partition's record then says whether it moved (to
        ``target`` at ``epoch`` + 1), or still names this broker at ``epoch`` and the move is
        tried again (a late first attempt and the retry cannot both apply). Raises
        ``ConcurrentUpdate`` if someone else moved it, ``_OutcomeUnknown`` if the store
        cannot tell (the caller keeps the partition refused until ``_settle`` reads it)."""
        delay = 0.05
        for attempt in range(8):
            try:
                return await self.ports.topics.move_partition(
                    topic, partition, self.node_id, epoch, target
                )
            except (ConcurrentUpdate, UnknownTopic):
                current = await self._current(topic, partition)
                if current is not None and (current.leader_id, current.leader_epoch) == (
                    target, epoch + 1,
                ):  # fmt: skip
                    return current  # our move landed; its answer was lost
                raise
            except Exception as exc:
                log.warning("%s-%d: move to %d failed (attempt %d): %s", topic, partition,
                            target, attempt + 1, exc)  # fmt: skip
                try:
                    current = await self._current(topic, partition)
                except Exception as read_exc:
                    raise _OutcomeUnknown(f"{topic}-{partition}: {read_exc}") from exc
                if current is None:
                    raise UnknownTopic(f"{topic}-{partition}") from exc
                if (current.leader_id, current.leader_epoch) == (target, epoch + 1):
                    return current
                if (current.leader_id, current.leader_epoch) != (self.node_id, epoch):
                    raise ConcurrentUpdate(f"{topic}-{partition} moved elsewhere") from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        raise _OutcomeUnknown(f"{topic}-{partition}: the move failed {attempt + 1} times")

    async def _current(self, topic: str, partition: int) -> PartitionRecord | None:
        rec = await self.ports.topics.topic(topic)
        if rec is None or partition >= len(rec.partitions):
            return None
        return rec.partitions[partition]

    async def drain(self, me: BrokerRecord) -> int:
        """Graceful shutdown in a cluster: become DRAINING (no new partitions, not a
        coordinator any more) and hand every partition led here to the least-loaded live
        broker, so clients move at once instead of waiting for the lease to expire. Returns
        how many partitions moved; bounded by ``drain_timeout_ms``."""
        now_ms = int(time.time() * 1000)
        siblings = self._siblings(await self.ports.brokers.broker_info())
        others = [
            b.broker_id
            for b in await self.ports.brokers.live_brokers(now_ms)
            if b.broker_id != self.node_id and b.broker_id not in siblings
        ]
        topics = self._topics()
        led = topics.led_here()
        if not others:
            return 0
        await self.ports.brokers.set_broker_state(self.node_id, me.epoch, DRAINING)
        self.drained_epoch = me.epoch  # the stop ends by fencing it (runtime/broker.py)
        self._on_draining(others)  # coordinates nothing from now on
        load = dict.fromkeys(others, 0)
        for s in topics.by_name.values():
            for p in s.logs:
                if p.leader_id in load:
                    load[p.leader_id] += 1
        targets = LeastLoaded(load)
        moved = 0
        deadline = time.monotonic() + self.drain_timeout_s
        log.info("draining: handing %d partitions to brokers %s", len(led), others)
        for plog in led:
            if time.monotonic() > deadline:
                log.warning("drain timed out; %d partitions left to recovery", len(led) - moved)
                break
            target = targets.pick()
            try:
                await self.hand_over(plog.topic, plog.partition, target)
            except Exception as exc:  # left to the lease-expiry recovery
                log.warning("%s-%d: hand-over failed: %s", plog.topic, plog.partition, exc)
                targets.undo(target)
                continue
            moved += 1
        log.info("drained: %d partitions handed over", moved)
        return moved

    def _siblings(self, info: dict[int, dict[str, str]]) -> set[int]:
        """Brokers of this broker's own task (``serve --processes N``: they publish the same
        task ARN): a task stops as a whole, so its brokers drain to other tasks' brokers,
        never to each other."""
        mine = info.get(self.node_id, {}).get("task_arn")
        if not mine:
            return set()
        return {bid for bid, i in info.items() if bid != self.node_id and i.get("task_arn") == mine}

    async def delete_records(self, plog: PartitionLog, offset: int) -> int:
        """DeleteRecords: raise the log start offset (durably, in metadata) to ``offset``
        (-1: the high watermark); returns the new low watermark. The compactor drops the
        ranges below it and deletes their objects after the grace period."""
        target = plog.high_watermark if offset == -1 else offset
        rec = await self.ports.topics.set_log_start_offset(plog.topic, plog.partition, target)
        plog.log_start_offset = max(plog.log_start_offset, rec.log_start_offset)
        return plog.log_start_offset
