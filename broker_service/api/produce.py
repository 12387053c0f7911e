"""Produce: validate batch headers and CRCs, assign offsets in place, wait for the WAL.

acks=0 gets no response; acks=1 and acks=all are both answered once the batch is durable in
shared storage (there are no follower replicas: durability is the storage's).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from broker_service.api.access import TOPIC_AUTHORIZATION_FAILED, allowed_topic, refuse_produce
from broker_service.api.base import Buffers, Result
from broker_service.kafka.groups.offsets_topic import INTERNAL_TOPICS
from broker_service.kafka.producer_state import Outcome, Verdict
from broker_service.kafka.topic_format import Refused, format_batches
from broker_service.protocol.frames import RequestHeader
from broker_service.protocol.produce import (
    ProducePartition,
    ProducePartitionResult,
    build_produce_response,
    parse_produce,
)
from broker_service.protocol.record_batch import (
    BatchHeader,
    InconsistentRecordBatch,
    InvalidRecordBatch,
    UnsupportedMagic,
    validate_batches,
)
from broker_service.security.acl import WRITE

if TYPE_CHECKING:
    from broker_service.kafka.partition import PartitionLog
    from broker_service.runtime.broker import Broker, TopicState

log = logging.getLogger(__name__)


def handle(broker: Broker, header: RequestHeader, frame: memoryview) -> Result:
    version = header.api_version
    req = parse_produce(frame, header.body_offset, version)
    topics: list[tuple[str, list[ProducePartitionResult]]] = []
    refused = refuse_produce(broker, header, req.acks, req.transactional_id)
    if refused is not None:
        for t in req.topics:
            results = [ProducePartitionResult(p.index, refused) for p in t.partitions]
            topics.append((t.name, results))
        return [build_produce_response(version, topics, header.throttle_ms)]
    pending: list[tuple[ProducePartitionResult, asyncio.Future[Any]]] = []
    for t in req.topics:
        state = broker.topics.get(t.name)
        if not allowed_topic(broker, header, WRITE, t.name):
            denied = TOPIC_AUTHORIZATION_FAILED
            topics.append((t.name, [ProducePartitionResult(p.index, denied) for p in t.partitions]))
            continue
        results = []
        for p in t.partitions:
            res, fut = _append(broker, state, p)
            results.append(res)
            if fut is not None:
                pending.append((res, fut))
        topics.append((t.name, results))
    if req.acks == 0:
        return None
    if not pending:
        return [build_produce_response(version, topics, header.throttle_ms)]
    return _respond_when_durable(broker, version, topics, pending, header.throttle_ms)


def _append(
    broker: Broker, state: TopicState | None, p: ProducePartition
) -> tuple[ProducePartitionResult, asyncio.Future[Any] | None]:
    res = ProducePartitionResult(p.index)
    plog = state.logs[p.index] if state is not None and 0 <= p.index < len(state.logs) else None
    if plog is None or broker.store is None:
        broker.request_refresh()  # perhaps created through another broker a moment ago
        res.error_code = ErrorCode.unknown_topic_or_partition
        return res, None
    if plog.leader_id != broker.node_id or plog.moving or not broker.may_acknowledge():
        if plog.leader_id != broker.node_id:
            broker.request_refresh()
        res.error_code = ErrorCode.not_leader_or_follower
        return res, None
    if plog.topic in INTERNAL_TOPICS:  # written by the broker only (Kafka's ReplicaManager)
        res.error_code = ErrorCode.invalid_topic_exception
        res.error_message = f"Cannot append to internal topic {plog.topic}"
        return res, None
    if p.records is None or len(p.records) == 0:
        res.error_code = ErrorCode.corrupt_message
        res.error_message = "no records"
        return res, None
    try:
        batches = validate_batches(p.records)
    except InconsistentRecordBatch as exc:
        res.error_code = ErrorCode.invalid_record
        res.error_message = str(exc)
        return res, None
    except UnsupportedMagic as exc:
        res.error_code = ErrorCode.unsupported_for_message_format
        res.error_message = str(exc)
        return res, None
    except InvalidRecordBatch as exc:
        res.error_code = ErrorCode.corrupt_message
        res.error_message = str(exc)
        return res, None
    limit = state.config(broker.configs, "max.message.bytes") if state else 0
    if any(h.size > limit for _, h in batches):
        res.error_code = ErrorCode.message_too_large
        res.error_message = f"record batch larger than max.message.bytes={limit}"
        return res, None
    if batches[0][1].producer_id >= 0 or batches[0][1].is_control:
        verdict = _check_producer(plog, batches)
        if verdict.outcome is Outcome.REJECT:
            res.error_code = verdict.error_code
            res.error_message = verdict.message
            return res, None
        if verdict.duplicate is not None:  # a retry: answer with the original offsets
            res.base_offset = verdict.duplicate.base_offset
            res.log_start_offset = plog.log_start_offset
            return res, asyncio.ensure_future(_durable(broker, plog, verdict.duplicate.last_offset))
    records = p.records
    if state is not None:  # the topic's compression.type and message.timestamp.type
        f = format_batches(broker.configs, state.record.configs, records, batches, limit,
                           broker.config.recompress_max_bytes)  # fmt: skip
        if isinstance(f, Refused):
            res.error_code, res.error_message = f.error_code, f.message
            return res, None
        records, batches, res.log_append_time = f.records, f.batches, f.log_append_time
    res.base_offset, fut = broker.store.append(plog, records, batches)
    broker.metrics.produced(plog.topic, plog.partition, len(records))
    res.log_start_offset = plog.log_start_offset
    return res, fut


def _check_producer(plog: PartitionLog, batches: list[tuple[int, BatchHeader]]) -> Verdict:
    """Idempotence and transaction checks (Kafka's rules, see txn/producer_state.py). A
    request carries one batch per partition in practice; later batches of the same producer
    in one request follow the first one's sequence."""
    first = batches[0][1]
    for _, h in batches:
        if h.is_control:
            return Verdict(
                Outcome.REJECT,
                ErrorCode.invalid_record,
                "control batches are written by the transaction coordinator, not by clients",
            )
        if h.producer_id != first.producer_id or h.producer_epoch != first.producer_epoch:
            return Verdict(Outcome.REJECT, ErrorCode.invalid_record, "batches of several producers")
    return plog.producers.check(first)


async def _durable(broker: Broker, plog: PartitionLog, last_offset: int) -> None:
    """Wait until a duplicate's original batch is durable (it may still be in the WAL)."""
    loop = asyncio.get_running_loop()
    while plog.high_watermark <= last_offset:
        if plog.deleted or plog.leader_id != broker.node_id:
            raise RuntimeError("partition left this broker before the batch was durable")
        fut: asyncio.Future[None] = loop.create_future()
        plog.waiters.add(fut)
        try:
            await asyncio.wait_for(fut, 1.0)
        except TimeoutError:
            pass
        finally:
            plog.waiters.discard(fut)


async def _respond_when_durable(
    broker: Broker,
    version: int,
    topics: list[tuple[str, list[ProducePartitionResult]]],
    pending: list[tuple[ProducePartitionResult, asyncio.Future[Any]]],
    throttle_ms: int = 0,
) -> Buffers:
    for res, fut in pending:
        try:
            await fut
        except Exception as exc:
            log.error("partition %d: batch not durable: %s", res.index, exc)
            res.error_code = ErrorCode.kafka_storage_error
            res.error_message = "write-ahead log failed"
            res.base_offset = -1
            continue
        if not broker.may_acknowledge():  # lease lost meanwhile: another broker may lead now
            res.error_code = ErrorCode.not_leader_or_follower
            res.base_offset = -1
    return [build_produce_response(version, topics, throttle_ms)]
