"""DescribeConfigs (topic and broker resources) and DescribeCluster."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from broker_service.api.access import (
    CLUSTER_AUTHORIZATION_FAILED,
    TOPIC_AUTHORIZATION_FAILED,
    allowed,
    broker_endpoint_fields,
)
from broker_service.api.base import NOT_REQUESTED_OPS, Buffers, decode, respond
from broker_service.protocol.frames import RequestHeader
from broker_service.security import acl

if TYPE_CHECKING:
    from broker_service.api.services import BrokerServices

TOPIC, BROKER = 2, 4
SOURCE_TOPIC, SOURCE_STATIC_BROKER, SOURCE_DEFAULT = 1, 4, 5
_TYPES = {
    "cleanup.policy": 7,
    "compression.type": 2,
    "message.timestamp.type": 2,
    "min.insync.replicas": 3,
    "max.message.bytes": 3,
}  # LONG (5) otherwise


def _entry(name: str, value: str | None, source: int, read_only: bool) -> dict[str, Any]:
    return {
        "name": name,
        "value": value,
        "read_only": read_only,
        "config_source": source,
        "is_default": source == SOURCE_DEFAULT,
        "is_sensitive": False,
        "synonyms": [],
        "config_type": _TYPES.get(name, 5),
        "documentation": None,
    }


def describe_configs(broker: BrokerServices, header: RequestHeader, frame: memoryview) -> Buffers:
    req = decode(header, frame)
    results = []
    for res in req.resources:
        keys = set(res.configuration_keys) if res.configuration_keys is not None else None
        base = {
            "resource_type": res.resource_type,
            "resource_name": res.resource_name,
            "error_message": None,
        }
        rtype, name = (
            (acl.TOPIC, res.resource_name) if res.resource_type == TOPIC else
            (acl.CLUSTER, acl.CLUSTER_NAME)
        )  # fmt: skip
        if not allowed(broker, header, acl.DESCRIBE_CONFIGS, rtype, name):
            code = (
                TOPIC_AUTHORIZATION_FAILED if rtype == acl.TOPIC else CLUSTER_AUTHORIZATION_FAILED
            )
            results.append({**base, "error_code": code, "configs": []})
            continue
        if res.resource_type == TOPIC:
            state = broker.topics.get(res.resource_name)
            if state is None:
                results.append(
                    {
                        **base,
                        "error_code": ErrorCode.unknown_topic_or_partition,
                        "error_message": f"Topic {res.resource_name} does not exist",
                        "configs": [],
                    }
                )
                continue
            configs = [
                _entry(
                    k,
                    state.record.configs.get(k, v),
                    SOURCE_TOPIC if k in state.record.configs else SOURCE_DEFAULT,
                    False,
                )
                for k, v in broker.topic_defaults().items()
                if keys is None or k in keys
            ]
        elif res.resource_type == BROKER:
            if res.resource_name not in ("", str(broker.node_id)):
                results.append(
                    {
                        **base,
                        "error_code": ErrorCode.invalid_request,
                        "error_message": f"Unknown broker {res.resource_name}",
                        "configs": [],
                    }
                )
                continue
            cfg = broker.config
            values = {
                "broker.id": str(cfg.node_id),
                "auto.create.topics.enable": str(cfg.auto_create_topics).lower(),
                "num.partitions": str(cfg.default_partitions),
                "message.max.bytes": str(cfg.message_max_bytes),
                "socket.request.max.bytes": str(cfg.socket_request_max_bytes),
            }
            configs = [
                _entry(k, v, SOURCE_STATIC_BROKER, True)
                for k, v in values.items()
                if keys is None or k in keys
            ]
        else:
            results.append(
                {
                    **base,
                    "error_code": ErrorCode.invalid_request,
                    "error_message": f"Unsupported resource type {res.resource_type}",
                    "configs": [],
                }
            )
            continue
        results.append({**base, "error_code": 0, "configs": configs})
    return respond(header, {"throttle_time": 0, "results": results})


def describe_cluster(broker: BrokerServices, header: RequestHeader, frame: memoryview) -> Buffers:
    decode(header, frame)
    return respond(
        header,
        {
            "throttle_time": 0,
            "error_code": 0,
            "error_message": None,
            "endpoint_type": 1,
            "cluster_id": broker.cluster_id,
            "controller_id": broker.controller_id(),
            "brokers": [
                {
                    "broker_id": b.broker_id,
                    "rack": b.rack,
                    **broker_endpoint_fields(broker, header, b),
                }
                for b in broker.live_brokers()
            ],
            "cluster_authorized_operations": NOT_REQUESTED_OPS,
        },
    )
