"""CreateTopics, DeleteTopics, CreatePartitions."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from broker_service.api.access import TOPIC_AUTHORIZATION_FAILED, allowed_topic, may_create_topic
from broker_service.api.base import Buffers, decode, respond
from broker_service.metadata.errors import TopicAlreadyExists, UnknownTopic
from broker_service.protocol.configs import (
    TOPIC_CONFIGS,
    InvalidConfig,
    InvalidTopic,
    resolve,
    validate_configs,
    validate_topic_name,
)
from broker_service.protocol.frames import RequestHeader
from broker_service.security import acl

if TYPE_CHECKING:
    from broker_service.api.services import BrokerServices

MAX_PARTITIONS = 10_000


def create_topics(
    broker: BrokerServices, header: RequestHeader, frame: memoryview
) -> Awaitable[Buffers]:
    return _create_topics(broker, header, decode(header, frame))


async def _create_topics(broker: BrokerServices, header: RequestHeader, req: Any) -> Buffers:
    validate_only = req.validate_only if header.api_version >= 1 else False
    results = [
        await _create_one(broker, t, validate_only)
        if may_create_topic(broker, header, t.name)
        else {
            "name": t.name,
            "num_partitions": -1,
            "replication_factor": -1,
            "error_code": TOPIC_AUTHORIZATION_FAILED,
            "error_message": "Authorization failed.",
            "topic_config_error_code": TOPIC_AUTHORIZATION_FAILED,
        }
        for t in req.topics
    ]
    return respond(header, {"throttle_time": 0, "topics": results})


async def _create_one(broker: BrokerServices, t: Any, validate_only: bool) -> dict[str, Any]:
    name = t.name
    n = t.num_partitions if t.num_partitions != -1 else broker.config.default_partitions
    if t.assignments:
        n = len(t.assignments)
    base: dict[str, Any] = {"name": name, "num_partitions": -1, "replication_factor": -1}

    def error(code: ErrorCode, message: str) -> dict[str, Any]:
        return {
            **base,
            "error_code": code,
            "error_message": message,
            "topic_config_error_code": code,
        }

    try:
        validate_topic_name(name)
    except InvalidTopic as exc:
        return error(exc.code, str(exc))
    if name in broker.topics:
        return error(ErrorCode.topic_already_exists, f"Topic '{name}' already exists.")
    if n < 1 or n > MAX_PARTITIONS:
        return error(
            ErrorCode.invalid_partitions,
            f"Number of partitions must be between 1 and {MAX_PARTITIONS}, got {n}.",
        )
    if t.replication_factor == 0 or t.replication_factor < -1:
        return error(
            ErrorCode.invalid_replication_factor,
            "Replication factor must be larger than 0, or -1 to use the default.",
        )
    configs = {c.name: c.value for c in t.configs}
    try:
        checked = validate_configs(configs)
    except InvalidConfig as exc:
        return error(exc.code, str(exc))
    if not validate_only:
        try:
            state = await broker.create_topic(name, n, dict(checked))
        except TopicAlreadyExists:
            return error(ErrorCode.topic_already_exists, f"Topic '{name}' already exists.")
        topic_id = state.topic_id
    else:
        topic_id = None
    # Durability comes from shared storage, not replicas: every topic reports factor 1.
    return {
        "name": name,
        "topic_id": topic_id,
        "error_code": 0,
        "error_message": None,
        "num_partitions": n,
        "replication_factor": 1,
        "configs": [
            {
                "name": k,
                "value": value,
                "read_only": False,
                "config_source": source,
                "is_sensitive": False,
            }
            for k in TOPIC_CONFIGS
            for value, source in [
                resolve(k, checked, broker.configs.dynamic, broker.configs.static)
            ]
        ],
    }


def delete_topics(
    broker: BrokerServices, header: RequestHeader, frame: memoryview
) -> Awaitable[Buffers]:
    return _delete_topics(broker, header, decode(header, frame))


async def _delete_topics(broker: BrokerServices, header: RequestHeader, req: Any) -> Buffers:
    if header.api_version >= 6:
        wanted = [(t.name, t.topic_id) for t in req.topics]
    else:
        wanted = [(n, None) for n in req.topic_names]
    results = []
    for name, topic_id in wanted:
        if name is None and topic_id is not None:
            state = broker.topics_by_id.get(topic_id)
            if state is None:
                results.append(
                    {
                        "name": None,
                        "topic_id": topic_id,
                        "error_code": ErrorCode.unknown_topic_id,
                        "error_message": "Unknown topic id",
                    }
                )
                continue
            name = state.name
        if not allowed_topic(broker, header, acl.DELETE, name or ""):
            results.append(
                {
                    "name": name,
                    "topic_id": topic_id,
                    "error_code": TOPIC_AUTHORIZATION_FAILED,
                    "error_message": "Authorization failed.",
                }
            )
            continue
        try:
            rec = await broker.delete_topic(name or "")
        except UnknownTopic:
            results.append(
                {
                    "name": name,
                    "topic_id": topic_id,
                    "error_code": ErrorCode.unknown_topic_or_partition,
                    "error_message": "This server does not host this topic-partition.",
                }
            )
            continue
        results.append(
            {"name": name, "topic_id": rec.topic_id, "error_code": 0, "error_message": None}
        )
    return respond(header, {"throttle_time": 0, "responses": results})


def create_partitions(
    broker: BrokerServices, header: RequestHeader, frame: memoryview
) -> Awaitable[Buffers]:
    return _create_partitions(broker, header, decode(header, frame))


async def _create_partitions(broker: BrokerServices, header: RequestHeader, req: Any) -> Buffers:
    results = []
    for t in req.topics:
        state = broker.topics.get(t.name)
        if not allowed_topic(broker, header, acl.ALTER, t.name):
            results.append(
                {
                    "name": t.name,
                    "error_code": TOPIC_AUTHORIZATION_FAILED,
                    "error_message": "Authorization failed.",
                }
            )
            continue
        if state is None:
            results.append(
                {
                    "name": t.name,
                    "error_code": ErrorCode.unknown_topic_or_partition,
                    "error_message": "This server does not host this topic-partition.",
                }
            )
            continue
        current = len(state.logs)
        if t.count <= current or t.count > MAX_PARTITIONS:
            results.append(
                {
                    "name": t.name,
                    "error_code": ErrorCode.invalid_partitions,
                    "error_message": f"Topic currently has {current} partitions, which is higher "
                    f"than or equal to the requested {t.count}."
                    if t.count <= current
                    else f"At most {MAX_PARTITIONS} partitions.",
                }
            )
            continue
        if not req.validate_only:
            await broker.add_partitions(t.name, t.count)
        results.append({"name": t.name, "error_code": 0, "error_message": None})
    return respond(header, {"throttle_time": 0, "results": results})
