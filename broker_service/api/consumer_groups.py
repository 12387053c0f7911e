"""KIP-848: ConsumerGroupHeartbeat and ConsumerGroupDescribe."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from broker_service.api.access import (
    GROUP_AUTHORIZATION_FAILED,
    allowed_group,
    authorized_operations,
    require_group,
)
from broker_service.api.base import NOT_REQUESTED_OPS, Buffers, decode, respond
from broker_service.kafka.groups import errors as E
from broker_service.kafka.groups.consumer import (
    ConsumerGroup,
    ConsumerMember,
    HeartbeatRequest,
    Partitions,
)
from broker_service.protocol.frames import RequestHeader
from broker_service.security.acl import DESCRIBE, GROUP, READ

if TYPE_CHECKING:
    from broker_service.api.services import BrokerServices


def _by_name(broker: BrokerServices, parts: Partitions) -> list[dict[str, Any]]:
    out = []
    for topic, ps in sorted(parts.items()):
        state = broker.topics.get(topic)
        if state is not None and ps:
            out.append({"topic_id": state.topic_id, "topic_name": topic, "partitions": sorted(ps)})
    return out


def _owned(broker: BrokerServices, topic_partitions: Any) -> Partitions | None:
    if topic_partitions is None:
        return None
    owned: Partitions = {}
    for tp in topic_partitions:
        state = broker.topics_by_id.get(tp.topic_id) if tp.topic_id else None
        if state is not None:
            owned[state.name] = set(tp.partitions)
    return owned


def heartbeat(
    broker: BrokerServices, header: RequestHeader, frame: memoryview
) -> Awaitable[Buffers]:
    return _heartbeat(broker, header, decode(header, frame))


async def _heartbeat(broker: BrokerServices, header: RequestHeader, req: Any) -> Buffers:
    cfg = broker.config
    try:
        if not req.group_id:
            raise E.GroupError(E.INVALID_GROUP_ID)
        require_group(broker, header, READ, req.group_id)
        E.require_coordinator(broker.coordinates_group(req.group_id))
        if req.member_epoch in (-1, -2) and broker.groups.maybe_downgrade(
            req.group_id, {req.member_id}
        ):  # the last consumer-protocol member left a group of classic members
            return respond(header, {"throttle_time": 0, "error_code": 0, "error_message": None,
                                    "member_id": req.member_id, "member_epoch": req.member_epoch,
                                    "heartbeat_interval": 0, "assignment": None})  # fmt: skip
        group = broker.groups.consumer(req.group_id, create=req.member_epoch == 0)
        if group is None:
            raise E.GroupError(E.UNKNOWN_MEMBER_ID)
        hb = HeartbeatRequest(
            member_id=req.member_id or ("" if header.api_version == 0 else str(uuid.uuid4())),
            member_epoch=req.member_epoch,
            instance_id=req.instance_id,
            rack_id=req.rack_id,
            rebalance_timeout_s=max(req.rebalance_timeout.total_seconds(), 0.0),
            subscribed=list(req.subscribed_topic_names)
            if req.subscribed_topic_names is not None
            else None,
            regex=getattr(req, "subscribed_topic_regex", None),
            assignor=req.server_assignor,
            owned=_owned(broker, req.topic_partitions),
            client_id=header.client_id or "",
            client_host=header.client_host,
        )
        counts = {name: len(t.logs) for name, t in broker.topics.items()}
        member = group.heartbeat(hb, counts)
        await broker.groups.remember(group, "consumer")
    except E.GroupError as exc:
        return respond(
            header,
            {
                "throttle_time": 0,
                "error_code": exc.code,
                "error_message": str(exc),
                "member_id": req.member_id,
                "member_epoch": -1,
                "heartbeat_interval": 0,
                "assignment": None,
            },
        )
    return respond(
        header,
        {
            "throttle_time": 0,
            "error_code": 0,
            "error_message": None,
            "member_id": member.member_id,
            "member_epoch": member.member_epoch,
            "heartbeat_interval": cfg.group_consumer_heartbeat_interval_ms,
            "assignment": _assignment_if_changed(broker, member),
        },
    )


def _assignment_if_changed(broker: BrokerServices, member: ConsumerMember) -> dict[str, Any] | None:
    if member.member_epoch < 0:
        return None
    current = {t: set(p) for t, p in member.assigned.items() if p}
    if member.last_sent == current:
        return None
    member.last_sent = current
    return {"topic_partitions": _by_name(broker, current)}


def describe(broker: BrokerServices, header: RequestHeader, frame: memoryview) -> Buffers:
    req = decode(header, frame)
    ops = bool(getattr(req, "include_authorized_operations", False))
    groups = []
    broker.groups.expire_due(req.group_ids)
    for gid in req.group_ids:
        g = broker.groups.groups.get(gid)
        if not allowed_group(broker, header, DESCRIBE, gid):
            groups.append(
                {
                    "error_code": GROUP_AUTHORIZATION_FAILED,
                    "error_message": None,
                    "group_id": gid,
                    "group_state": "",
                    "members": [],
                    "authorized_operations": NOT_REQUESTED_OPS,
                }
            )
            continue
        if not broker.coordinates_group(gid):
            groups.append(
                {
                    "error_code": E.NOT_COORDINATOR,
                    "error_message": None,
                    "group_id": gid,
                    "group_state": "",
                    "members": [],
                    "authorized_operations": NOT_REQUESTED_OPS,
                }
            )
            continue
        if not isinstance(g, ConsumerGroup):
            groups.append(
                {
                    "error_code": E.GROUP_ID_NOT_FOUND,
                    "error_message": f"Group {gid} is not a consumer group.",
                    "group_id": gid,
                    "group_state": "Dead",
                    "members": [],
                    "authorized_operations": NOT_REQUESTED_OPS,
                }
            )
            continue
        members = [
            {
                "member_id": m.member_id,
                "instance_id": m.instance_id,
                "rack_id": m.rack_id,
                "member_epoch": m.member_epoch,
                "client_id": m.client_id,
                "client_host": m.client_host,
                "subscribed_topic_names": sorted(m.subscribed),
                "subscribed_topic_regex": m.regex,
                "assignment": {"topic_partitions": _by_name(broker, m.assigned)},
                "target_assignment": {
                    "topic_partitions": _by_name(broker, g.target.get(m.member_id, {}))
                },
                "member_type": 0 if m.classic is not None else 1,  # classic: migrating
            }
            for m in g.members.values()
        ]
        groups.append(
            {
                "error_code": 0,
                "error_message": None,
                "group_id": gid,
                "group_state": g.state,
                "group_epoch": g.group_epoch,
                "assignment_epoch": g.assignment_epoch,
                "assignor_name": next(
                    (m.assignor for m in g.members.values() if m.assignor), "uniform"
                ),
                "members": members,
                "authorized_operations": authorized_operations(broker, header, GROUP, gid, ops),
            }
        )
    return respond(header, {"throttle_time": 0, "groups": groups})
