"""ReplicaState, the leader's side: what of a partition is committed, for brokers serving it
from the object store in other zones (kafka/replicas.py), as pointers only.

Long-polled: with ``max_wait_ms`` the answer waits until some asked partition has committed
beyond what the asking broker knows (or is no longer led here), or the wait ends. Nothing
changes here, so the connection starts the next request at once (``Later``); the asking broker
sends these on a connection of their own, so they hold no other answer back.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from typing import TYPE_CHECKING

from kio.schema.errors import ErrorCode

from broker_service.api.access import allowed_cluster
from broker_service.api.base import Buffers, Later, Result
from broker_service.api.fetch import wait_for_data
from broker_service.protocol.frames import RequestHeader
from broker_service.protocol.zone import (
    MAX_RANGES,
    PartitionState,
    RangeInfo,
    ReplicaAsk,
    ReplicaStateRequest,
    encode_replica_response,
    parse_replica_request,
)
from broker_service.security.acl import CLUSTER_ACTION

if TYPE_CHECKING:
    from broker_service.api.services import BrokerServices
    from broker_service.kafka.partition import PartitionLog

MAX_ABORTED = 10_000  # aborted transactions per partition per answer


def handle(broker: BrokerServices, header: RequestHeader, frame: memoryview) -> Result:
    req = parse_replica_request(frame, header.body_offset)
    if not allowed_cluster(broker, header, CLUSTER_ACTION):
        denied = PartitionState(error_code=ErrorCode.cluster_authorization_failed)
        return [encode_replica_response([denied for _ in req.partitions])]
    return Later(_answer(broker, req))


async def _answer(broker: BrokerServices, req: ReplicaStateRequest) -> Buffers:
    if any(a.topic not in broker.topics for a in req.partitions):
        await broker.learn_unknown_topics()
    deadline = time.monotonic() + max(req.max_wait_ms, 0) / 1000
    while True:
        states: list[PartitionState] = []
        logs: list[PartitionLog] = []
        news = False
        for ask in req.partitions:
            state, plog = _state(broker, ask)
            states.append(state)
            if plog is not None:
                logs.append(plog)
            news |= state.error_code != 0 or state.committed_end > ask.from_offset
        remaining = deadline - time.monotonic()
        if news or remaining <= 0 or not logs:
            return [encode_replica_response(states)]
        await wait_for_data(logs, remaining)


def _state(broker: BrokerServices, ask: ReplicaAsk) -> tuple[PartitionState, PartitionLog | None]:
    plog = broker.partition(ask.topic, ask.partition)
    if plog is None or plog.deleted:
        return PartitionState(error_code=ErrorCode.unknown_topic_or_partition), None
    if plog.leader_id != broker.node_id:
        broker.request_refresh()
        return PartitionState(ErrorCode.not_leader_or_follower, plog.leader_epoch), None
    first = max(bisect_right(plog.range_starts, ask.from_offset) - 1, 0)
    ranges = [
        RangeInfo(r.start_offset, r.end_offset, r.object_key, r.position, r.size, r.max_timestamp)
        for r in plog.ranges[first : first + MAX_RANGES]
        if r.end_offset > ask.from_offset
    ]
    aborted = [
        (a.producer_id, a.first_offset, a.last_offset)
        for a in plog.producers.aborted
        if a.last_offset >= ask.aborted_from
    ][:MAX_ABORTED]
    state = PartitionState(
        0,
        plog.leader_epoch,
        plog.log_start_offset,
        plog.high_watermark,
        plog.last_stable_offset,
        plog.committed_end,
        ranges,
        aborted,
    )
    return state, plog
