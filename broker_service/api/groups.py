"""Classic group APIs: JoinGroup, SyncGroup, Heartbeat, LeaveGroup, ListGroups,
DescribeGroups, DeleteGroups. Each adapts a request to the coordinator in ``groups/``."""

from __future__ import annotations

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
from broker_service.kafka.groups.classic import JoinRequest
from broker_service.kafka.groups.consumer import ConsumerGroup
from broker_service.kafka.groups.consumer_protocol import encode_assignment, encode_subscription
from broker_service.protocol.frames import RequestHeader
from broker_service.security.acl import DELETE, DESCRIBE, GROUP, READ

if TYPE_CHECKING:
    from broker_service.api.services import BrokerServices


def _ms(value: Any) -> float:
    """Seconds from a kio timedelta field."""
    return float(value.total_seconds())


def join_group(
    broker: BrokerServices, header: RequestHeader, frame: memoryview
) -> Awaitable[Buffers]:
    return _join(broker, header, decode(header, frame))


async def _join(broker: BrokerServices, header: RequestHeader, req: Any) -> Buffers:
    v = header.api_version
    cfg = broker.config
    session = _ms(req.session_timeout)
    try:
        if not req.group_id:
            raise E.GroupError(E.INVALID_GROUP_ID)
        require_group(broker, header, READ, req.group_id)
        E.require_coordinator(broker.coordinates_group(req.group_id))
        if (
            not cfg.group_min_session_timeout_ms / 1000
            <= session
            <= (cfg.group_max_session_timeout_ms / 1000)
        ):
            raise E.GroupError(E.INVALID_SESSION_TIMEOUT)
        group = broker.groups.classic(req.group_id, create=not req.member_id)
        if group is None:
            raise E.GroupError(E.UNKNOWN_MEMBER_ID)
        join = JoinRequest(
            member_id=req.member_id,
            group_instance_id=getattr(req, "group_instance_id", None),
            client_id=header.client_id or "",
            client_host=header.client_host,
            session_timeout_s=session,
            rebalance_timeout_s=_ms(req.rebalance_timeout) if v >= 1 else session,
            protocol_type=req.protocol_type,
            protocols=[(p.name, bytes(p.metadata)) for p in req.protocols],
            require_known_member_id=v >= 4,
        )
        await broker.groups.remember(group, req.protocol_type)
        result = await group.join(join)
    except E.GroupError as exc:
        result = {
            "error_code": exc.code,
            "generation_id": -1,
            "leader": "",
            "member_id": req.member_id,
            "members": [],
            "protocol_name": None,
        }
    return respond(header, {"throttle_time": 0, **result})


def sync_group(
    broker: BrokerServices, header: RequestHeader, frame: memoryview
) -> Awaitable[Buffers]:
    return _sync(broker, header, decode(header, frame))


async def _sync(broker: BrokerServices, header: RequestHeader, req: Any) -> Buffers:
    try:
        require_group(broker, header, READ, req.group_id)
        E.require_coordinator(broker.coordinates_group(req.group_id))
        group = broker.groups.classic(req.group_id, create=False)
        if group is None:
            raise E.GroupError(E.UNKNOWN_MEMBER_ID)
        if header.api_version >= 5 and (
            (req.protocol_type is not None and req.protocol_type != group.protocol_type)
            or (
                req.protocol_name is not None
                and group.protocol_name is not None  # None: a KIP-848 group's classic member
                and req.protocol_name != group.protocol_name
            )
        ):
            raise E.GroupError(E.INCONSISTENT_GROUP_PROTOCOL)
        assignment = await group.sync(
            req.member_id,
            req.generation_id,
            getattr(req, "group_instance_id", None),
            {a.member_id: bytes(a.assignment) for a in req.assignments},
        )
        body = {
            "error_code": 0,
            "protocol_type": group.protocol_type,
            "protocol_name": group.protocol_name or getattr(req, "protocol_name", None),
            "assignment": assignment,
        }
    except E.GroupError as exc:
        body = {
            "error_code": exc.code,
            "assignment": b"",
            "protocol_type": None,
            "protocol_name": None,
        }
    return respond(header, {"throttle_time": 0, **body})


def heartbeat(broker: BrokerServices, header: RequestHeader, frame: memoryview) -> Buffers:
    req = decode(header, frame)
    code = E.NONE
    try:
        require_group(broker, header, READ, req.group_id)
        E.require_coordinator(broker.coordinates_group(req.group_id))
        group = broker.groups.classic(req.group_id, create=False)
        if group is None:
            raise E.GroupError(E.UNKNOWN_MEMBER_ID)
        group.heartbeat(req.member_id, req.generation_id, getattr(req, "group_instance_id", None))
    except E.GroupError as exc:
        code = exc.code
    return respond(header, {"throttle_time": 0, "error_code": code})


def leave_group(broker: BrokerServices, header: RequestHeader, frame: memoryview) -> Buffers:
    req = decode(header, frame)
    if header.api_version >= 3:
        leaving = [(m.member_id, m.group_instance_id) for m in req.members]
    else:
        leaving = [(req.member_id, None)]
    if not allowed_group(broker, header, READ, req.group_id):
        return respond(
            header, {"throttle_time": 0, "error_code": GROUP_AUTHORIZATION_FAILED, "members": []}
        )
    if not broker.coordinates_group(req.group_id):
        return respond(header, {"throttle_time": 0, "error_code": E.NOT_COORDINATOR, "members": []})
    group = broker.groups.classic(req.group_id, create=False)
    results = []
    top = E.NONE
    for member_id, instance_id in leaving:
        code = E.NONE
        try:
            if group is None:
                raise E.GroupError(E.UNKNOWN_MEMBER_ID)
            group.leave(member_id, instance_id)
        except E.GroupError as exc:
            code = exc.code
        results.append(
            {"member_id": member_id, "group_instance_id": instance_id, "error_code": code}
        )
        if header.api_version < 3:
            top = code
    return respond(header, {"throttle_time": 0, "error_code": top, "members": results})


def list_groups(broker: BrokerServices, header: RequestHeader, frame: memoryview) -> Buffers:
    req = decode(header, frame)
    states = {s.lower() for s in getattr(req, "states_filter", ()) or ()}
    types = {t.lower() for t in getattr(req, "types_filter", ()) or ()}
    groups = [
        {"group_id": gid, "protocol_type": ptype, "group_state": state, "group_type": gtype}
        for gid, ptype, state, gtype in broker.groups.listing()
        if allowed_group(broker, header, DESCRIBE, gid)
        and (not states or state.lower() in states)
        and (not types or gtype in types)
    ]
    return respond(header, {"throttle_time": 0, "error_code": 0, "groups": groups})


def describe_groups(broker: BrokerServices, header: RequestHeader, frame: memoryview) -> Buffers:
    req = decode(header, frame)
    ops = bool(getattr(req, "include_authorized_operations", False))
    return respond(
        header,
        {
            "throttle_time": 0,
            "groups": [
                _with_operations(broker, header, _describe(broker, gid), ops)
                if allowed_group(broker, header, DESCRIBE, gid)
                else {
                    "error_code": GROUP_AUTHORIZATION_FAILED,
                    "group_id": gid,
                    "group_state": "",
                    "protocol_type": "",
                    "protocol_data": "",
                    "members": [],
                    "authorized_operations": NOT_REQUESTED_OPS,
                }
                for gid in req.groups
            ],
        },
    )


def _with_operations(
    broker: BrokerServices, header: RequestHeader, entry: dict[str, Any], requested: bool
) -> dict[str, Any]:
    """DescribeGroups v3+: the client's operations on the group, when asked for."""
    if entry["error_code"] == 0:
        entry["authorized_operations"] = authorized_operations(
            broker, header, GROUP, entry["group_id"], requested
        )
    return entry


def _describe(broker: BrokerServices, group_id: str) -> dict[str, Any]:
    broker.groups.expire_due([group_id])
    g = broker.groups.groups.get(group_id)
    base: dict[str, Any] = {
        "error_code": 0,
        "group_id": group_id,
        "authorized_operations": NOT_REQUESTED_OPS,
    }
    if not broker.coordinates_group(group_id):
        return {
            **base,
            "error_code": E.NOT_COORDINATOR,
            "group_state": "",
            "protocol_type": "",
            "protocol_data": "",
            "members": [],
        }
    if g is None:
        known = broker.groups.exists(group_id)
        return {
            **base,
            "group_state": "Empty" if known else "Dead",
            "protocol_type": "",
            "protocol_data": "",
            "members": [],
        }
    if isinstance(g, ConsumerGroup):
        members = [
            {
                "member_id": m.member_id,
                "group_instance_id": m.instance_id,
                "client_id": m.client_id,
                "client_host": m.client_host,
                "member_metadata": encode_subscription(sorted(m.subscribed)),
                "member_assignment": encode_assignment(
                    {t: sorted(p) for t, p in m.assigned.items() if p}
                ),
            }
            for m in g.members.values()
        ]
        return {
            **base,
            "group_state": g.state,
            "protocol_type": "consumer",
            "protocol_data": "uniform",
            "members": members,
        }
    show_meta = g.state not in ("PreparingRebalance", "Empty")
    members = [
        {
            "member_id": m.member_id,
            "group_instance_id": m.group_instance_id,
            "client_id": m.client_id,
            "client_host": m.client_host,
            "member_metadata": m.metadata_for(g.protocol_name or "") if show_meta else b"",
            "member_assignment": m.assignment if g.state == "Stable" else b"",
        }
        for m in g.members.values()
    ]
    return {
        **base,
        "group_state": g.state,
        "protocol_type": g.protocol_type or "",
        "protocol_data": g.protocol_name or "",
        "members": members,
    }


async def delete_groups(
    broker: BrokerServices, header: RequestHeader, frame: memoryview
) -> Buffers:
    req = decode(header, frame)
    results = []
    for gid in req.groups_names:
        code = E.NONE
        try:
            require_group(broker, header, DELETE, gid)
            E.require_coordinator(broker.coordinates_group(gid))
            await broker.groups.delete(gid)
        except E.GroupError as exc:
            code = exc.code
        results.append({"group_id": gid, "error_code": code})
    return respond(header, {"throttle_time": 0, "results": results})
