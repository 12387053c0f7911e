"""InitProducerId and the transaction APIs: thin wrappers over ``txn.TransactionCoordinator``.

Versions are those of the classic transaction protocol (AddPartitionsToTxn/AddOffsetsToTxn/
EndTxn/TxnOffsetCommit v0-3, InitProducerId v0-4); the KIP-890 versions (transaction.version
2) are not advertised, so clients use this protocol.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from broker_service.api.access import (
    CLUSTER_AUTHORIZATION_FAILED,
    GROUP_AUTHORIZATION_FAILED,
    TOPIC_AUTHORIZATION_FAILED,
    TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    allowed,
    allowed_any_topic,
    allowed_cluster,
    allowed_group,
    allowed_topic,
)
from broker_service.api.base import Buffers, decode, respond
from broker_service.kafka.txn.coordinator import ProducerIdAndEpoch, TxnError
from broker_service.metadata.records import CommittedOffset
from broker_service.protocol.frames import RequestHeader
from broker_service.security import acl

if TYPE_CHECKING:
    from broker_service.api.services import BrokerServices


def _for_version(code: int, version: int, fenced_from: int) -> int:
    """PRODUCER_FENCED (KIP-588) reaches clients that know it; older request versions get
    INVALID_PRODUCER_EPOCH instead, as Kafka maps it (KafkaApis)."""
    if code == ErrorCode.producer_fenced and version < fenced_from:
        return ErrorCode.invalid_producer_epoch
    return code


def init_producer_id(
    broker: BrokerServices, header: RequestHeader, frame: memoryview
) -> Awaitable[Buffers]:
    return _init_producer_id(broker, header, decode(header, frame))


def _may_write_txn(broker: BrokerServices, header: RequestHeader, transactional_id: str) -> bool:
    return allowed(broker, header, acl.WRITE, acl.TRANSACTIONAL_ID, transactional_id)


def _init_refusal(broker: BrokerServices, header: RequestHeader, req: Any) -> ErrorCode | None:
    if req.transactional_id is not None:
        if not _may_write_txn(broker, header, req.transactional_id):
            return TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    elif not (
        allowed_cluster(broker, header, acl.IDEMPOTENT_WRITE)
        or allowed_any_topic(broker, header, acl.WRITE)
    ):
        return CLUSTER_AUTHORIZATION_FAILED  # idempotence: Kafka's KIP-679 rule
    return None


async def _init_producer_id(broker: BrokerServices, header: RequestHeader, req: Any) -> Buffers:
    refused = _init_refusal(broker, header, req)
    if refused is not None:
        return respond(
            header,
            {"throttle_time": 0, "error_code": refused, "producer_id": -1, "producer_epoch": -1},
        )
    current = None
    if header.api_version >= 3 and req.producer_id >= 0:
        current = ProducerIdAndEpoch(req.producer_id, req.producer_epoch)
    try:
        if req.transactional_id is None:
            result = await broker.txn.init_idempotent(current)
        else:
            timeout_ms = int(req.transaction_timeout.total_seconds() * 1000)
            result = await broker.txn.init_producer_id(req.transactional_id, timeout_ms, current)
    except TxnError as exc:
        code = _for_version(exc.code, header.api_version, 4)
        return respond(
            header,
            {"throttle_time": 0, "error_code": code, "producer_id": -1, "producer_epoch": -1},
        )
    return respond(
        header,
        {
            "throttle_time": 0,
            "error_code": 0,
            "producer_id": result.producer_id,
            "producer_epoch": result.producer_epoch,
        },
    )


def add_partitions_to_txn(
    broker: BrokerServices, header: RequestHeader, frame: memoryview
) -> Awaitable[Buffers]:
    return _add_partitions(broker, header, decode(header, frame))


async def _add_partitions(broker: BrokerServices, header: RequestHeader, req: Any) -> Buffers:
    wanted = [(t.name, p) for t in req.v3_and_below_topics for p in t.partitions]
    codes: dict[tuple[str, int], int]
    if not _may_write_txn(broker, header, req.v3_and_below_transactional_id):
        codes = {tp: TRANSACTIONAL_ID_AUTHORIZATION_FAILED for tp in wanted}
    elif denied := {t for t, _ in wanted if not allowed_topic(broker, header, acl.WRITE, t)}:
        # as Kafka: the refused topics say why, the others were not attempted
        codes = {
            (t, p): TOPIC_AUTHORIZATION_FAILED if t in denied else ErrorCode.operation_not_attempted
            for t, p in wanted
        }
    else:
        codes = await broker.txn.add_partitions(
            req.v3_and_below_transactional_id,
            req.v3_and_below_producer_id,
            req.v3_and_below_producer_epoch,
            wanted,
        )
    by_topic: dict[str, list[dict[str, int]]] = {}
    for (topic, partition), code in codes.items():
        by_topic.setdefault(topic, []).append(
            {
                "partition_index": partition,
                "partition_error_code": _for_version(code, header.api_version, 2),
            }
        )
    results = [{"name": t, "results_by_partition": ps} for t, ps in by_topic.items()]
    return respond(header, {"throttle_time": 0, "results_by_topic_v3_and_below": results})


def add_offsets_to_txn(
    broker: BrokerServices, header: RequestHeader, frame: memoryview
) -> Awaitable[Buffers]:
    return _add_offsets(broker, header, decode(header, frame))


async def _add_offsets(broker: BrokerServices, header: RequestHeader, req: Any) -> Buffers:
    code: int
    if not _may_write_txn(broker, header, req.transactional_id):
        code = TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    elif not allowed_group(broker, header, acl.READ, req.group_id):
        code = GROUP_AUTHORIZATION_FAILED
    else:
        code = await broker.txn.add_offsets(
            req.transactional_id, req.producer_id, req.producer_epoch, req.group_id
        )
    return respond(
        header, {"throttle_time": 0, "error_code": _for_version(code, header.api_version, 2)}
    )


def end_txn(broker: BrokerServices, header: RequestHeader, frame: memoryview) -> Awaitable[Buffers]:
    return _end_txn(broker, header, decode(header, frame))


async def _end_txn(broker: BrokerServices, header: RequestHeader, req: Any) -> Buffers:
    code: int
    if not _may_write_txn(broker, header, req.transactional_id):
        code = TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    else:
        code = await broker.txn.end_txn(
            req.transactional_id, req.producer_id, req.producer_epoch, req.committed
        )
    return respond(
        header, {"throttle_time": 0, "error_code": _for_version(code, header.api_version, 2)}
    )


def txn_offset_commit(
    broker: BrokerServices, header: RequestHeader, frame: memoryview
) -> Awaitable[Buffers]:
    return _txn_offset_commit(broker, header, decode(header, frame))


async def _txn_offset_commit(broker: BrokerServices, header: RequestHeader, req: Any) -> Buffers:
    now = int(time.time() * 1000)
    offsets = [
        CommittedOffset(
            t.name,
            p.partition_index,
            p.committed_offset,
            getattr(p, "committed_leader_epoch", -1),
            p.committed_metadata,
            now,
        )
        for t in req.topics
        for p in t.partitions
    ]
    unknown = {
        (o.topic, o.partition) for o in offsets if broker.partition(o.topic, o.partition) is None
    }
    code = ErrorCode.unknown_topic_or_partition if unknown else 0
    if not _may_write_txn(broker, header, req.transactional_id):
        code = TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    elif not allowed_group(broker, header, acl.READ, req.group_id):
        code = GROUP_AUTHORIZATION_FAILED
    elif any(not allowed_topic(broker, header, acl.READ, t.name) for t in req.topics):
        code = TOPIC_AUTHORIZATION_FAILED
    elif not unknown:
        code = await broker.txn.txn_offset_commit(
            req.transactional_id, req.group_id, req.producer_id, req.producer_epoch, offsets
        )
    topics = [
        {
            "name": t.name,
            "partitions": [
                {"partition_index": p.partition_index, "error_code": code} for p in t.partitions
            ],
        }
        for t in req.topics
    ]
    return respond(header, {"throttle_time": 0, "topics": topics})


def write_txn_markers(
    broker: BrokerServices, header: RequestHeader, frame: memoryview
) -> Awaitable[Buffers]:
    return _write_txn_markers(broker, header, decode(header, frame))


async def _write_txn_markers(broker: BrokerServices, header: RequestHeader, req: Any) -> Buffers:
    """Sent by another broker's transaction coordinator to this partition leader."""
    markers = []
    for m in req.markers:
        topics = []
        for t in m.topics:
            parts = []
            for p in t.partition_indexes:
                code = await broker.txn.append_marker(
                    t.name, p, m.producer_id, m.producer_epoch, m.transaction_result
                )
                parts.append({"partition_index": p, "error_code": code})
            topics.append({"name": t.name, "partitions": parts})
        markers.append({"producer_id": m.producer_id, "topics": topics})
    return respond(header, {"markers": markers})
