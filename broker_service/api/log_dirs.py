"""DescribeLogDirs (``kafka-log-dirs``) and DescribeTopicPartitions (the paged topic
description Kafka 3.9+ admin clients use).

A broker here keeps no log on its disk: its one logical log dir is the shared object store,
and it reports the partitions it leads there, each with its size (the committed ranges above
the log start offset plus what is not committed yet), as Kafka reports a replica's log size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from broker_service.api.access import (
    TOPIC_AUTHORIZATION_FAILED,
    allowed_topic,
    authorized_operations,
)
from broker_service.api.base import NOT_REQUESTED_OPS, Buffers, decode, respond
from broker_service.api.metadata import topic_entry
from broker_service.protocol.frames import RequestHeader
from broker_service.security import acl

if TYPE_CHECKING:
    from broker_service.api.services import BrokerServices
    from broker_service.kafka.partition import PartitionLog

MAX_PARTITIONS_PER_RESPONSE = 2000  # Kafka's max.request.partition.size.limit default


def log_dir(broker: BrokerServices) -> str:
    cfg = broker.config
    return cfg.storage or str((cfg.data_dir / "objects").resolve())


def partition_size(plog: PartitionLog) -> int:
    committed = sum(r.size for r in plog.ranges if r.end_offset > plog.log_start_offset)
    pending = sum(len(b.data) for b in plog.cache if b.base_offset >= plog.committed_end)
    return committed + pending


def describe_log_dirs(broker: BrokerServices, header: RequestHeader, frame: memoryview) -> Buffers:
    req = decode(header, frame)
    wanted: dict[str, set[int]] | None = None
    if req.topics is not None:
        wanted = {}
        for t in req.topics:
            wanted.setdefault(t.topic, set()).update(t.partitions)
    topics = []
    for name in sorted(broker.topics):
        if wanted is not None and name not in wanted:
            continue
        parts = [
            {"partition_index": p.partition, "partition_size": partition_size(p),
             "offset_lag": 0, "is_future_key": False}
            for p in broker.topics[name].logs
            if p.leader_id == broker.node_id and (wanted is None or p.partition in wanted[name])
        ]  # fmt: skip
        if parts:
            topics.append({"name": name, "partitions": parts})
    result = {
        "error_code": 0,
        "log_dir": log_dir(broker),
        "topics": topics,
        "total_bytes": -1,  # object storage: no volume size (Kafka's UNKNOWN_VOLUME_BYTES)
        "usable_bytes": -1,
    }
    return respond(header, {"throttle_time": 0, "error_code": 0, "results": [result]})


def describe_topic_partitions(
    broker: BrokerServices, header: RequestHeader, frame: memoryview
) -> Buffers:
    req = decode(header, frame)
    limit = min(max(req.response_partition_limit, 1), MAX_PARTITIONS_PER_RESPONSE)
    cursor = req.cursor
    if req.topics:
        names = sorted({t.name for t in req.topics})
        if cursor is not None and cursor.topic_name not in names:
            # Kafka: InvalidRequestException, every requested topic answered with it
            refused = [{"error_code": ErrorCode.invalid_request, "name": n, "topic_id": None,
                        "partitions": [], "topic_authorized_operations": NOT_REQUESTED_OPS}
                       for n in names]  # fmt: skip
            return respond(header, {"throttle_time": 0, "topics": refused})
    else:  # all topics the client may describe (the others are left out, as Kafka does)
        names = [n for n in sorted(broker.topics) if allowed_topic(broker, header, acl.DESCRIBE, n)]
    if cursor is not None:
        names = [n for n in names if n >= cursor.topic_name]
    topics: list[dict[str, Any]] = []
    budget = limit
    next_cursor = None
    listed = {b.broker_id for b in broker.listed_brokers()}  # once, for every topic
    for name in names:
        first = cursor.partition_index if cursor is not None and name == cursor.topic_name else 0
        entry = _topic(broker, header, name, listed)
        if entry["error_code"] != 0:
            topics.append(entry)
            continue
        parts = [p for p in entry["partitions"] if p["partition_index"] >= first]
        if budget == 0:
            next_cursor = {"topic_name": name, "partition_index": first}
            break
        if len(parts) > budget:
            next_cursor = {"topic_name": name, "partition_index": parts[budget]["partition_index"]}
            parts = parts[:budget]
        budget -= len(parts)
        topics.append({**entry, "partitions": parts})
        if next_cursor is not None:
            break
    return respond(header, {"throttle_time": 0, "topics": topics, "next_cursor": next_cursor})


def _topic(
    broker: BrokerServices, header: RequestHeader, name: str, listed: set[int]
) -> dict[str, Any]:
    if not allowed_topic(broker, header, acl.DESCRIBE, name):
        return {"error_code": TOPIC_AUTHORIZATION_FAILED, "name": name, "topic_id": None,
                "partitions": [], "topic_authorized_operations": NOT_REQUESTED_OPS}  # fmt: skip
    state = broker.topics.get(name)
    if state is None:
        return {"error_code": ErrorCode.unknown_topic_or_partition, "name": name,
                "topic_id": None, "partitions": [],
                "topic_authorized_operations": NOT_REQUESTED_OPS}  # fmt: skip
    entry = topic_entry(broker, state, listed=listed)
    for p in entry["partitions"]:
        p["eligible_leader_replicas"] = []
        p["last_known_elr"] = []
    entry["topic_authorized_operations"] = authorized_operations(
        broker, header, acl.TOPIC, name, True
    )
    return entry
