"""Metadata: brokers, topics and partition leaders; auto-creates topics when allowed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from broker_service.api.access import (
    TOPIC_AUTHORIZATION_FAILED,
    allowed_topic,
    authorized_operations,
    endpoint,
    may_create_topic,
)
from broker_service.api.base import NOT_REQUESTED_OPS, Buffers, Result, decode
from broker_service.api.zones import client_zone, zone_broker_ids, zone_server
from broker_service.kafka.groups.offsets_topic import INTERNAL_TOPICS, OFFSETS_TOPIC
from broker_service.metadata.errors import TopicAlreadyExists
from broker_service.protocol.configs import InvalidTopic, validate_topic_name
from broker_service.protocol.frames import RequestHeader
from broker_service.protocol.metadata_encoding import MetadataResponseEncoder
from broker_service.security import acl

if TYPE_CHECKING:
    from broker_service.api.services import BrokerServices
    from broker_service.kafka.topics import TopicState


# Topic entries encoded once, reused until they change (a full Metadata of 10,000 topics
# would otherwise cost ~350 ms of the event loop each time). A zoned client's entries name
# other leaders: they are other entries, cached alike (the cache is keyed by content).
RESPONSES = MetadataResponseEncoder()


def topic_entry(
    broker: BrokerServices,
    state: TopicState,
    zone_ids: list[int] | None = None,
    *,
    listed: set[int],
) -> dict[str, Any]:
    """A topic as a client sees it; a client in a zone with brokers (``zone_ids``) is told
    an in-zone broker as every partition's leader (api/zones.py), with the real epoch.

    A leader not among the brokers the answer lists (``listed``: live and draining; its lease
    ran out, or it joined after our last look) is no leader to a client: as Kafka answers a
    partition whose leader is offline, leader -1 and LEADER_NOT_AVAILABLE (the client asks
    again), never an id it cannot resolve."""
    partitions = []
    for p in state.logs:
        leader = zone_server(zone_ids, p) if zone_ids else p.leader_id
        online = leader in listed
        partitions.append(
            {
                "error_code": 0 if online else ErrorCode.leader_not_available,
                "partition_index": p.partition,
                "leader_id": leader if online else -1,
                "leader_epoch": p.leader_epoch,
                "replica_nodes": [leader],
                "isr_nodes": [leader],
                "offline_replicas": [] if online else [leader],
            }
        )
    return {
        "error_code": 0,
        "name": state.name,
        "topic_id": state.topic_id,
        "is_internal": state.name in INTERNAL_TOPICS,
        "partitions": partitions,
        "topic_authorized_operations": NOT_REQUESTED_OPS,
    }


def broker_entries(broker: BrokerServices, header: RequestHeader) -> list[dict[str, Any]]:
    out = []
    for b in broker.listed_brokers():
        host, port = endpoint(broker, header, b)  # on the listener the client came in on
        out.append({"node_id": b.broker_id, "host": host, "port": port, "rack": b.rack})
    return out


def handle(broker: BrokerServices, header: RequestHeader, frame: memoryview) -> Result:
    req = decode(header, frame)
    allow_auto = broker.config.auto_create_topics and getattr(
        req, "allow_auto_topic_creation", True
    )
    missing = [
        t.name
        for t in req.topics or ()
        if t.name
        and not _by_id(header, t)
        and t.name not in broker.topics
        and _valid_name(t.name)
        and allowed_topic(broker, header, acl.DESCRIBE, t.name)
    ]
    if missing:
        return _look_further(broker, header, req, missing, allow_auto)
    return _respond(broker, header, req, allow_auto)


async def _look_further(
    broker: BrokerServices, header: RequestHeader, req: Any, names: list[str], allow_auto: bool
) -> Buffers:
    """Topics unknown here may be another broker's new ones: re-read the metadata store,
    then create what is still missing when allowed."""
    await broker.sync_metadata()
    if not allow_auto:
        return _respond(broker, header, req, allow_auto)
    for name in dict.fromkeys(names):
        if name == OFFSETS_TOPIC:  # created as Kafka's internal topic, never a plain one
            await broker.ensure_offsets_topic()
        elif name not in broker.topics and may_create_topic(broker, header, name):
            try:
                await broker.create_topic(name, broker.config.default_partitions, {})
            except TopicAlreadyExists:
                await broker.sync_metadata()  # created meanwhile, maybe by another broker
    return _respond(broker, header, req, allow_auto)


def _valid_name(name: str) -> bool:
    try:
        validate_topic_name(name)
    except InvalidTopic:
        return False
    return True


def _respond(broker: BrokerServices, header: RequestHeader, req: Any, allow_auto: bool) -> Buffers:
    requested = req.topics
    zone_ids = zone_broker_ids(broker, client_zone(header))
    brokers = broker_entries(broker, header)
    listed = {b["node_id"] for b in brokers}
    if requested is None or (header.api_version == 0 and not requested):
        # all topics: those the client may not describe are left out, as Kafka does
        topics = [
            topic_entry(broker, broker.topics[n], zone_ids, listed=listed)
            for n in sorted(broker.topics)
            if allowed_topic(broker, header, acl.DESCRIBE, n)
        ]
    else:
        topics = [_entry(broker, header, t, zone_ids, listed, allow_auto) for t in requested]
    if getattr(req, "include_topic_authorized_operations", False):
        for t in topics:
            if t.get("error_code") == 0:
                t["topic_authorized_operations"] = authorized_operations(
                    broker, header, acl.TOPIC, t["name"], True
                )
    data = {
        "throttle_time": 0,
        "brokers": brokers,
        "cluster_id": broker.cluster_id,
        "controller_id": broker.controller_id(),
        "topics": topics,
        "cluster_authorized_operations": authorized_operations(
            broker,
            header,
            acl.CLUSTER,
            acl.CLUSTER_NAME,
            bool(getattr(req, "include_cluster_authorized_operations", False)),
        ),
    }
    return [RESPONSES.encode(header.api_version, data)]


def _denied(name: str | None, topic_id: Any = None) -> dict[str, Any]:
    return {
        "error_code": TOPIC_AUTHORIZATION_FAILED,
        "name": name,
        "topic_id": topic_id,
        "is_internal": False,
        "partitions": [],
        "topic_authorized_operations": NOT_REQUESTED_OPS,
    }


def _by_id(header: RequestHeader, t: Any) -> bool:
    """v12+ names a topic by id when the id is set, whatever the name says: the Java
    AdminClient leaves it empty, others null (Kafka looks the ids up first)."""
    topic_id = getattr(t, "topic_id", None)
    return header.api_version >= 12 and topic_id is not None and topic_id.int != 0


def _entry(
    broker: BrokerServices,
    header: RequestHeader,
    t: Any,
    zone_ids: list[int],
    listed: set[int],
    allow_auto: bool,
) -> dict[str, Any]:
    if _by_id(header, t):
        state = broker.topics_by_id.get(t.topic_id)
        if state is None:
            return {
                "error_code": ErrorCode.unknown_topic_id,
                "name": None,
                "topic_id": t.topic_id,
                "partitions": [],
            }
        if not allowed_topic(broker, header, acl.DESCRIBE, state.name):
            return _denied(None, t.topic_id)
        return topic_entry(broker, state, zone_ids, listed=listed)
    if not allowed_topic(broker, header, acl.DESCRIBE, t.name or ""):
        return _denied(t.name)
    state = broker.topics.get(t.name or "")
    if state is not None:
        return topic_entry(broker, state, zone_ids, listed=listed)
    if allow_auto and t.name != OFFSETS_TOPIC and not may_create_topic(broker, header, t.name):
        # Kafka: a missing topic auto creation would make, but the client may not create
        return {**_denied(t.name), "is_internal": False}
    code = (
        ErrorCode.unknown_topic_or_partition
        if _valid_name(t.name or "")
        else ErrorCode.invalid_topic_exception
    )
    return {
        "error_code": code,
        "name": t.name,
        "partitions": [],
        "topic_authorized_operations": NOT_REQUESTED_OPS,
    }
