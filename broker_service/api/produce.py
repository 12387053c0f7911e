"""Produce: validate batch headers and CRCs, assign offsets in place, wait for the WAL.

acks=0 gets no response; acks=1 and acks=all are both answered once the batch is durable in
shared storage (there are no follower replicas: durability is the storage's).
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from broker_service.api.access import TOPIC_AUTHORIZATION_FAILED, allowed_topic, refuse_produce
from broker_service.api.base import Buffers, Later, Result
from broker_service.api.produce_answer import ProduceAnswer, forwarded, ignore_durability
from broker_service.api.zones import serves_zone
from broker_service.kafka.groups.offsets_topic import INTERNAL_TOPICS
from broker_service.kafka.log_store import AppendRefused
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
    InvalidRecordBatch,
    validate_batches,
)
from broker_service.protocol.record_checks import batch_refusal, record_errors
from broker_service.security.acl import WRITE

if TYPE_CHECKING:
    from broker_service.api.services import BrokerServices
    from broker_service.kafka.partition import PartitionLog
    from broker_service.kafka.topics import TopicState

log = logging.getLogger(__name__)


def handle(broker: BrokerServices, header: RequestHeader, frame: memoryview) -> Result:
    version = header.api_version
    t0 = time.perf_counter()
    req = parse_produce(frame, header.body_offset, version)
    broker.metrics.stages.parse.observe((time.perf_counter() - t0) * 1000)
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
    # acks=0: nobody waits; the partitions complete the appends all the same
    answer = ProduceAnswer(broker, version, topics, header.throttle_ms) if req.acks else None
    zoned = serves_zone(broker, header)
    for t in req.topics:
        state = broker.topics.get(t.name)
        if not allowed_topic(broker, header, WRITE, t.name):
            denied = TOPIC_AUTHORIZATION_FAILED
            topics.append((t.name, [ProducePartitionResult(p.index, denied) for p in t.partitions]))
            continue
        topics.append((t.name, [append_partition(broker, state, p, deadline, answer, zoned)
                                for p in t.partitions]))  # fmt: skip
    if answer is None:
        return None
    if not answer.waiting:
        return [build_produce_response(version, topics, header.throttle_ms)]
    answer.arm()
    return Later(answer.future)


def _refuse_records(
    broker: BrokerServices,
    state: TopicState,
    plog: PartitionLog,
    records: memoryview,
    batch: BatchHeader,
    res: ProducePartitionResult,
) -> bool:
    """Kafka's record-level checks (a compacted topic's keys, the timestamp window) of the
    partition's one batch: any refused record fails it, each refused record named (KIP-467)."""
    rules = broker.configs.record_rules(state.record.configs)
    if not rules.applies(batch):
        return False
    tp = f"{plog.topic}-{plog.partition}"
    try:
        errors = record_errors(batch, records, rules, int(time.time() * 1000), tp)
    except Exception as exc:  # a codec's own error too: the records cannot be read
        res.error_code = ErrorCode.corrupt_message
        res.error_message = f"records cannot be decoded: {exc}"
        return True
    if not errors:
        return False
    res.error_code, res.error_message = batch_refusal(errors)
    res.record_errors = [(e.index, e.message) for e in errors]
    res.log_start_offset = plog.log_start_offset
    return True


def append_partition(
    broker: BrokerServices,
    state: TopicState | None,
    p: ProducePartition,
    deadline: float,
    answer: ProduceAnswer | None,
    zoned: bool = False,
) -> ProducePartitionResult:
    """Validate and append one partition's batches (or, ``zoned``, forward them to a leader
    in another zone); ``answer`` hears when they are durable (or refused, or answered by the
    leader they were forwarded to)."""
    res = ProducePartitionResult(p.index)
    plog = state.logs[p.index] if state is not None and 0 <= p.index < len(state.logs) else None
    if plog is None or broker.store is None:
        broker.request_refresh()  # perhaps created through another broker a moment ago
        res.error_code = ErrorCode.unknown_topic_or_partition
        return res
    forward = (
        plog.leader_id != broker.node_id
        and zoned
        and plog.leader_id >= 0
        and broker.forwarder is not None
    )
    if plog.leader_id != broker.node_id and not forward:
        broker.request_refresh()
        res.error_code = ErrorCode.not_leader_or_follower
        return res
    if plog.topic in INTERNAL_TOPICS:  # written by the broker only (Kafka's ReplicaManager)
        res.error_code = ErrorCode.invalid_topic_exception
        res.error_message = f"Cannot append to internal topic {plog.topic}"
        return res
    if p.records is None or len(p.records) == 0:
        res.error_code = ErrorCode.corrupt_message
        res.error_message = "no records"
        return res
    stages = broker.metrics.stages
    t0 = time.perf_counter()
    try:
        batches = validate_batches(p.records)
    except InvalidRecordBatch as exc:  # CORRUPT_MESSAGE, INVALID_RECORD or an old format
        res.error_code, res.error_message = exc.code, str(exc)
        return res
    limit = state.config(broker.configs, "max.message.bytes") if state else 0
    if any(h.size > limit for _, h in batches):
        res.error_code = ErrorCode.message_too_large
        res.error_message = f"record batch larger than max.message.bytes={limit}"
        return res
    if any(h.is_control for _, h in batches):
        res.error_code = ErrorCode.invalid_record
        res.error_message = "control batches are written by the transaction coordinator"
        return res
    if len(batches) > 1:  # Kafka's LogValidator (after the size checks) takes one v2 batch
        res.error_code = ErrorCode.invalid_record
        return res
    [(_, batch)] = batches  # validate_batches refuses an empty payload
    if state is not None and _refuse_records(broker, state, plog, p.records, batch, res):
        return res
    if forward:  # the leader formats them (compression.type, message.timestamp.type)
        assert broker.forwarder is not None
        fut = broker.forwarder.forward(
            plog.stream_id, plog.topic, plog.partition, plog.leader_id, p.records, batches,
            deadline,
        )  # fmt: skip
        fut.add_done_callback(
            forwarded(res, answer.observer(res, remote=True) if answer else ignore_durability)
        )
        return res
    records = p.records
    if state is not None:  # the topic's compression.type and message.timestamp.type
        f = format_batches(broker.configs, state.record.configs, records, batches, limit,
                           broker.config.recompress_max_bytes)  # fmt: skip
        if isinstance(f, Refused):
            res.error_code, res.error_message = f.error_code, f.message
            return res
        records, batches, res.log_append_time = f.records, f.batches, f.log_append_time
    t1 = time.perf_counter()
    stages.validate.observe((t1 - t0) * 1000)
    on_durable = answer.observer(res) if answer is not None else ignore_durability
    try:
        base = broker.store.append_observed(plog, records, batches, deadline, on_durable)
    except AppendRefused as refused:
        if answer is not None:
            answer.forget()
        res.error_code, res.error_message = refused.code, refused.message
        return res
    if res.error_code == 0:  # (a retry already decided reports at once)
        res.base_offset = base
    stages.append.observe((time.perf_counter() - t1) * 1000)
    broker.metrics.produced(plog.topic, plog.partition, len(records))
    res.log_start_offset = plog.log_start_offset
    return res
