"""DeleteRecords (v0-2): move partitions' log start offsets forward (``kafka-delete-records``,
``AdminClient.delete_records``). The leader records the new log start offset in the metadata
store; the compactor drops the ranges below it and deletes their objects after its grace
period, like Kafka deleting whole segments below the log start offset.

A client of this broker's zone was told this broker leads partitions it does not (api/zones.py):
those are asked of the real leader, whose answer is the client's."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from kio.index import load_request_schema
from kio.schema.errors import ErrorCode

from broker_service.api.base import Buffers, decode, respond
from broker_service.api.zones import serves_zone
from broker_service.cluster.rpc import RpcError
from broker_service.metadata.errors import MetadataError
from broker_service.protocol.codec import shape
from broker_service.protocol.frames import RequestHeader

if TYPE_CHECKING:
    from broker_service.api.services import BrokerServices

DELETE_RECORDS = 21


def handle(broker: BrokerServices, header: RequestHeader, frame: memoryview) -> Awaitable[Buffers]:
    return _delete_records(broker, header, decode(header, frame))


async def _delete_records(broker: BrokerServices, header: RequestHeader, req: Any) -> Buffers:
    topics = []
    zoned = serves_zone(broker, header)
    for t in req.topics or ():
        parts = []
        for p in t.partitions or ():
            plog = broker.partition(t.name, p.partition_index)
            if zoned and plog is not None and plog.leader_id not in (broker.node_id, -1):
                code, low = await _ask_leader(broker, header, req, plog.leader_id, t.name,
                                              p.partition_index, p.offset)  # fmt: skip
            else:
                code, low = await _delete_one(broker, t.name, p.partition_index, p.offset)
            parts.append(
                {"partition_index": p.partition_index, "low_watermark": low, "error_code": code}
            )
        topics.append({"name": t.name, "partitions": parts})
    return respond(header, {"throttle_time": 0, "topics": topics})


async def _delete_one(
    broker: BrokerServices, topic: str, index: int, offset: int
) -> tuple[ErrorCode, int]:
    plog = broker.partition(topic, index)
    if plog is None:
        return ErrorCode.unknown_topic_or_partition, -1
    if plog.leader_id != broker.node_id or not broker.may_acknowledge():
        return ErrorCode.not_leader_or_follower, -1
    state = broker.topics[topic]
    if "delete" not in state.config(broker.configs, "cleanup.policy"):
        return ErrorCode.policy_violation, -1  # as Kafka: compact-only topics refuse it
    if offset != -1 and not 0 <= offset <= plog.high_watermark:
        return ErrorCode.offset_out_of_range, -1
    try:
        return ErrorCode.none, await broker.delete_records(plog, offset)
    except MetadataError:
        return ErrorCode.unknown_server_error, -1


async def _ask_leader(
    broker: BrokerServices, header: RequestHeader, req: Any, leader: int, topic: str,
    index: int, offset: int,
) -> tuple[ErrorCode, int]:  # fmt: skip
    """The same deletion, asked of the partition's leader in another zone."""
    body = {"topics": [{"name": topic, "partitions": [{"partition_index": index,
                                                       "offset": offset}]}],
            "timeout_ms": getattr(req, "timeout_ms", 30_000)}  # fmt: skip
    try:
        request = shape(load_request_schema(DELETE_RECORDS, header.api_version), body)
        resp = await broker.rpc.call(leader, request, 30.0)
        (answer,) = resp.topics[0].partitions
    except (RpcError, IndexError, ValueError):
        broker.request_refresh()
        return ErrorCode.not_leader_or_follower, -1
    return ErrorCode(int(answer.error_code)), int(answer.low_watermark)

