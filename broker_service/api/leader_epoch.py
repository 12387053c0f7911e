"""OffsetForLeaderEpoch (v2-4): clients validate their position after a leader change
(KIP-320) by asking where the epoch of their last fetched batch ends."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from broker_service.api.access import TOPIC_AUTHORIZATION_FAILED, allowed_topic
from broker_service.api.base import Buffers, decode, respond
from broker_service.kafka.leader_epochs import BatchAt, BatchEpoch, end_offset_for
from broker_service.protocol.frames import RequestHeader
from broker_service.protocol.record_batch import read_header
from broker_service.security import acl

if TYPE_CHECKING:
    from broker_service.api.services import BrokerServices
    from broker_service.kafka.partition import PartitionLog


def handle(broker: BrokerServices, header: RequestHeader, frame: memoryview) -> Awaitable[Buffers]:
    return _handle(broker, header, decode(header, frame))


async def _handle(broker: BrokerServices, header: RequestHeader, req: Any) -> Buffers:
    topics = []
    for t in req.topics:
        parts = []
        for p in t.partitions:
            code, epoch, end = await _one(broker, header, t.topic, p)
            parts.append({"error_code": code, "partition": p.partition, "leader_epoch": epoch,
                          "end_offset": end})  # fmt: skip
        topics.append({"topic": t.topic, "partitions": parts})
    return respond(header, {"throttle_time": 0, "topics": topics})


async def _one(
    broker: BrokerServices, header: RequestHeader, topic: str, p: Any
) -> tuple[int, int, int]:
    if not allowed_topic(broker, header, acl.DESCRIBE, topic):
        return TOPIC_AUTHORIZATION_FAILED, -1, -1
    plog = broker.partition(topic, p.partition)
    if plog is None:
        return ErrorCode.unknown_topic_or_partition, -1, -1
    if plog.leader_id != broker.node_id:
        broker.request_refresh()
        return ErrorCode.not_leader_or_follower, -1, -1
    current = p.current_leader_epoch
    if current != -1 and current < plog.leader_epoch:
        return ErrorCode.fenced_leader_epoch, -1, -1
    if current != -1 and current > plog.leader_epoch:
        return ErrorCode.unknown_leader_epoch, -1, -1
    end = plog.high_watermark
    epoch, offset = await end_offset_for(
        _reader(broker, plog, end), p.leader_epoch, plog.leader_epoch, plog.log_start_offset, end
    )
    return ErrorCode.none, epoch, offset


def _reader(broker: BrokerServices, plog: PartitionLog, end: int) -> BatchAt:
    async def batch_at(offset: int) -> BatchEpoch | None:
        assert broker.store is not None
        batches = await broker.store.read(plog, offset, 1, upto=end)
        if not batches:
            return None
        h = read_header(batches[0])
        return BatchEpoch(h.base_offset, h.last_offset, h.partition_leader_epoch)

    return batch_at
