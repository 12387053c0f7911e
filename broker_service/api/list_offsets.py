"""ListOffsets: earliest, latest, max timestamp, and first offset at/after a timestamp.

A client of this broker's zone was told this broker leads partitions it does not
(api/zones.py): their lookups are asked of the real leader (a small request between brokers,
the answer is the leader's), so the client never loops on NOT_LEADER_OR_FOLLOWER."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from kio.index import load_request_schema
from kio.schema.errors import ErrorCode

from broker_service.api.access import TOPIC_AUTHORIZATION_FAILED, allowed_topic
from broker_service.api.base import Buffers, decode, respond
from broker_service.api.zones import serves_zone
from broker_service.cluster.rpc import RpcError
from broker_service.protocol.codec import shape
from broker_service.protocol.frames import RequestHeader
from broker_service.security.acl import DESCRIBE

if TYPE_CHECKING:
    from broker_service.api.services import BrokerServices
    from broker_service.kafka.partition import PartitionLog

LATEST, EARLIEST, MAX_TIMESTAMP = -1, -2, -3
# v8 (KIP-405) and v9 (KIP-1005): answered as Kafka answers a log without tiered storage
# (ours has one tier: every committed byte is in the object store, none on a broker's disk)
EARLIEST_LOCAL, LATEST_TIERED = -4, -5
LIST_OFFSETS = 2


def handle(broker: BrokerServices, header: RequestHeader, frame: memoryview) -> Awaitable[Buffers]:
    return _list_offsets(broker, header, decode(header, frame))


async def _list_offsets(broker: BrokerServices, header: RequestHeader, req: Any) -> Buffers:
    topics = []
    if any(t.name not in broker.topics for t in req.topics or ()):
        await broker.learn_unknown_topics()
    zoned = serves_zone(broker, header)
    elsewhere: dict[int, list[tuple[str, Any, dict[str, Any]]]] = {}  # leader -> asks
    for t in req.topics or ():
        parts = []
        may_describe = allowed_topic(broker, header, DESCRIBE, t.name)
        for p in t.partitions or ():
            plog = broker.partition(t.name, p.partition_index)
            if (
                zoned
                and may_describe
                and plog is not None
                and plog.leader_id not in (broker.node_id, -1)
            ):
                answer = {"partition_index": p.partition_index}
                elsewhere.setdefault(plog.leader_id, []).append((t.name, p, answer))
                parts.append(answer)  # filled in by the leader's answer
                continue
            if not may_describe or plog is None or plog.leader_id != broker.node_id:
                parts.append(
                    {
                        "partition_index": p.partition_index,
                        "error_code": TOPIC_AUTHORIZATION_FAILED
                        if not may_describe
                        else ErrorCode.unknown_topic_or_partition
                        if plog is None
                        else ErrorCode.not_leader_or_follower,
                        "timestamp": -1,
                        "offset": -1,
                        "leader_epoch": -1,
                    }
                )
                continue
            committed = getattr(req, "isolation_level", 0) == 1
            offset, ts = await _lookup(broker, plog, p.timestamp, committed)
            parts.append(
                {
                    "partition_index": p.partition_index,
                    "error_code": 0,
                    "timestamp": ts,
                    "offset": offset,
                    "leader_epoch": -1 if p.timestamp == LATEST_TIERED else plog.leader_epoch,
                }
            )
        topics.append({"name": t.name, "partitions": parts})
    for leader, asks in elsewhere.items():
        await _ask_leader(broker, header, req, leader, asks)
    return respond(header, {"throttle_time": 0, "topics": topics})


async def _ask_leader(
    broker: BrokerServices,
    header: RequestHeader,
    req: Any,
    leader: int,
    asks: list[tuple[str, Any, dict[str, Any]]],
) -> None:
    """The same lookups, asked of the partitions' leader in another zone."""
    by_topic: dict[str, list[Any]] = {}
    for name, p, _ in asks:
        by_topic.setdefault(name, []).append(p)
    body = {
        "replica_id": -1,
        "isolation_level": getattr(req, "isolation_level", 0),
        "topics": [
            {"name": name, "partitions": [
                {"partition_index": p.partition_index, "timestamp": p.timestamp,
                 "current_leader_epoch": getattr(p, "current_leader_epoch", -1)}
                for p in parts
            ]}
            for name, parts in by_topic.items()
        ],
    }  # fmt: skip
    found: dict[tuple[str, int], Any] = {}
    try:
        request = shape(load_request_schema(LIST_OFFSETS, header.api_version), body)
        resp = await broker.rpc.call(leader, request, 15.0)
        for t in resp.topics:
            for rp in t.partitions:
                found[(t.name, rp.partition_index)] = rp
    except RpcError:
        broker.request_refresh()
    for name, p, answer in asks:
        rp = found.get((name, p.partition_index))
        answer.update(
            {"error_code": int(rp.error_code), "timestamp": int(rp.timestamp),
             "offset": int(rp.offset),
             "leader_epoch": int(getattr(rp, "leader_epoch", -1))}
            if rp is not None
            else {"error_code": ErrorCode.not_leader_or_follower, "timestamp": -1,
                  "offset": -1, "leader_epoch": -1}
        )  # fmt: skip


async def _lookup(
    broker: BrokerServices, plog: PartitionLog, ts: int, read_committed: bool
) -> tuple[int, int]:
    if ts == LATEST:
        return (plog.last_stable_offset if read_committed else plog.high_watermark), -1
    if ts in (EARLIEST, EARLIEST_LOCAL):
        return plog.log_start_offset, -1
    if ts == LATEST_TIERED:
        return -1, -1
    assert broker.store is not None
    if ts == MAX_TIMESTAMP:
        found = await _max_timestamp(broker, plog)
        return found if found else (-1, -1)
    found = await broker.store.offset_for_timestamp(plog, ts)
    return found if found is not None else (-1, -1)


async def _max_timestamp(broker: BrokerServices, plog: PartitionLog) -> tuple[int, int] | None:
    """Offset of the first record carrying the partition's largest timestamp (KIP-734)."""
    assert broker.store is not None
    stamps = [r.max_timestamp for r in plog.ranges] + [b.max_timestamp for b in plog.cache]
    if not stamps:
        return None
    return await broker.store.offset_for_timestamp(plog, max(stamps))
