"""Fetch: read from the log cache or objects, long-poll until min_bytes or max_wait.

Zone awareness (api/zones.py): a consumer of this broker's zone (its client.id marker, its
listener, or its ``rack_id``, KIP-392) is served committed data of partitions led elsewhere
(kafka/replicas.py); a consumer with a ``rack_id`` of another zone that has brokers is sent
to one of them as ``preferred_read_replica``, as a Kafka leader does with
``replica.selector.class=RackAwareReplicaSelector``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from broker_service.api.access import TOPIC_AUTHORIZATION_FAILED, allowed_topic
from broker_service.api.base import Buffers, Later, decode
from broker_service.api.zones import serves_zone, zone_broker_ids, zone_server
from broker_service.kafka.log_store import OffsetOutOfRange
from broker_service.protocol.fetch import (
    FetchPartitionResult,
    FetchTopicResult,
    build_fetch_response,
)
from broker_service.protocol.frames import RequestHeader
from broker_service.security.acl import READ
from broker_service.stream.objectstore.base import ObjectNotFound

log = logging.getLogger(__name__)
ZERO_UUID = uuid.UUID(int=0)
READ_COMMITTED = 1

if TYPE_CHECKING:
    from broker_service.api.services import BrokerServices
    from broker_service.kafka.partition import PartitionLog
    from broker_service.kafka.topics import TopicState


def handle(broker: BrokerServices, header: RequestHeader, frame: memoryview) -> Later:
    # Decode now, so a malformed request closes the connection before any work is queued.
    # A fetch changes nothing: the requests after it start while it long-polls.
    return Later(_fetch(broker, header, decode(header, frame)))


async def _fetch(broker: BrokerServices, header: RequestHeader, req: Any) -> Buffers:
    version = header.api_version
    by_id = version >= 13
    wanted: list[tuple[Any, TopicState | None, list[Any]]] = []
    denied: list[FetchTopicResult] = []
    if any(
        (t.topic_id not in broker.topics_by_id) if by_id else (t.topic not in broker.topics)
        for t in req.topics or ()
    ):
        await broker.learn_unknown_topics()
    for t in req.topics or ():
        state = broker.topics_by_id.get(t.topic_id) if by_id else broker.topics.get(t.topic)
        name = state.name if state is not None else getattr(t, "topic", "") or ""
        if (state is not None or not by_id) and not allowed_topic(broker, header, READ, name):
            denied.append(_denied(t, name, by_id))
            continue
        wanted.append((t, state, list(t.partitions or ())))
    max_bytes = req.max_bytes if version >= 3 else 2**31 - 1
    deadline = time.monotonic() + req.max_wait.total_seconds()
    read_committed = req.isolation_level == READ_COMMITTED
    collector = _Collector(broker, wanted, max_bytes, by_id, read_committed)
    rack = getattr(req, "rack_id", None) or None
    collector.as_replica = serves_zone(broker, header) or (
        rack is not None and rack == broker.config.rack
    )
    if rack is not None and rack != broker.config.rack:
        collector.rack_brokers = zone_broker_ids(broker, rack)
    while True:
        results, total, errors, logs = await collector.collect()
        remaining = deadline - time.monotonic()
        if total >= req.min_bytes or errors or remaining <= 0 or not logs or denied:
            collector.count_sent(results)  # what the response carries, once
            return build_fetch_response(version, results + denied)
        await wait_for_data(logs, remaining)


def _denied(t: Any, name: str, by_id: bool) -> FetchTopicResult:
    parts = []
    for p in t.partitions or ():
        res = FetchPartitionResult(p.partition)
        res.error_code = TOPIC_AUTHORIZATION_FAILED
        parts.append(res)
    return FetchTopicResult(name, t.topic_id if by_id else ZERO_UUID, parts)


class _Collector:
    """Reads a fetch's partitions; on a long poll's wake-up it reads again only the partitions
    whose visible end moved (the others' answers cannot have changed)."""

    def __init__(
        self,
        broker: BrokerServices,
        wanted: list[tuple[Any, TopicState | None, list[Any]]],
        max_bytes: int,
        by_id: bool,
        read_committed: bool,
    ) -> None:
        self.broker = broker
        self.wanted = wanted
        self.max_bytes = max_bytes
        self.by_id = by_id
        self.read_committed = read_committed
        # serve partitions led elsewhere from committed objects (the client is in our zone)
        self.as_replica = False
        # brokers of the client's rack (KIP-392 rack_id), when it is not ours
        self.rack_brokers: list[int] = []
        # (topic index, partition index) -> (visible end it was read at, its result)
        self._seen: dict[tuple[int, int], tuple[int, FetchPartitionResult]] = {}

    async def collect(self) -> tuple[list[FetchTopicResult], int, bool, list[PartitionLog]]:
        broker = self.broker
        store = broker.store
        assert store is not None
        results: list[FetchTopicResult] = []
        total = 0
        errors = False
        logs: list[PartitionLog] = []
        for ti, (t, state, parts) in enumerate(self.wanted):
            presults = []
            for pi, p in enumerate(parts):
                plog = (
                    state.logs[p.partition]
                    if state and 0 <= p.partition < len(state.logs)
                    else None
                )
                res = FetchPartitionResult(p.partition)
                if plog is None or plog.deleted:
                    res.error_code = (
                        ErrorCode.unknown_topic_id
                        if self.by_id and state is None
                        else ErrorCode.unknown_topic_or_partition
                    )
                    errors = True
                elif (
                    plog.leader_id != broker.node_id
                    and plog.leader_id >= 0
                    and self.as_replica
                    and broker.replicas is not None
                ):
                    res, error, shadow_log = await self._read_replica(
                        ti, pi, plog, p, res, total
                    )
                    errors |= error
                    if shadow_log is not None:
                        logs.append(shadow_log)
                    total += res.size
                elif plog.leader_id != broker.node_id:
                    broker.request_refresh()
                    res.error_code = ErrorCode.not_leader_or_follower
                    errors = True
                elif self.rack_brokers and (
                    preferred := zone_server(self.rack_brokers, plog)
                ) != broker.node_id:
                    res.preferred_read_replica = preferred  # no data: the client goes there
                    res.high_watermark = plog.high_watermark
                    res.last_stable_offset = plog.last_stable_offset
                    res.log_start_offset = plog.log_start_offset
                    errors = True  # answer at once
                else:
                    logs.append(plog)
                    lso = plog.last_stable_offset
                    visible = lso if self.read_committed else plog.high_watermark
                    seen = self._seen.get((ti, pi))
                    if seen is not None and seen[0] == visible and not seen[1].records:
                        res = seen[1]  # nothing new to read since the last pass
                    else:
                        res.high_watermark = plog.high_watermark
                        res.last_stable_offset = lso
                        res.log_start_offset = plog.log_start_offset
                        limit = min(p.partition_max_bytes, self.max_bytes - total)
                        if limit > 0 or total == 0:
                            errors |= await self._read(store, plog, p, res, limit, total, lso)
                        self._seen[(ti, pi)] = (visible, res)
                    total += res.size
                presults.append(res)
            name = state.name if state else getattr(t, "topic", "")
            topic_id = (
                t.topic_id if self.by_id else state.topic_id if state else None
            ) or ZERO_UUID
            results.append(FetchTopicResult(name, topic_id, presults))
        return results, total, errors, logs

    async def _read_replica(
        self, ti: int, pi: int, plog: PartitionLog, p: Any, res: FetchPartitionResult, total: int
    ) -> tuple[FetchPartitionResult, bool, PartitionLog | None]:
        """A partition led elsewhere, served from its committed objects (kafka/replicas.py).
        Returns the result, whether it is an error, and what a long poll waits on."""
        replicas = self.broker.replicas
        assert replicas is not None
        sh = replicas.shadow(plog)
        code = await replicas.prepare(sh, p.fetch_offset, self.read_committed)
        if code:
            res.error_code = code
            return res, True, None
        visible = sh.visible(self.read_committed)
        seen = self._seen.get((ti, pi))
        if seen is not None and seen[0] == visible and not seen[1].records:
            res = seen[1]
        else:
            res.high_watermark = sh.end
            res.last_stable_offset = min(sh.leader_lso, sh.end)
            res.log_start_offset = sh.log.log_start_offset
            limit = min(p.partition_max_bytes, self.max_bytes - total)
            if limit > 0 or total == 0:
                try:
                    res.records = await replicas.read(
                        sh, p.fetch_offset, max(limit, 0), self.read_committed, total == 0
                    )
                except OffsetOutOfRange:
                    res.error_code = ErrorCode.offset_out_of_range
                    return res, True, None
                except ObjectNotFound as exc:
                    _storage_error(res, plog, exc)
                    return res, True, None
                if self.read_committed and res.records:
                    res.aborted = sh.aborted_between(p.fetch_offset, visible)
            self._seen[(ti, pi)] = (visible, res)
        if p.fetch_offset >= visible:
            replicas.want(sh)
        return res, False, sh.log

    async def _read(
        self,
        store: Any,
        plog: PartitionLog,
        p: Any,
        res: FetchPartitionResult,
        limit: int,
        total: int,
        lso: int,
    ) -> bool:
        """Read one partition into ``res``; True when it ended in an error."""
        try:
            res.records = await store.read(
                plog,
                p.fetch_offset,
                max(limit, 0),
                upto=lso if self.read_committed else None,
                min_one=total == 0,
            )
        except OffsetOutOfRange:
            res.error_code = ErrorCode.offset_out_of_range
            return True
        except ObjectNotFound as exc:
            _storage_error(res, plog, exc)
            return True
        if self.read_committed and res.records and plog.producers.aborted:
            res.aborted = [
                (a.producer_id, a.first_offset)
                for a in plog.producers.aborted_between(p.fetch_offset, lso)
            ]
        return False

    def count_sent(self, results: list[FetchTopicResult]) -> None:
        metrics = self.broker.metrics
        for t in results:
            for res in t.partitions:
                if res.records:
                    metrics.fetched(t.name, res.index, res.size)


async def wait_for_data(logs: list[PartitionLog], timeout: float) -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    for plog in logs:
        plog.waiters.add(fut)
    try:
        await asyncio.wait_for(fut, timeout)
    except TimeoutError:
        pass
    finally:
        for plog in logs:
            plog.waiters.discard(fut)


def _storage_error(res: FetchPartitionResult, plog: PartitionLog, exc: ObjectNotFound) -> None:
    """An object a committed range names is gone (not a compaction swap: that is re-read):
    the partition answers KAFKA_STORAGE_ERROR, as Kafka does for an unreadable log, and the
    connection and the other partitions go on."""
    log.error("fetch of stream %s: object missing: %s", plog.stream_id, exc)
    res.error_code = ErrorCode.kafka_storage_error
