"""Produce: validate batch headers and CRCs, assign offsets in place, wait for the WAL.

acks=0 gets no response; acks=1 and acks=all are both answered once the batch is durable in
shared storage (there are no follower replicas: durability is the storage's).

A client of this broker's zone may send batches for a partition led in another zone (it was
told this broker leads it, api/zones.py): they are validated here and forwarded through the
object store to the leader (kafka/zone_forward.py), whose answer is the client's.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from broker_service.api.access import TOPIC_AUTHORIZATION_FAILED, allowed_topic, refuse_produce
from broker_service.api.base import Buffers, Later, Result
from broker_service.api.zones import serves_zone
from broker_service.kafka.groups.offsets_topic import INTERNAL_TOPICS
from broker_service.kafka.log_store import AppendRefused
from broker_service.kafka.partition import NotDurable
from broker_service.kafka.topic_format import Refused, format_batches
from broker_service.protocol.frames import RequestHeader
from broker_service.protocol.produce import (
    ProducePartition,
    ProducePartitionResult,
    build_produce_response,
    parse_produce,
)
from broker_service.protocol.record_batch import (
    InvalidRecordBatch,
    validate_batches,
)
from broker_service.protocol.zone import ForwardResult
from broker_service.security.acl import WRITE
from broker_service.stream.wal import WalTimeout

if TYPE_CHECKING:
    from broker_service.api.services import BrokerServices
    from broker_service.kafka.topics import TopicState

log = logging.getLogger(__name__)


def handle(broker: BrokerServices, header: RequestHeader, frame: memoryview) -> Result:
    version = header.api_version
    req = parse_produce(frame, header.body_offset, version)
    refused = refuse_produce(broker, header, req.acks, req.transactional_id)
    if refused is not None:
        topics = [
            (t.name, [ProducePartitionResult(p.index, refused) for p in t.partitions])
            for t in req.topics
        ]
        return [build_produce_response(version, topics, header.throttle_ms)]
    if any(t.name not in broker.topics for t in req.topics):
        return _produce_after_learning(broker, header, req)  # effects wait for the re-read
    return _produce(broker, header, req)


async def _produce_after_learning(broker: BrokerServices, header: RequestHeader, req: Any) -> Any:
    """A topic unknown here may have been created through another broker a moment ago."""
    await broker.learn_unknown_topics()
    return _produce(broker, header, req)


def _produce(broker: BrokerServices, header: RequestHeader, req: Any) -> Buffers | Later | None:
    """Append every partition's batches now (the effects, in request order); the answer
    waits for durability. The request's timeout bounds that wait: a batch not durable in
    time is never committed afterwards (the WAL refuses it) and is answered
    REQUEST_TIMED_OUT, so a producer's retry cannot duplicate it."""
    version = header.api_version
    deadline = time.monotonic() + max(req.timeout_ms, 0) / 1000 if req.acks != 0 else math.inf
    topics: list[tuple[str, list[ProducePartitionResult]]] = []
    pending: list[tuple[ProducePartitionResult, asyncio.Future[Any]]] = []
    zoned = serves_zone(broker, header)
    for t in req.topics:
        state = broker.topics.get(t.name)
        if not allowed_topic(broker, header, WRITE, t.name):
            denied = TOPIC_AUTHORIZATION_FAILED
            topics.append((t.name, [ProducePartitionResult(p.index, denied) for p in t.partitions]))
            continue
        results = []
        for p in t.partitions:
            res, fut = append_partition(broker, state, p, deadline, zoned)
            results.append(res)
            if fut is not None:
                pending.append((res, fut))
        topics.append((t.name, results))
    if req.acks == 0:
        for _, fut in pending:  # nobody waits: the partition completes them all the same
            fut.add_done_callback(_ignore)
        return None
    if not pending:
        return [build_produce_response(version, topics, header.throttle_ms)]
    return Later(_respond_when_durable(broker, version, topics, pending, header.throttle_ms))


def _ignore(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


def append_partition(
    broker: BrokerServices,
    state: TopicState | None,
    p: ProducePartition,
    deadline: float,
    zoned: bool = False,
) -> tuple[ProducePartitionResult, asyncio.Future[Any] | None]:
    """Validate and append one partition's batches (or, ``zoned``, forward them to a leader
    in another zone). The future resolves once durable (NotDurable if not), or, forwarded,
    to the leader's ForwardResult."""
    res = ProducePartitionResult(p.index)
    plog = state.logs[p.index] if state is not None and 0 <= p.index < len(state.logs) else None
    if plog is None or broker.store is None:
        broker.request_refresh()  # perhaps created through another broker a moment ago
        res.error_code = ErrorCode.unknown_topic_or_partition
        return res, None
    forward = (
        plog.leader_id != broker.node_id
        and zoned
        and plog.leader_id >= 0
        and broker.forwarder is not None
    )
    if plog.leader_id != broker.node_id and not forward:
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
    except InvalidRecordBatch as exc:  # CORRUPT_MESSAGE, INVALID_RECORD or an old format
        res.error_code, res.error_message = exc.code, str(exc)
        return res, None
    limit = state.config(broker.configs, "max.message.bytes") if state else 0
    if any(h.size > limit for _, h in batches):
        res.error_code = ErrorCode.message_too_large
        res.error_message = f"record batch larger than max.message.bytes={limit}"
        return res, None
    if any(h.is_control for _, h in batches):
        res.error_code = ErrorCode.invalid_record
        res.error_message = "control batches are written by the transaction coordinator"
        return res, None
    if forward:  # the leader formats them (compression.type, message.timestamp.type)
        assert broker.forwarder is not None
        return res, broker.forwarder.forward(
            plog.stream_id, plog.topic, plog.partition, plog.leader_id, p.records, batches,
            deadline,
        )  # fmt: skip
    records = p.records
    if state is not None:  # the topic's compression.type and message.timestamp.type
        f = format_batches(broker.configs, state.record.configs, records, batches, limit,
                           broker.config.recompress_max_bytes)  # fmt: skip
        if isinstance(f, Refused):
            res.error_code, res.error_message = f.error_code, f.message
            return res, None
        records, batches, res.log_append_time = f.records, f.batches, f.log_append_time
    try:
        res.base_offset, fut = broker.store.append_guarded(plog, records, batches, deadline)
    except AppendRefused as refused:
        res.error_code, res.error_message = refused.code, refused.message
        return res, None
    broker.metrics.produced(plog.topic, plog.partition, len(records))
    res.log_start_offset = plog.log_start_offset
    return res, fut


async def _respond_when_durable(
    broker: BrokerServices,
    version: int,
    topics: list[tuple[str, list[ProducePartitionResult]]],
    pending: list[tuple[ProducePartitionResult, asyncio.Future[Any]]],
    throttle_ms: int = 0,
) -> Buffers:
    await settle(broker, pending)
    return [build_produce_response(version, topics, throttle_ms)]


async def settle(
    broker: BrokerServices, pending: list[tuple[ProducePartitionResult, asyncio.Future[Any]]]
) -> None:
    """Fill in each result once its batches are durable (or refused, or answered by the
    leader they were forwarded to)."""
    for res, fut in pending:
        try:
            outcome = await fut
        except NotDurable as exc:
            res.base_offset = -1
            if isinstance(exc.cause, WalTimeout):
                res.error_code = ErrorCode.request_timed_out
            elif exc.cause is None:  # leadership moved before it was durable
                res.error_code = ErrorCode.not_leader_or_follower
            else:
                log.warning("partition %d: batch not durable: %s", res.index, exc)
                res.error_code = ErrorCode.kafka_storage_error
                res.error_message = str(exc)
            continue
        if isinstance(outcome, ForwardResult):  # the leader in another zone answered
            res.error_code, res.error_message = outcome.error_code, outcome.error_message
            res.base_offset, res.log_start_offset = outcome.base_offset, outcome.log_start_offset
            res.log_append_time = outcome.log_append_time
            continue
        if not broker.may_acknowledge() and not _in_shared_log(broker):
            # a file WAL's batch is durable on this broker's disk only: with the lease in
            # doubt another broker may have taken the partition over without it
            res.error_code = ErrorCode.not_leader_or_follower
            res.base_offset = -1


def _in_shared_log(broker: BrokerServices) -> bool:
    """Whether durable means committed in the shared log (the object WAL): the commit was
    conditional on this broker's epoch, so no takeover came first, and any leader reads it.
    Answering such a batch with an error would make its producer send it again, under a new
    epoch after a timeout: a duplicate."""
    return broker.store is not None and not broker.store.wal.needs_upload
