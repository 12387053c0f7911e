"""Zone-forwarded produce, the in-zone side (DESIGN.md sections 5.7 and 10).

A client in this broker's zone was told this broker leads a partition whose real leader is in
another zone (api/zones.py). Its produce comes here; the batches are validated by the produce
handler, then:

1. they are made durable in the object store without offsets, in one of two layouts:

   - object WAL (``wal=object``, the cloud): they ride in this broker's own WAL flush
     (stream/wal/object.py): records with ``forward_to`` set join the group commit, and the
     flush's one object ``wal/<broker>-<epoch>-<time_ns>-<seq>.sso`` holds this broker's own
     streams (committed as always) followed by the forwarded batches, grouped by leader, as
     sections no range names. One PUT per flush cycle carries both; the forwarded sections
     are never committed;
   - file WAL (embedded): pending batches of all partitions form a group (the next group
     gathers while a write runs) and become a forward object of their own, PUT once through
     the ObjectWriter under ``zfw/<broker>-<epoch>-<time_ns>-<seq>.sso``, grouped by leader,
     never committed;

2. as soon as the object's PUT returned (the object WAL does not wait for its metadata
   commit: the bytes are durable, which is all a leader needs), each leader gets one small
   request (protocol/zone.py ZoneForwardProduce) naming the object and the byte span of each
   partition's batches; requests go out in object order on the leader's one connection
   (cluster/rpc.py), so the leader appends them in the order the clients sent them;
3. the leader reads its spans from the object store (a ranged GET: S3 traffic is free within
   a region and crosses no zone boundary) and appends them through its normal guarded append
   (producer rules, transactions, fencing, offsets, its own WAL), then answers with the
   offsets or the error, which is what the client is answered here.

Only the pointer crosses zones. The forwarded bytes are garbage as soon as the leader has read
them: a zfw object (or a WAL object carrying forwarded batches only, never committed) is
removed by compaction's orphan sweep after its grace period (control/compaction.py); a WAL
object with ranges of this broker's lives as long as they do. A batch whose request timed out
before its object was written is refused here and never forwarded; after that, the leader's
WAL refuses it past the request's deadline, so a timed-out batch is never committed later
(DESIGN.md invariant 11). A batch whose object could not be written is answered
KAFKA_STORAGE_ERROR (the client retries).

Why the leader re-writes the bytes instead of committing a range into the forwarding object:
a range pointing into another broker's object would need readers to rebase offsets, a WAL
record format for pointers, and a commit of the object's record atomically with the leader's
own ranges (which the file WAL commits only at upload, possibly long after the orphan sweep's
grace); the copy keeps the leader's write path, its commits and every reader as they are, at
the cost of one ranged GET per leader and object. docs/ZONES.md has the figures.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field

from kio.schema.errors import ErrorCode

from broker_service.cluster.rpc import BrokerRpc, RpcError
from broker_service.metadata.records import StreamRange
from broker_service.protocol.record_batch import BatchHeader
from broker_service.protocol.zone import (
    ZONE_FORWARD_PRODUCE,
    ForwardItem,
    ForwardRequest,
    ForwardResult,
    encode_forward_request,
    parse_forward_response,
)
from broker_service.stream.object_writer import ObjectWriter, WrittenObject
from broker_service.stream.objectstore.base import ObjectStore
from broker_service.stream.wal import Wal, WalRecord, WalTimeout

log = logging.getLogger(__name__)

FORWARD_PREFIX = "zfw/"
DEFAULT_TIMEOUT_MS = 30_000  # acks=0 batches carry no deadline: the leader gets this
ANSWER_SLACK_S = 30.0  # the leader answers by the deadline; wait this much more for it


@dataclass(eq=False, slots=True)
class _Item:
    stream_id: int
    topic: str
    partition: int
    leader_id: int
    records: memoryview
    records_count: int
    max_timestamp: int
    deadline: float
    future: asyncio.Future[ForwardResult] = field(repr=False)


async def _not_committed(_w: WrittenObject) -> None:
    """Forward objects are never committed: the leader appends their bytes to its own log."""


def _fail(items: list[_Item], code: int, message: str | None = None) -> None:
    for it in items:
        if not it.future.done():
            it.future.set_result(ForwardResult(error_code=code, error_message=message))


class ZoneForwarder:
    def __init__(
        self,
        objects: ObjectStore,
        rpc: BrokerRpc,
        *,
        block_bytes: int = 1 << 20,
        linger_ms: float = 0.0,
        max_group_bytes: int = 8 << 20,
        on_not_leader: Callable[[], None] = lambda: None,
        wal: Wal | None = None,
    ) -> None:
        # A WAL that writes objects carries the forwarded batches in its own flush (one PUT
        # per cycle, not two); otherwise they go into forward objects of their own, with
        # the linger and size given here.
        self.wal = wal if wal is not None and wal.carries_forwarded else None
        self.writer = ObjectWriter(objects, block_bytes)
        self.objects = objects
        self.rpc = rpc
        self.linger = linger_ms / 1000
        self.max_group_bytes = max_group_bytes
        self.on_not_leader = on_not_leader
        self.broker_id = -1
        self.broker_epoch = -1
        self._pending: list[_Item] = []
        self._pending_bytes = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._seq = 0
        self._riding = 0  # handed to the WAL, not yet handed back written (or failed)
        self._written: deque[tuple[_Item, StreamRange]] = deque()  # written, to be sent
        self._closed = False
        self._busy = False  # a group is being written or sent (close waits for it)
        # counters (metrics, bench): objects that carried forwarded batches (zfw objects, or
        # WAL objects with forwarded sections), the batches' bytes, the batches
        self.objects_written = 0
        self.bytes_forwarded = 0
        self.batches_forwarded = 0

    def bind(self, broker_id: int, broker_epoch: int) -> None:
        self.broker_id, self.broker_epoch = broker_id, broker_epoch

    def forward(
        self,
        stream_id: int,
        topic: str,
        partition: int,
        leader_id: int,
        records: memoryview,
        batches: list[tuple[int, BatchHeader]],
        deadline: float = math.inf,
    ) -> asyncio.Future[ForwardResult]:
        """Queue validated batches for the partition's leader; the future gets the leader's
        answer (never an exception)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[ForwardResult] = loop.create_future()
        count = sum(h.last_offset_delta + 1 for _, h in batches)
        max_ts = max(h.max_timestamp for _, h in batches)
        item = _Item(stream_id, topic, partition, leader_id, records, count, max_ts, deadline, fut)
        if self.wal is not None:
            self._ride(item)
            return fut
        self._pending.append(item)
        self._pending_bytes += len(records)
        self._start(self._flusher)
        self._wakeup.set()
        return fut

    def _start(self, loop_fn: Callable[[], Coroutine[None, None, None]]) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(loop_fn())

    def _ride(self, item: _Item) -> None:
        """Hand the batches to the object WAL: they go out with its next flush, and come back
        with their span once its object is written (stream/wal/object.py)."""
        assert self.wal is not None

        def written(_r: WalRecord, span: StreamRange | None, exc: BaseException | None) -> None:
            self._riding -= 1
            if isinstance(exc, WalTimeout):  # never forwarded: the client is told so
                _fail([item], ErrorCode.request_timed_out,
                      "not forwarded before the request's timeout")  # fmt: skip
            elif exc is not None or span is None:
                why = f"forwarded batches not written: {exc}"
                _fail([item], ErrorCode.kafka_storage_error, why)
            elif self._closed:
                _fail([item], ErrorCode.not_leader_or_follower, "the broker is stopping")
            else:  # sent in the order the WAL hands them back: its flushes' order
                self._written.append((item, span))
                self._start(self._sender)
                self._wakeup.set()

        self._riding += 1
        self.wal.append(
            WalRecord(item.stream_id, 0, item.records_count, item.records, item.max_timestamp,
                      written, item.deadline, forward_to=item.leader_id)
        )  # fmt: skip

    async def close(self) -> None:
        """Let what is queued go out (what rides in the WAL comes back with its flush), then
        stop (answers still arrive on the RPC)."""
        while self._riding or (
            (self._pending or self._written or self._busy)
            and self._task is not None
            and not self._task.done()
        ):
            self._wakeup.set()
            await asyncio.sleep(0.001)
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        left = self._pending + [it for it, _ in self._written]
        _fail(left, ErrorCode.not_leader_or_follower, "the broker is stopping")
        self._pending.clear()
        self._written.clear()

    async def _sender(self) -> None:
        """The object WAL's layout: send what its flushes wrote, one object after the other
        (each flush's forwarded batches come back together, and flushes in order)."""
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._written:
                key = self._written[0][1].object_key
                items: list[_Item] = []
                spans: list[StreamRange] = []
                while self._written and self._written[0][1].object_key == key:
                    item, span = self._written.popleft()
                    items.append(item)
                    spans.append(span)
                self._busy = True
                try:
                    await self._dispatch(key, items, spans)
                except Exception as exc:  # never leave a client waiting
                    log.exception("zone forward of %d batches failed", len(items))
                    _fail(items, ErrorCode.kafka_storage_error, str(exc))
                finally:
                    self._busy = False

    async def _flusher(self) -> None:
        while True:
            await self._wakeup.wait()
            if self.linger > 0:
                deadline = time.monotonic() + self.linger
                while self._pending_bytes < self.max_group_bytes and time.monotonic() < deadline:
                    await asyncio.sleep(min(0.002, self.linger))
            self._wakeup.clear()
            group = self._take_group()
            if group:
                self._busy = True
                try:
                    await self._send(group)
                except Exception as exc:  # never leave a client waiting
                    log.exception("zone forward of %d batches failed", len(group))
                    _fail(group, ErrorCode.kafka_storage_error, str(exc))
                finally:
                    self._busy = False

    def _take_group(self) -> list[_Item]:
        n, size = 0, 0
        for it in self._pending:  # at least one, then up to the cap
            if n and size + len(it.records) > self.max_group_bytes:
                break
            n, size = n + 1, size + len(it.records)
        group = self._pending[:n]
        del self._pending[:n]
        self._pending_bytes -= size
        if self._pending:
            self._wakeup.set()
        return group

    async def _send(self, group: list[_Item]) -> None:
        now = time.monotonic()
        late = [it for it in group if it.deadline < now]
        if late:  # never forwarded: the client was (or will be) told it timed out
            _fail(late, ErrorCode.request_timed_out, "not forwarded before the request's timeout")
            group = [it for it in group if it.deadline >= now]
            if not group:
                return
        group.sort(key=lambda it: it.leader_id)  # stable: a partition's batches keep order
        self._seq += 1
        key = (
            f"{FORWARD_PREFIX}{self.broker_id}-{self.broker_epoch}-{time.time_ns()}-{self._seq}.sso"
        )
        streams = [
            (it.stream_id, [(0, it.records_count, it.max_timestamp, it.records)]) for it in group
        ]
        try:
            written = await self.writer.write(key, streams, _not_committed)
        except Exception as exc:
            log.warning("zone forward object %s could not be written: %s", key, exc)
            _fail(group, ErrorCode.kafka_storage_error, f"forward object not written: {exc}")
            return
        await self._dispatch(key, group, written.ranges)  # one range per item, in order

    async def _dispatch(self, key: str, items: list[_Item], spans: list[StreamRange]) -> None:
        """One object's forwarded batches, grouped by leader (as they sit in the object):
        one request per leader, in this order on each leader's connection."""
        self.objects_written += 1
        self.bytes_forwarded += sum(s.size for s in spans)
        self.batches_forwarded += len(items)
        start = 0
        while start < len(items):
            leader = items[start].leader_id
            end = start
            while end < len(items) and items[end].leader_id == leader:
                end += 1
            await self._ask_leader(leader, key, items[start:end], spans[start:end])
            start = end

    async def _ask_leader(
        self, leader: int, key: str, items: list[_Item], spans: list[StreamRange]
    ) -> None:
        finite = [it.deadline for it in items if it.deadline != math.inf]
        remaining = min(finite) - time.monotonic() if finite else DEFAULT_TIMEOUT_MS / 1000
        timeout_ms = max(1, int(remaining * 1000))
        where = [
            ForwardItem(it.topic, it.partition, s.position, s.size)
            for it, s in zip(items, spans, strict=True)
        ]
        request = ForwardRequest(timeout_ms, -1, key, where)
        try:
            answer = await self.rpc.submit_raw(
                leader, ZONE_FORWARD_PRODUCE, 0, encode_forward_request(request),
                timeout_ms / 1000 + ANSWER_SLACK_S,
            )  # fmt: skip
        except RpcError as exc:
            log.info("zone forward to broker %d not sent: %s", leader, exc)
            self.on_not_leader()
            _fail(items, ErrorCode.not_leader_or_follower, str(exc))
            return
        answer.add_done_callback(lambda f: self._answered(leader, items, f))

    def _answered(self, leader: int, items: list[_Item], fut: asyncio.Future[bytes]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            exc = None if fut.cancelled() else fut.exception()
            log.info("zone forward to broker %d: no answer (%s)", leader, exc)
            self.on_not_leader()  # the outcome is unknown: the client retries
            _fail(items, ErrorCode.not_leader_or_follower, f"no answer from the leader: {exc}")
            return
        try:
            results = parse_forward_response(fut.result())
        except ValueError as exc:
            _fail(items, ErrorCode.unknown_server_error, f"bad answer from the leader: {exc}")
            return
        if len(results) != len(items):
            _fail(items, ErrorCode.unknown_server_error, "the leader answered another request")
            return
        for it, res in zip(items, results, strict=True):
            if res.error_code == ErrorCode.not_leader_or_follower:
                self.on_not_leader()
            if not it.future.done():
                it.future.set_result(res)
