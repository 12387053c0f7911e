"""Metadata: brokers, topics and partition leaders; auto-creates topics when allowed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from ..cluster.topic_config import InvalidTopic, validate_topic_name
from ..metadata.base import TopicAlreadyExists
from ..protocol.frames import RequestHeader
from .base import NOT_REQUESTED_OPS, Buffers, decode, respond

if TYPE_CHECKING:
    from ..broker import Broker, TopicState


def topic_entry(broker: Broker, state: TopicState) -> dict[str, Any]:
    node = broker.node_id
    return {
        "error_code": 0,
        "name": state.name,
        "topic_id": state.topic_id,
        "is_internal": False,
        "partitions": [
            {
                "error_code": 0,
                "partition_index": p.partition,
                "leader_id": node,
                "leader_epoch": p.leader_epoch,
                "replica_nodes": [node],
                "isr_nodes": [node],
                "offline_replicas": [],
            }
            for p in state.logs
        ],
        "topic_authorized_operations": NOT_REQUESTED_OPS,
    }


def broker_entries(broker: Broker) -> list[dict[str, Any]]:
    host, port = broker.config.advertised
    return [{"node_id": broker.node_id, "host": host, "port": port, "rack": broker.config.rack}]


def handle(broker: Broker, header: RequestHeader, frame: memoryview) -> Buffers:
    req = decode(header, frame)
    version = header.api_version
    requested = req.topics
    allow_auto = broker.config.auto_create_topics and getattr(
        req, "allow_auto_topic_creation", True
    )
    if requested is None or (version == 0 and not requested):
        states = [broker.topics[n] for n in sorted(broker.topics)]
        topics = [topic_entry(broker, s) for s in states]
    else:
        topics = []
        for t in requested:
            name = t.name
            if name is None and getattr(t, "topic_id", None) is not None:
                state = broker.topics_by_id.get(t.topic_id)
                if state is None:
                    topics.append(
                        {
                            "error_code": ErrorCode.unknown_topic_id,
                            "name": None,
                            "topic_id": t.topic_id,
                            "partitions": [],
                        }
                    )
                else:
                    topics.append(topic_entry(broker, state))
                continue
            topics.append(_by_name(broker, name or "", allow_auto))
    return respond(
        header,
        {
            "throttle_time": 0,
            "brokers": broker_entries(broker),
            "cluster_id": broker.cluster_id,
            "controller_id": broker.node_id,
            "topics": topics,
            "cluster_authorized_operations": NOT_REQUESTED_OPS,
        },
    )


def _by_name(broker: Broker, name: str, allow_auto: bool) -> dict[str, Any]:
    state = broker.topics.get(name)
    if state is not None:
        return topic_entry(broker, state)
    try:
        validate_topic_name(name)
    except InvalidTopic:
        return {
            "error_code": ErrorCode.invalid_topic_exception,
            "name": name,
            "partitions": [],
            "topic_authorized_operations": NOT_REQUESTED_OPS,
        }
    if allow_auto:
        try:
            state = broker.create_topic(name, broker.config.default_partitions, {})
        except TopicAlreadyExists:
            state = broker.topics[name]
        return topic_entry(broker, state)
    return {
        "error_code": ErrorCode.unknown_topic_or_partition,
        "name": name,
        "partitions": [],
        "topic_authorized_operations": NOT_REQUESTED_OPS,
    }
