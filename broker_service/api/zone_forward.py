"""ZoneForwardProduce, the leader's side: append batches another broker made durable in an
object (kafka/zone_forward.py has the whole picture).

The spans are read with one ranged GET (the forwarding broker writes each leader's spans
side by side), then each partition's batches go through exactly what a client's produce goes
through here (``produce.append_partition``: validation, the guarded append with leadership,
producer rules, transactions, fencing and offsets, this broker's WAL). The answer waits for
durability. Effects are under way until every batch is appended, so the next request of the
forwarding broker's connection (a later group) is appended after this one.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from kio.schema.errors import ErrorCode

from broker_service.api.access import allowed_cluster
from broker_service.api.base import Buffers, Later, Outcome, Result
from broker_service.api.produce import append_partition
from broker_service.api.produce_answer import ProduceAnswer
from broker_service.protocol.frames import RequestHeader
from broker_service.protocol.produce import ProducePartition, ProducePartitionResult
from broker_service.protocol.zone import (
    ForwardRequest,
    ForwardResult,
    encode_forward_response,
    parse_forward_request,
)
from broker_service.security.acl import CLUSTER_ACTION

if TYPE_CHECKING:
    from broker_service.api.services import BrokerServices


def handle(broker: BrokerServices, header: RequestHeader, frame: memoryview) -> Result:
    req = parse_forward_request(frame, header.body_offset)
    if not allowed_cluster(broker, header, CLUSTER_ACTION):
        denied = ForwardResult(error_code=ErrorCode.cluster_authorization_failed)
        return [encode_forward_response([denied for _ in req.items])]
    return _append_forwarded(broker, req)


async def _append_forwarded(broker: BrokerServices, req: ForwardRequest) -> Outcome:
    deadline = time.monotonic() + max(req.timeout_ms, 1) / 1000
    if not req.items:
        return [encode_forward_response([])]
    store = broker.store
    if store is None:
        return _all(req, ErrorCode.not_leader_or_follower, "starting")
    if any(it.topic not in broker.topics for it in req.items):
        await broker.learn_unknown_topics()
    lo = min(it.position for it in req.items)
    hi = max(it.position + it.size for it in req.items)
    try:
        blob = await store.objects.get(req.object_key, lo, hi)
    except Exception as exc:  # missing (swept) or unreadable: the client retries
        return _all(req, ErrorCode.kafka_storage_error, f"forwarded batches unreadable: {exc}")
    if len(blob) != hi - lo:
        return _all(req, ErrorCode.kafka_storage_error, "forwarded batches truncated")
    view = memoryview(bytearray(blob))  # writable: offsets are assigned in place
    results: list[ProducePartitionResult] = []
    answer = ProduceAnswer(broker, 0, [("", results)], 0)

    def response() -> Buffers:
        return [
            encode_forward_response(
                [
                    ForwardResult(r.error_code, r.base_offset, r.log_append_time,
                                  r.log_start_offset, r.error_message)
                    for r in results
                ]
            )
        ]  # fmt: skip

    answer.build = response
    for it in req.items:
        records = view[it.position - lo : it.position - lo + it.size]
        results.append(
            append_partition(broker, broker.topics.get(it.topic),
                             ProducePartition(it.partition, records), deadline, answer)
        )  # fmt: skip
    answer.arm()  # answered once every partition reported (at once if none waits)
    return Later(answer.future)


def _all(req: ForwardRequest, code: int, message: str) -> Buffers:
    answer = [ForwardResult(code, error_message=message) for _ in req.items]
    return [encode_forward_response(answer)]
