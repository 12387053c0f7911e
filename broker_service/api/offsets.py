"""OffsetCommit, OffsetFetch (single and multi-group), OffsetDelete."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from broker_service.api.access import (
    GROUP_AUTHORIZATION_FAILED,
    TOPIC_AUTHORIZATION_FAILED,
    allowed_group,
    allowed_topic,
    require_group,
)
from broker_service.api.base import Buffers, Result, decode, respond
from broker_service.kafka.groups import errors as E
from broker_service.kafka.groups.consumer import ConsumerGroup
from broker_service.metadata.records import CommittedOffset
from broker_service.protocol.frames import RequestHeader
from broker_service.security.acl import DELETE, DESCRIBE, READ

if TYPE_CHECKING:
    from broker_service.api.services import BrokerServices

MAX_METADATA = 4096  # offset.metadata.max.bytes


def offset_commit(
    broker: BrokerServices, header: RequestHeader, frame: memoryview
) -> Awaitable[Buffers]:
    return _commit(broker, header, decode(header, frame))


def _validate_commit(broker: BrokerServices, req: Any) -> None:
    generation = req.generation_id_or_member_epoch
    member_id = req.member_id or ""
    instance_id = getattr(req, "group_instance_id", None)
    group = broker.groups.groups.get(req.group_id)
    if isinstance(group, ConsumerGroup):
        group.validate_commit(member_id, generation)
    elif group is not None:
        group.validate_commit(member_id, generation, instance_id)
    elif generation >= 0:  # no live group: only a manual (simple) commit is valid
        raise E.GroupError(E.ILLEGAL_GENERATION if not member_id else E.UNKNOWN_MEMBER_ID)


async def _commit(broker: BrokerServices, header: RequestHeader, req: Any) -> Buffers:
    group_error = E.NONE
    try:
        if not req.group_id:
            raise E.GroupError(E.INVALID_GROUP_ID)
        require_group(broker, header, READ, req.group_id)
        E.require_coordinator(broker.coordinates_group(req.group_id))
        _validate_commit(broker, req)
    except E.GroupError as exc:
        group_error = exc.code
    now = int(time.time() * 1000)
    accepted: list[CommittedOffset] = []
    topics = []
    for t in req.topics:
        state = broker.topics.get(t.name)
        may_read = group_error != E.NONE or allowed_topic(broker, header, READ, t.name)
        parts = []
        for p in t.partitions:
            code = group_error if may_read else TOPIC_AUTHORIZATION_FAILED
            if code == E.NONE:
                meta = p.committed_metadata
                if state is None or not 0 <= p.partition_index < len(state.logs):
                    code = E.UNKNOWN_TOPIC_OR_PARTITION
                elif meta is not None and len(meta.encode()) > MAX_METADATA:
                    code = E.OFFSET_METADATA_TOO_LARGE
                else:
                    accepted.append(
                        CommittedOffset(
                            t.name,
                            p.partition_index,
                            p.committed_offset,
                            getattr(p, "committed_leader_epoch", -1),
                            meta,
                            now,
                        )
                    )
            parts.append({"partition_index": p.partition_index, "error_code": code})
        topics.append({"name": t.name, "partitions": parts})
    await broker.groups.commit(req.group_id, accepted)
    return respond(header, {"throttle_time": 0, "topics": topics})


def offset_fetch(broker: BrokerServices, header: RequestHeader, frame: memoryview) -> Result:
    req = decode(header, frame)
    ids = [g.group_id for g in req.groups] if header.api_version >= 8 else [req.group_id]
    if any(broker.txn.has_pending_offsets(g) for g in ids) or not all(
        broker.groups.cached(g) for g in ids if broker.coordinates_group(g)
    ):
        return _offset_fetch_after_loading(broker, header, req, ids)
    return _offset_fetch(broker, header, req, {})


async def _offset_fetch_after_loading(
    broker: BrokerServices, header: RequestHeader, req: Any, ids: list[str]
) -> Buffers:
    """Some groups' offsets are not cached here yet (read them off the event loop), or some
    are inside transactions: those that ended are re-read; those still open are
    UNSTABLE_OFFSET_COMMIT for a consumer asking for stable offsets."""
    unstable = {g: await broker.txn.unstable_offsets(g) for g in ids}
    await broker.groups.load([g for g in ids if broker.coordinates_group(g)])
    if not getattr(req, "require_stable", False):
        unstable = {}
    return _offset_fetch(broker, header, req, unstable)


def _offset_fetch(
    broker: BrokerServices,
    header: RequestHeader,
    req: Any,
    unstable: dict[str, set[tuple[str, int]]],
) -> Buffers:
    if header.api_version >= 8:
        groups = [
            _fetch_group(
                broker,
                header,
                g.group_id,
                g.topics,
                getattr(g, "member_id", None),
                getattr(g, "member_epoch", -1),
                unstable.get(g.group_id, set()),
            )
            for g in req.groups
        ]
        return respond(header, {"throttle_time": 0, "groups": groups})
    g = _fetch_group(
        broker, header, req.group_id, req.topics, None, -1, unstable.get(req.group_id, set())
    )
    if header.api_version < 2 and g["error_code"] != E.NONE:
        g["topics"] = _error_per_partition(req.topics or (), g["error_code"])
    return respond(
        header, {"throttle_time": 0, "topics": g["topics"], "error_code": g["error_code"]}
    )


def _error_per_partition(topics: Any, code: int) -> list[dict[str, Any]]:
    """OffsetFetch v0-v1 has no group-level error field: Kafka puts the group's error on every
    requested partition (OffsetFetchRequest.getErrorResponse), or a client would read "no
    offsets" where it should retry (NOT_COORDINATOR) or stop (GROUP_AUTHORIZATION_FAILED)."""
    return [
        {
            "name": t.name,
            "partitions": [
                {
                    "partition_index": p,
                    "committed_offset": -1,
                    "committed_leader_epoch": -1,
                    "metadata": "",
                    "error_code": code,
                }  # fmt: skip
                for p in (getattr(t, "partition_indexes", ()) or ())
            ],
        }
        for t in topics
    ]


def _fetch_group(
    broker: BrokerServices,
    header: RequestHeader,
    group_id: str,
    topics: Any,
    member_id: str | None,
    member_epoch: int,
    unstable: set[tuple[str, int]],
) -> dict[str, Any]:
    if not allowed_group(broker, header, DESCRIBE, group_id):
        return {"group_id": group_id, "topics": [], "error_code": GROUP_AUTHORIZATION_FAILED}
    if not broker.coordinates_group(group_id):
        return {"group_id": group_id, "topics": [], "error_code": E.NOT_COORDINATOR}
    group = broker.groups.groups.get(group_id)
    if member_id is not None and isinstance(group, ConsumerGroup):
        m = group.members.get(member_id)
        code = (
            E.UNKNOWN_MEMBER_ID
            if m is None
            else E.STALE_MEMBER_EPOCH
            if m.member_epoch != member_epoch
            else E.NONE
        )
        if code != E.NONE:
            return {"group_id": group_id, "topics": [], "error_code": code}
    committed = broker.groups.committed(group_id)
    if topics is None:  # all committed offsets of the group
        by_topic: dict[str, list[int]] = {}
        for topic, partition in sorted(committed):
            if not allowed_topic(broker, header, DESCRIBE, topic):
                continue  # topics the client may not describe are left out
            by_topic.setdefault(topic, []).append(partition)
        wanted = list(by_topic.items())
    else:
        wanted = [(t.name, list(getattr(t, "partition_indexes", ()) or ())) for t in topics]
    out = []
    for name, partitions in wanted:
        parts = []
        may_describe = allowed_topic(broker, header, DESCRIBE, name)
        for p in partitions:
            c = committed.get((name, p)) if may_describe else None
            parts.append(
                {
                    "partition_index": p,
                    "committed_offset": c.offset if c else -1,
                    "committed_leader_epoch": c.leader_epoch if c else -1,
                    "metadata": (c.metadata or "") if c else "",
                    "error_code": TOPIC_AUTHORIZATION_FAILED
                    if not may_describe
                    else ErrorCode.unstable_offset_commit
                    if (name, p) in unstable
                    else 0,
                }
            )
        out.append({"name": name, "partitions": parts})
    return {"group_id": group_id, "topics": out, "error_code": 0}


async def offset_delete(
    broker: BrokerServices, header: RequestHeader, frame: memoryview
) -> Buffers:
    req = decode(header, frame)
    if not allowed_group(broker, header, DELETE, req.group_id):
        return respond(
            header, {"throttle_time": 0, "error_code": GROUP_AUTHORIZATION_FAILED, "topics": []}
        )
    if not broker.coordinates_group(req.group_id):
        return respond(header, {"throttle_time": 0, "error_code": E.NOT_COORDINATOR, "topics": []})
    broker.groups.expire_due([req.group_id])
    group = broker.groups.groups.get(req.group_id)
    if group is None and not broker.groups.exists(req.group_id):
        return respond(
            header, {"throttle_time": 0, "error_code": E.GROUP_ID_NOT_FOUND, "topics": []}
        )
    subscribed = (group.subscribed_topics() or set()) if group is not None else set()
    deleting: list[tuple[str, int]] = []
    topics = []
    for t in req.topics:
        parts = []
        for p in t.partitions:
            code = E.NONE
            if t.name in subscribed:
                code = E.GROUP_SUBSCRIBED_TO_TOPIC
            elif t.name not in broker.topics:
                code = E.UNKNOWN_TOPIC_OR_PARTITION
            else:
                deleting.append((t.name, p.partition_index))
            parts.append({"partition_index": p.partition_index, "error_code": code})
        topics.append({"name": t.name, "partitions": parts})
    await broker.groups.delete_offsets(req.group_id, deleting)
    return respond(header, {"throttle_time": 0, "error_code": 0, "topics": topics})
