"""Serving committed data of partitions led in another zone (DESIGN.md sections 6 and 10).

A consumer in this broker's zone reads here what another broker leads: either it was told
this broker leads the partition (a zoned client, api/zones.py), or the leader named this
broker its preferred read replica (KIP-392, ``client.rack``). Every broker reaches the same
object store, so this broker reads the partition's committed objects itself, through its
block cache; only pointers cross zones:

- a ``Shadow`` per partition holds the committed ranges this broker knows (a window from the
  offsets consumers asked for), the leader's high watermark and last stable offset, and the
  aborted transactions read_committed consumers need (the index a Kafka follower keeps);
- what is committed comes from the leader (ReplicaState, protocol/zone.py): asked at once when
  a fetch needs ranges this broker does not know, and long-polled per leader while consumers
  wait at the end of what is known, so new commits arrive as they happen (one request per
  leader, carrying every waiting partition; nothing is read from the metadata store while
  tailing). When an object is gone (compaction replaced it), the ranges are re-read from the
  metadata store once.

What is served is what is committed to objects: up to the end of the committed ranges (the
high watermark a consumer is told here) and, for read_committed, also below the leader's last
stable offset, with the aborted transactions in that span. With a file WAL that is what the
leader has uploaded (``BROKER_UPLOAD_INTERVAL_MS``, 2 s by default): consumers in other zones
see new records that much later; the object WAL commits every flush.
"""

from __future__ import annotations

import asyncio
import logging
import time
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field

from kio.schema.errors import ErrorCode

from broker_service.cluster.rpc import BrokerRpc, RpcError
from broker_service.kafka.log_store import OffsetOutOfRange, StreamStore
from broker_service.kafka.partition import PartitionLog
from broker_service.metadata.ports import MetadataPorts
from broker_service.metadata.records import StreamRange
from broker_service.protocol.primitives import ProtocolError
from broker_service.protocol.zone import (
    REPLICA_STATE,
    PartitionState,
    ReplicaAsk,
    ReplicaStateRequest,
    encode_replica_request,
    parse_replica_response,
)
from broker_service.stream.objectstore.base import ObjectNotFound

log = logging.getLogger(__name__)

NO_ABORTED = 2**62  # aborted_from when no read_committed consumer asked yet
POLL_CHANNEL, QUERY_CHANNEL = "replica-poll", "replica"
WANT_TTL_S = 10.0  # a partition is long-polled this long after a fetch last waited on it
IDLE_DROP_S = 300.0  # a partition nobody fetched this long is forgotten
MAX_RANGES = 20_000  # ranges a shadow keeps (the oldest go first)
RPC_TIMEOUT_S = 10.0
# Objects read whole (one GET, every block cached): the object WAL's, at most two flushes'
# worth (a few MiB) and holding ranges of many partitions that this zone's consumers want
WHOLE_OBJECT_PREFIXES = ("wal/",)


class ShadowLog(PartitionLog):
    """A shadow's log: its ranges are a window of the committed log, which moves (a long
    poll's answer trims its front or restarts it, a reload from the metadata store replaces
    it). An offset below the window is not known here: ``range_for`` says so (None), where a
    leader's log gives its first range (what retention and DeleteRecords leave below it is
    gone). A window's first range is only where the window starts now: serving an offset
    below it from there skipped records, silently."""

    def range_for(self, offset: int) -> StreamRange | None:
        if not self.ranges or offset < self.ranges[0].start_offset:
            return None
        return super().range_for(offset)


@dataclass(eq=False)
class Shadow:
    """What this broker knows of a partition led elsewhere. ``log`` is a ShadowLog, a
    PartitionLog with only committed ranges (its high watermark and committed end are their
    end, its cache is empty), so the StreamStore's read path serves it unchanged."""

    log: ShadowLog
    leader_id: int
    leader_epoch: int
    leader_hw: int = -1
    leader_lso: int = -1
    loaded: bool = False
    aborted: dict[tuple[int, int], int] = field(default_factory=dict)  # (pid, first) -> last
    aborted_floor: int = NO_ABORTED  # every aborted txn ending at/after this is known
    wanted_until: float = 0.0
    used: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def end(self) -> int:
        return self.log.committed_end

    def visible(self, read_committed: bool) -> int:
        return min(self.leader_lso, self.end) if read_committed else self.end

    def covers(self, offset: int) -> bool:
        ranges = self.log.ranges
        return bool(ranges) and ranges[0].start_offset <= offset

    def aborted_between(self, start: int, end: int) -> list[tuple[int, int]]:
        return sorted(
            (pid, first)
            for (pid, first), last in self.aborted.items()
            if last >= start and first < end
        )


class ReplicaReads:
    def __init__(
        self,
        store: StreamStore,
        rpc: BrokerRpc,
        ports: MetadataPorts,
        *,
        poll_wait_ms: int = 500,
        on_not_leader: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.rpc = rpc
        self.ports = ports
        self.poll_wait_ms = poll_wait_ms
        self.on_not_leader = on_not_leader
        self.shadows: dict[int, Shadow] = {}
        self._pollers: dict[int, asyncio.Task[None]] = {}
        # counters (metrics, bench)
        self.queries = 0
        self.polls = 0
        self.metadata_reloads = 0

    # -- the fetch path ----------------------------------------------------------------------
    def shadow(self, plog: PartitionLog) -> Shadow:
        now = time.monotonic()
        sh = self.shadows.get(plog.stream_id)
        if sh is None or sh.leader_id != plog.leader_id or sh.leader_epoch != plog.leader_epoch:
            if sh is not None:
                sh.log.abandon("the partition's leader changed")
            shadow_log = ShadowLog(
                plog.topic, plog.partition, plog.stream_id, plog.leader_epoch,
                plog.log_start_offset,
            )  # fmt: skip
            shadow_log.leader_id = plog.leader_id
            shadow_log.load_ranges([])
            # used now: a shadow's idle time counts from its last use, and a new one made
            # with 0.0 (the monotonic clock's zero is the host's boot) was forgotten at once
            sh = Shadow(shadow_log, plog.leader_id, plog.leader_epoch, used=now)
            self.shadows[plog.stream_id] = sh
            self._forget_idle(now)
        sh.used = now
        return sh

    async def prepare(self, sh: Shadow, offset: int, read_committed: bool) -> int:
        """Learn what a fetch at ``offset`` needs; returns a Kafka error code (0: none)."""
        stale = (
            not sh.loaded
            or (offset < sh.end and not sh.covers(offset))
            or offset > max(sh.leader_hw, sh.end)
            or (read_committed and offset < sh.aborted_floor)
        )
        if stale:
            async with sh.lock:
                code = await self._query(sh, offset, offset if read_committed else NO_ABORTED)
            if code:
                return code
        if offset < sh.log.log_start_offset or offset > max(sh.leader_hw, sh.end):
            return int(ErrorCode.offset_out_of_range)
        return 0

    async def read(
        self, sh: Shadow, offset: int, max_bytes: int, read_committed: bool, min_one: bool
    ) -> list[memoryview | bytes]:
        """Committed batches from ``offset``, the batch holding it first (raises
        OffsetOutOfRange); none at the end of what is known (``want`` then long-polls the
        leader). The window can lose ``offset`` while this waits (after ``prepare``, during
        a whole-object load or the read itself): the leader is asked again at ``offset``, as
        ``prepare`` does, and if the window has moved on again by then, nothing is answered
        this round (the client fetches again). Never batches of a later range."""
        upto = sh.visible(read_committed)
        if offset >= upto:
            return []
        reloaded = asked = False
        while True:
            try:
                r = sh.log.range_for(offset)
                if r is not None and self._whole(r.object_key):
                    await self.store.load_object(r.object_key)
                return await self.store.read(sh.log, offset, max_bytes, upto=upto, min_one=min_one)
            except ObjectNotFound:
                if reloaded:
                    raise
                reloaded = True
                await self._reload_from_metadata(sh, offset)
            except OffsetOutOfRange:
                if offset < sh.log.log_start_offset:
                    raise  # below the log start the leader told: out of range indeed
                if asked:
                    return []
                asked = True
                async with sh.lock:
                    if sh.log.range_for(offset) is None:
                        aborted_from = offset if read_committed else NO_ABORTED
                        if await self._query(sh, offset, aborted_from):
                            return []  # the next fetch's prepare reports it

    def _whole(self, key: str) -> bool:
        return key.startswith(WHOLE_OBJECT_PREFIXES) and not self.store.has_object(key)

    def _prefetch(self, ranges: list[StreamRange]) -> None:
        """New commits of partitions consumers wait on: have their objects here first."""
        for key in dict.fromkeys(r.object_key for r in ranges if self._whole(r.object_key)):
            task = asyncio.ensure_future(self.store.load_object(key))
            task.add_done_callback(_ignore)  # a read that needs it retries and reports

    def want(self, sh: Shadow) -> None:
        """A fetch waits at the end of what is known: long-poll the leader for news."""
        sh.wanted_until = time.monotonic() + WANT_TTL_S
        task = self._pollers.get(sh.leader_id)
        if task is None or task.done():
            self._pollers[sh.leader_id] = asyncio.get_running_loop().create_task(
                self._poll(sh.leader_id)
            )

    def close(self) -> None:
        for task in self._pollers.values():
            task.cancel()
        self._pollers.clear()

    # -- asking the leader -------------------------------------------------------------------
    async def _query(self, sh: Shadow, offset: int, aborted_from: int) -> int:
        self.queries += 1
        ask = ReplicaAsk(sh.log.topic, sh.log.partition, offset, aborted_from)
        try:
            body = await self.rpc.call_raw(
                sh.leader_id, REPLICA_STATE, 0,
                encode_replica_request(ReplicaStateRequest(0, [ask])),
                RPC_TIMEOUT_S, QUERY_CHANNEL,
            )  # fmt: skip
            [state] = parse_replica_response(body)
        except (RpcError, ProtocolError, ValueError) as exc:
            log.info("%s-%d: leader %d unreachable for committed ranges: %s",
                     sh.log.topic, sh.log.partition, sh.leader_id, exc)  # fmt: skip
            self.on_not_leader()
            return int(ErrorCode.not_leader_or_follower)
        return self._apply(sh, state, offset, aborted_from)

    async def _poll(self, leader: int) -> None:
        """One long poll at a time to ``leader`` for every partition waited on."""
        while True:
            now = time.monotonic()
            wanted = [
                sh
                for sh in self.shadows.values()
                if sh.leader_id == leader and sh.loaded and sh.wanted_until > now
            ]
            if not wanted:
                return
            asks = [
                ReplicaAsk(sh.log.topic, sh.log.partition, sh.end,
                           sh.end if sh.aborted_floor < NO_ABORTED else NO_ABORTED)
                for sh in wanted
            ]  # fmt: skip
            self.polls += 1
            try:
                body = await self.rpc.call_raw(
                    leader, REPLICA_STATE, 0,
                    encode_replica_request(ReplicaStateRequest(self.poll_wait_ms, asks)),
                    self.poll_wait_ms / 1000 + RPC_TIMEOUT_S, POLL_CHANNEL,
                )  # fmt: skip
                states = parse_replica_response(body)
            except (RpcError, ProtocolError, ValueError) as exc:
                log.info("long poll of broker %d failed: %s", leader, exc)
                self.on_not_leader()
                await asyncio.sleep(0.5)
                continue
            fresh: list[StreamRange] = []
            for sh, ask, state in zip(wanted, asks, states, strict=False):
                if self.shadows.get(sh.log.stream_id) is sh:
                    if self._apply(sh, state, ask.from_offset, ask.aborted_from):
                        sh.wanted_until = 0.0  # not led there any more: the topics follow
                    else:
                        fresh += [r for r in sh.log.ranges if r.end_offset > ask.from_offset]
            self._prefetch(fresh)

    def _apply(self, sh: Shadow, state: PartitionState, offset: int, aborted_from: int) -> int:
        if state.error_code:
            if state.error_code == ErrorCode.not_leader_or_follower:
                self.on_not_leader()
            return state.error_code
        slog = sh.log
        stream = slog.stream_id
        new = [
            StreamRange(stream, r.start_offset, r.end_offset, r.object_key, r.position, r.size,
                        r.max_timestamp)
            for r in state.ranges
        ]  # fmt: skip
        if new:
            keep = [r for r in slog.ranges if r.end_offset <= new[0].start_offset]
            if keep and keep[-1].end_offset != new[0].start_offset:
                keep = []  # not contiguous: the window restarts here
            # the oldest go first, never the ranges just asked for (an answer holds at most
            # the protocol's MAX_RANGES, far fewer than a shadow keeps)
            keep = keep[max(len(keep) + len(new) - MAX_RANGES, 0) :]
            self._set_ranges(sh, keep + new)
        elif not slog.ranges:
            end = max(state.committed_end, state.log_start_offset)
            slog.committed_end = slog.next_offset = slog.high_watermark = end
        slog.log_start_offset = state.log_start_offset
        sh.leader_hw, sh.leader_lso = state.high_watermark, state.last_stable_offset
        for pid, first, last in state.aborted:
            sh.aborted[(pid, first)] = last
        if aborted_from < sh.aborted_floor and aborted_from <= offset:
            sh.aborted_floor = aborted_from
        if sh.aborted and len(sh.aborted) > 1000:  # below the log start they matter no more
            sh.aborted = {k: v for k, v in sh.aborted.items() if v >= state.log_start_offset}
        sh.loaded = True
        slog.wake()
        return 0

    @staticmethod
    def _set_ranges(sh: Shadow, ranges: list[StreamRange]) -> None:
        slog = sh.log
        slog.ranges = ranges
        slog.range_starts = [r.start_offset for r in ranges]
        end = ranges[-1].end_offset if ranges else slog.log_start_offset
        slog.committed_end = slog.next_offset = slog.high_watermark = end

    async def _reload_from_metadata(self, sh: Shadow, offset: int) -> None:
        """An object is gone (compaction swapped it): the committed ranges as stored, the
        latest that fit in the window with the one holding ``offset`` (the read's)."""
        self.metadata_reloads += 1
        ranges = await self.ports.streams.stream_ranges(sh.log.stream_id)
        first = max(bisect_right([r.start_offset for r in ranges], offset) - 1, 0)
        start = min(first, max(len(ranges) - MAX_RANGES, 0))
        self._set_ranges(sh, ranges[start : start + MAX_RANGES])

    def _forget_idle(self, now: float) -> None:
        idle = [s for s, sh in self.shadows.items() if now - sh.used > IDLE_DROP_S]
        for s in idle:
            del self.shadows[s]


def _ignore(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()


__all__ = ["OffsetOutOfRange", "ReplicaReads", "Shadow"]
