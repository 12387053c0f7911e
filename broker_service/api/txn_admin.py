"""The transactions tooling (KIP-664: ``kafka-transactions list / describe /
describe-producers / find-hanging``): DescribeProducers at each partition leader,
ListTransactions and DescribeTransactions at each transaction coordinator."""

from __future__ import annotations

import datetime
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from broker_service.api.access import (
    TOPIC_AUTHORIZATION_FAILED,
    TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    allowed,
    allowed_topic,
)
from broker_service.api.base import Buffers, decode, respond
from broker_service.metadata.records import (
    TXN_COMPLETE_ABORT,
    TXN_COMPLETE_COMMIT,
    TXN_EMPTY,
    TXN_ONGOING,
    TXN_PREPARE_ABORT,
    TXN_PREPARE_COMMIT,
    TxnRecord,
)
from broker_service.protocol.frames import RequestHeader
from broker_service.security import acl

if TYPE_CHECKING:
    from broker_service.api.services import BrokerServices

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
# Kafka's TransactionState names (those ListTransactions accepts as filters)
STATES = frozenset({TXN_EMPTY, TXN_ONGOING, TXN_PREPARE_COMMIT, TXN_PREPARE_ABORT,
                    TXN_COMPLETE_COMMIT, TXN_COMPLETE_ABORT, "Dead",
                    "PrepareEpochFence"})  # fmt: skip


def describe_producers(broker: BrokerServices, header: RequestHeader, frame: memoryview) -> Buffers:
    req = decode(header, frame)
    topics = []
    for t in req.topics:
        parts = []
        for index in t.partition_indexes:
            base: dict[str, Any] = {"partition_index": index, "active_producers": []}
            plog = broker.partition(t.name, index)
            if not allowed_topic(broker, header, acl.READ, t.name):
                parts.append({**base, "error_code": TOPIC_AUTHORIZATION_FAILED})
            elif plog is None:
                parts.append({**base, "error_code": ErrorCode.unknown_topic_or_partition})
            elif plog.leader_id != broker.node_id:
                parts.append({**base, "error_code": ErrorCode.not_leader_or_follower})
            else:
                producers = [
                    {
                        "producer_id": pid,
                        "producer_epoch": e.epoch,
                        "last_sequence": e.batches[-1].last_seq if e.batches else -1,
                        "last_timestamp": e.last_ms or -1,
                        "coordinator_epoch": -1,  # markers here carry no coordinator epoch
                        "current_txn_start_offset": e.txn_first_offset,
                    }
                    for pid, e in sorted(plog.producers.producers.items())
                ]
                parts.append({**base, "error_code": 0, "active_producers": producers})
        topics.append({"name": t.name, "partitions": parts})
    return respond(header, {"throttle_time": 0, "topics": topics})


def list_transactions(
    broker: BrokerServices, header: RequestHeader, frame: memoryview
) -> Awaitable[Buffers]:
    return _list_transactions(broker, header, decode(header, frame))


async def _list_transactions(broker: BrokerServices, header: RequestHeader, req: Any) -> Buffers:
    states = set(req.state_filters or ())
    pids = set(req.producer_id_filters or ())
    duration = getattr(req, "duration_filter", -1)
    now = int(time.time() * 1000)
    listed = []
    for rec in await broker.ports.txns.transactions():
        tid = rec.transactional_id
        if not broker.coordinates(tid):  # each coordinator lists its own, as in Kafka
            continue
        if (states and rec.state not in states) or (pids and rec.producer_id not in pids):
            continue
        if duration >= 0 and now - rec.start_ms <= duration:
            continue
        if allowed(broker, header, acl.DESCRIBE, acl.TRANSACTIONAL_ID, tid):
            listed.append(
                {"transactional_id": tid, "producer_id": rec.producer_id,
                 "transaction_state": rec.state}
            )  # fmt: skip
    return respond(
        header,
        {
            "throttle_time": 0,
            "error_code": 0,
            "unknown_state_filters": sorted(states - STATES),
            "transaction_states": sorted(listed, key=lambda t: t["transactional_id"]),
        },
    )


def describe_transactions(
    broker: BrokerServices, header: RequestHeader, frame: memoryview
) -> Awaitable[Buffers]:
    return _describe_transactions(broker, header, decode(header, frame))


async def _describe_transactions(
    broker: BrokerServices, header: RequestHeader, req: Any
) -> Buffers:
    out = []
    for tid in req.transactional_ids:
        base: dict[str, Any] = {"transactional_id": tid, "transaction_state": "",
                                "transaction_timeout": 0, "transaction_start_time": _time(-1),
                                "producer_id": -1, "producer_epoch": -1, "topics": []}  # fmt: skip
        if not allowed(broker, header, acl.DESCRIBE, acl.TRANSACTIONAL_ID, tid):
            out.append({**base, "error_code": TRANSACTIONAL_ID_AUTHORIZATION_FAILED})
            continue
        if not broker.coordinates(tid):
            out.append({**base, "error_code": ErrorCode.not_coordinator})
            continue
        rec = await broker.ports.txns.transaction(tid)
        if rec is None:
            out.append({**base, "error_code": ErrorCode.transactional_id_not_found})
            continue
        out.append({**base, "error_code": 0, **_description(rec)})
    return respond(header, {"throttle_time": 0, "transaction_states": out})


def _time(ms: int) -> datetime.datetime:
    """kio writes this field from a datetime, and -1 (none) too: 1 ms before the epoch."""
    return _EPOCH + datetime.timedelta(milliseconds=ms)


def _description(rec: TxnRecord) -> dict[str, Any]:
    by_topic: dict[str, list[int]] = {}
    if rec.state in (TXN_ONGOING, TXN_PREPARE_COMMIT, TXN_PREPARE_ABORT):
        for topic, partition in rec.partitions:
            by_topic.setdefault(topic, []).append(partition)
    return {
        "transaction_state": rec.state,
        "transaction_timeout": rec.timeout_ms,
        "transaction_start_time": _time(rec.start_ms if rec.state != TXN_EMPTY else -1),
        "producer_id": rec.producer_id,
        "producer_epoch": rec.producer_epoch,
        "topics": [{"topic": t, "partitions": sorted(ps)} for t, ps in sorted(by_topic.items())],
    }
