"""AlterPartitionReassignments / ListPartitionReassignments: move a partition's leadership.

``replicas = [target broker]``. Any broker accepts the request; the partition's current
leader does the move (it must stop accepting and commit first), so a broker that does not
lead the partition forwards that partition's request to the leader. Moves finish before the
answer, so ListPartitionReassignments has nothing in progress to list.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from kio.index import load_request_schema
from kio.schema.errors import ErrorCode

from broker_service.api.base import Buffers, decode, respond
from broker_service.cluster.rpc import FORWARDED_BY, RpcError
from broker_service.metadata.errors import ConcurrentUpdate, UnknownTopic
from broker_service.protocol.codec import shape
from broker_service.protocol.frames import RequestHeader

if TYPE_CHECKING:
    from broker_service.api.services import BrokerServices


def alter(broker: BrokerServices, header: RequestHeader, frame: memoryview) -> Awaitable[Buffers]:
    return _alter(broker, header, decode(header, frame))


async def _alter(broker: BrokerServices, header: RequestHeader, req: Any) -> Buffers:
    responses = []
    for t in req.topics:
        parts = []
        for p in t.partitions:
            code, message = await move_partition(
                broker,
                t.name,
                p.partition_index,
                p.replicas,
                forwarded=(header.client_id or "").startswith(FORWARDED_BY),
            )
            parts.append(
                {"partition_index": p.partition_index, "error_code": code, "error_message": message}
            )
        responses.append({"name": t.name, "partitions": parts})
    return respond(
        header, {"throttle_time": 0, "error_code": 0, "error_message": None, "responses": responses}
    )


async def move_partition(
    broker: BrokerServices, topic: str, partition: int, replicas: Any, forwarded: bool
) -> tuple[ErrorCode, str | None]:
    from broker_service.kafka.leadership import NotLeader

    if replicas is None:
        return ErrorCode.no_reassignment_in_progress, "moves complete synchronously"
    if len(replicas) != 1:
        return ErrorCode.invalid_replica_assignment, (
            "give exactly one broker: data lives in shared storage, not on replicas"
        )
    plog = broker.partition(topic, partition)
    if plog is None:  # maybe another broker's new topic: look again
        await broker.sync_metadata()
        plog = broker.partition(topic, partition)
    if plog is None:
        return ErrorCode.unknown_topic_or_partition, None
    target = int(replicas[0])
    if not await broker.is_live(target):
        return ErrorCode.invalid_replica_assignment, f"broker {target} is not live"
    try:
        if plog.leader_id != broker.node_id:
            await broker.sync_metadata()  # our view may be a move behind
        if plog.leader_id == broker.node_id:
            await broker.hand_over(topic, partition, target)
            return ErrorCode.none, None
        if forwarded:  # never bounce a request between brokers
            return ErrorCode.not_leader_or_follower, f"led by broker {plog.leader_id}"
        code, message = await _forward(broker, plog.leader_id, topic, partition, target)
        if code == ErrorCode.none:
            await broker.sync_metadata()  # the target is often us: serve it at once
        return code, message
    except (NotLeader, ConcurrentUpdate) as exc:
        return ErrorCode.not_leader_or_follower, str(exc)
    except UnknownTopic:
        return ErrorCode.unknown_topic_or_partition, None
    except (TimeoutError, RuntimeError, OSError, ValueError) as exc:
        return ErrorCode.request_timed_out, str(exc)


async def _forward(
    broker: BrokerServices, leader: int, topic: str, partition: int, target: int
) -> tuple[ErrorCode, str | None]:
    """Ask the leader to move it (marked forwarded: it never forwards again)."""
    body = {
        "timeout": 15000,
        "topics": [
            {"name": topic, "partitions": [{"partition_index": partition, "replicas": [target]}]}
        ],
    }
    try:
        resp = await broker.rpc.call(leader, shape(load_request_schema(45, 0), body), 15.0)
    except RpcError as exc:
        return ErrorCode.not_leader_or_follower, str(exc)
    p = resp.responses[0].partitions[0]
    return ErrorCode(int(p.error_code)), p.error_message


def list_reassignments(broker: BrokerServices, header: RequestHeader, frame: memoryview) -> Buffers:
    decode(header, frame)
    return respond(
        header, {"throttle_time": 0, "error_code": 0, "error_message": None, "topics": []}
    )


def elect_leaders(
    broker: BrokerServices, header: RequestHeader, frame: memoryview
) -> Awaitable[Buffers]:
    return _elect(broker, header, decode(header, frame))


async def _elect(broker: BrokerServices, header: RequestHeader, req: Any) -> Buffers:
    """Each partition has one replica, its leader, so a preferred election is never needed
    while the leader lives (ELECTION_NOT_NEEDED). An unclean election (type 1), or any
    election for a partition whose leader is gone, runs the failure recovery for it now
    instead of after the lease check: the partition moves to a live broker, no data copied."""
    await broker.refresh_live()
    if req.topic_partitions is None:
        wanted = [(t, p.partition) for t, s in broker.topics.items() for p in s.logs]
    else:
        wanted = [(t.topic, p) for t in req.topic_partitions for p in t.partitions]
    results: dict[str, list[dict[str, Any]]] = {}
    live = [b.broker_id for b in broker.live_brokers()]
    for topic, partition in wanted:
        plog = broker.partition(topic, partition)
        code, message = ErrorCode.none, None
        if plog is None:
            code = ErrorCode.unknown_topic_or_partition
        elif plog.leader_id in live:
            code = ErrorCode.election_not_needed
        elif getattr(req, "election_type", 0) != 1 and header.api_version >= 1:
            code = ErrorCode.preferred_leader_not_available
            message = f"leader {plog.leader_id} is not live; ask for an unclean election"
        else:
            try:
                await broker.ports.topics.move_partition(
                    topic,
                    partition,
                    plog.leader_id,
                    plog.leader_epoch,
                    min(
                        live,
                        key=lambda b: (
                            sum(p.leader_id == b for s in broker.topics.values() for p in s.logs),
                            b,
                        ),
                    ),
                )
            except (ConcurrentUpdate, UnknownTopic) as exc:
                code, message = ErrorCode.eligible_leaders_not_available, str(exc)
        results.setdefault(topic, []).append(
            {"partition_id": partition, "error_code": code, "error_message": message}
        )
    if any(r["error_code"] == 0 for rs in results.values() for r in rs):
        await broker.sync_metadata()
    return respond(
        header,
        {
            "throttle_time": 0,
            "error_code": 0,
            "replica_election_results": [
                {"topic": t, "partition_result": rs} for t, rs in results.items()
            ],
        },
    )
