"""DescribeConfigs, AlterConfigs, IncrementalAlterConfigs (topic and broker resources) and
DescribeCluster. Definitions and validation: ``protocol/configs.py``; the durable changes:
``kafka/configs.py``."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from broker_service.api.access import (
    CLUSTER_AUTHORIZATION_FAILED,
    TOPIC_AUTHORIZATION_FAILED,
    allowed,
    authorized_operations,
    broker_endpoint_fields,
)
from broker_service.api.base import NOT_REQUESTED_OPS, Buffers, decode, respond
from broker_service.kafka import loggers
from broker_service.kafka.configs import alter_broker_configs, alter_topic_configs
from broker_service.metadata.errors import ConcurrentUpdate, UnknownTopic
from broker_service.metadata.records import TopicRecord
from broker_service.protocol import configs as C
from broker_service.protocol.frames import RequestHeader
from broker_service.security import acl

BROKERS_ENDPOINT, CONTROLLERS_ENDPOINT = 1, 2  # DescribeCluster's endpoint_type (KIP-919)

if TYPE_CHECKING:
    from broker_service.api.services import BrokerServices

TOPIC, BROKER, BROKER_LOGGER = 2, 4, 8


def _entry(
    d: C.ConfigDef,
    value: str | None,
    source: int,
    read_only: bool,
    synonyms: list[tuple[str, str | None, int]] | None,
    documentation: bool,
) -> dict[str, Any]:
    return {
        "name": d.name,
        "value": value,
        "read_only": read_only,
        "config_source": source,
        "is_default": source == C.DEFAULT_CONFIG,
        "is_sensitive": False,
        "synonyms": [{"name": n, "value": v, "source": s} for n, v, s in synonyms or ()],
        "config_type": d.type,
        "documentation": d.documentation() if documentation else None,
    }


def _broker_entry(
    name: str, syn: list[tuple[str, str | None, int]], synonyms: bool, documentation: bool
) -> dict[str, Any]:
    """One broker config as Kafka's ConfigHelper describes it: the value of its first synonym;
    a password, or a custom config (type unknown), is sensitive and its value not given."""
    d = C.BROKER_CONFIGS.get(name)
    sensitive = not C.is_loggable(name)
    if sensitive:
        syn = [(n, None, s) for n, _, s in syn]
    return {
        "name": name,
        "value": syn[0][1],
        "read_only": d is None or not d.dynamic,
        "config_source": syn[0][2],
        "is_default": syn[0][2] == C.DEFAULT_CONFIG,
        "is_sensitive": sensitive,
        "synonyms": [{"name": n, "value": v, "source": s} for n, v, s in syn] if synonyms else [],
        "config_type": d.type if d is not None else C.UNKNOWN,
        "documentation": (d.documentation() if d is not None else None) if documentation else None,
    }


def _logger_entry(name: str, level: str) -> dict[str, Any]:
    return {"name": name, "value": level, "read_only": False,
            "config_source": C.DYNAMIC_BROKER_LOGGER_CONFIG, "is_default": False,
            "is_sensitive": False, "synonyms": [], "config_type": C.UNKNOWN,
            "documentation": None}  # fmt: skip


def _resource_check(
    broker: BrokerServices, header: RequestHeader, rtype: int, name: str, operation: int
) -> tuple[ErrorCode, str] | None:
    """Authorization and existence of one resource, as Kafka answers them."""
    if rtype == TOPIC:
        if not allowed(broker, header, operation, acl.TOPIC, name):
            return TOPIC_AUTHORIZATION_FAILED, "Authorization failed."
        if name not in broker.topics:
            return ErrorCode.unknown_topic_or_partition, f"Topic {name} does not exist"
        return None
    if rtype == BROKER:
        if not allowed(broker, header, operation, acl.CLUSTER, acl.CLUSTER_NAME):
            return CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed."
        if name not in ("", str(broker.node_id)):
            return (
                ErrorCode.invalid_request,
                f"Unexpected broker id, expected {broker.node_id} or empty string, "
                f"but received {name}",
            )
        return None
    if rtype == BROKER_LOGGER:  # this broker's log levels (kafka/loggers.py)
        if not allowed(broker, header, operation, acl.CLUSTER, acl.CLUSTER_NAME):
            return CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed."
        if not name:
            return ErrorCode.invalid_request, "Broker id must not be empty"
        if name != str(broker.node_id):
            return (
                ErrorCode.invalid_request,
                f"Unexpected broker id, expected {broker.node_id} but received {name}",
            )
        return None
    return ErrorCode.invalid_request, f"Unsupported resource type {rtype}"


def describe_configs(broker: BrokerServices, header: RequestHeader, frame: memoryview) -> Buffers:
    req = decode(header, frame)
    synonyms = bool(getattr(req, "include_synonyms", False))
    docs = bool(getattr(req, "include_documentation", False))
    results = []
    for res in req.resources:
        keys = set(res.configuration_keys) if res.configuration_keys is not None else None
        base = {"resource_type": res.resource_type, "resource_name": res.resource_name}
        problem = _resource_check(
            broker, header, res.resource_type, res.resource_name, acl.DESCRIBE_CONFIGS
        )
        if problem is not None:
            code, message = problem
            results.append({**base, "error_code": code, "error_message": message, "configs": []})
            continue
        view = broker.configs
        configs = []
        if res.resource_type == BROKER_LOGGER:
            configs = [_logger_entry(n, level) for n, level in loggers.current_levels().items()
                       if keys is None or n in keys]  # fmt: skip
        elif res.resource_type == TOPIC:
            overrides = broker.topics[res.resource_name].record.configs
            for d in C.TOPIC_CONFIGS.values():
                if keys is None or d.name in keys:
                    value, source = C.resolve(d.name, overrides, view.dynamic, view.static)
                    syn = C.topic_synonyms(d.name, overrides, view.dynamic, view.static)
                    configs.append(_entry(d, value, source, False, syn if synonyms else None, docs))
        elif res.resource_name == "":  # the cluster-wide dynamic defaults only, as Kafka
            for name, value in sorted(view.dynamic.items()):
                if keys is None or name in keys:
                    syn = [(name, value, C.DYNAMIC_DEFAULT_BROKER_CONFIG)]
                    configs.append(_broker_entry(name, syn, synonyms, docs))
        else:  # Kafka's broker keys, and any custom config set for this broker or all
            custom = (set(view.own) | set(view.dynamic)) - set(C.BROKER_CONFIGS)
            for name in sorted([*C.BROKER_CONFIGS, *custom]):
                if keys is not None and name not in keys:
                    continue
                known = C.BROKER_CONFIGS.get(name)
                syn = []
                if known is None or known.dynamic:
                    if name in view.own:
                        syn.append((name, view.own[name], C.DYNAMIC_BROKER_CONFIG))
                    if name in view.dynamic:
                        syn.append((name, view.dynamic[name], C.DYNAMIC_DEFAULT_BROKER_CONFIG))
                if name in view.static:
                    syn.append((name, view.static[name], C.STATIC_BROKER_CONFIG))
                if known is not None:
                    syn.append((name, known.default, C.DEFAULT_CONFIG))
                configs.append(_broker_entry(name, syn, synonyms, docs))
        results.append({**base, "error_code": 0, "error_message": None, "configs": configs})
    return respond(header, {"throttle_time": 0, "results": results})


def incremental_alter_configs(
    broker: BrokerServices, header: RequestHeader, frame: memoryview
) -> Awaitable[Buffers]:
    return _alter_request(broker, header, frame, incremental=True)


def alter_configs(
    broker: BrokerServices, header: RequestHeader, frame: memoryview
) -> Awaitable[Buffers]:
    """The legacy call: the listed configs replace every override of the resource."""
    return _alter_request(broker, header, frame, incremental=False)


def _alter_request(
    broker: BrokerServices, header: RequestHeader, frame: memoryview, incremental: bool
) -> Awaitable[Buffers]:
    req = decode(header, frame)
    changes = [
        (
            r.resource_type,
            r.resource_name,
            [(c.name, c.config_operation if incremental else C.SET, c.value) for c in r.configs],
            incremental,
        )
        for r in req.resources
    ]
    return _alter(broker, header, changes, req.validate_only)


async def _alter(
    broker: BrokerServices,
    header: RequestHeader,
    changes: list[tuple[int, str, list[tuple[str, int, str | None]], bool]],
    validate_only: bool,
) -> Buffers:
    responses = []
    for rtype, name, ops, incremental in changes:
        code, message = await _alter_one(broker, header, rtype, name, ops, incremental,
                                         validate_only)  # fmt: skip
        responses.append(
            {
                "error_code": code,
                "error_message": message,
                "resource_type": rtype,
                "resource_name": name,
            }
        )
    return respond(header, {"throttle_time": 0, "responses": responses})


async def _alter_one(
    broker: BrokerServices,
    header: RequestHeader,
    rtype: int,
    name: str,
    ops: list[tuple[str, int, str | None]],
    incremental: bool,
    validate_only: bool,
) -> tuple[ErrorCode, str | None]:
    if rtype == BROKER_LOGGER and not incremental:  # as Kafka: only the incremental call
        return ErrorCode.invalid_request, f"Unknown resource type {rtype}"
    problem = _resource_check(broker, header, rtype, name, acl.ALTER_CONFIGS)
    if problem is not None:
        return problem
    if rtype == BROKER_LOGGER:
        try:
            loggers.apply_levels(ops, validate_only)
        except C.InvalidConfig as exc:
            return ErrorCode.invalid_config, str(exc)
        except loggers.InvalidLoggerRequest as exc:
            return ErrorCode.invalid_request, str(exc)
        return ErrorCode.none, None
    defs = C.TOPIC_CONFIGS if rtype == TOPIC else C.BROKER_CONFIGS
    if incremental:

        def compute(current: dict[str, str]) -> dict[str, str | None]:
            return C.apply_ops(current, ops, defs)

    else:  # AlterConfigs: the given set replaces every override

        def compute(current: dict[str, str]) -> dict[str, str | None]:
            return C.apply_ops({}, ops, defs)

    try:
        if rtype == TOPIC:
            await alter_topic_configs(broker.ports, name, compute, validate_only,
                                      lambda rec: _applied(broker, rec))  # fmt: skip
        else:
            view = broker.configs
            touched = {n for n, _, _ in ops}
            if not incremental:  # replaced: the others are deleted
                touched |= set(view.own if name else view.dynamic)
            await alter_broker_configs(broker.ports, view, broker.node_id if name else None,
                                       compute, touched, validate_only)  # fmt: skip
    except C.InvalidConfig as exc:
        # Kafka: INVALID_CONFIG for topics, INVALID_REQUEST for broker configs (KAFKA-13609)
        code = ErrorCode.invalid_config if rtype == TOPIC else ErrorCode.invalid_request
        return code, str(exc)
    except UnknownTopic:
        return ErrorCode.unknown_topic_or_partition, f"Topic {name} does not exist"
    except ConcurrentUpdate as exc:  # ten compare-and-set rounds lost in a row
        return ErrorCode.unknown_server_error, str(exc)
    return ErrorCode.none, None


def _applied(broker: BrokerServices, rec: TopicRecord) -> None:
    state = broker.topics.get(rec.name)
    if state is not None and state.topic_id == rec.topic_id:
        state.record = rec


def describe_cluster(broker: BrokerServices, header: RequestHeader, frame: memoryview) -> Buffers:
    """The listed brokers (live and draining); from v2 (KIP-1073), when asked, also every
    other registered broker (fenced, or its lease run out), with ``is_fenced``."""
    req = decode(header, frame)
    endpoint_type = int(getattr(req, "endpoint_type", BROKERS_ENDPOINT))
    if endpoint_type != BROKERS_ENDPOINT:  # as Kafka's brokers answer (no controllers here)
        if endpoint_type == CONTROLLERS_ENDPOINT:
            code, what = ErrorCode.mismatched_endpoint_type, "an endpoint of type BROKER"
        else:
            code, what = ErrorCode.unsupported_endpoint_type, "no such endpoint type"
        return respond(header, {"throttle_time": 0, "error_code": code,
                                "error_message": f"endpoint type {endpoint_type}: {what}",
                                "endpoint_type": BROKERS_ENDPOINT, "cluster_id": "",
                                "controller_id": -1, "brokers": [],
                                "cluster_authorized_operations": NOT_REQUESTED_OPS})  # fmt: skip
    shown = broker.listed_brokers()
    listed = {b.broker_id for b in shown}
    if getattr(req, "include_fenced_brokers", False):
        shown = sorted([*shown, *(b for b in broker.registered_brokers()
                                  if b.broker_id not in listed)],
                       key=lambda b: b.broker_id)  # fmt: skip
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
                    "is_fenced": b.broker_id not in listed,
                    **broker_endpoint_fields(broker, header, b),
                }
                for b in shown
            ],
            "cluster_authorized_operations": _cluster_operations(
                broker, header, bool(getattr(req, "include_cluster_authorized_operations", False))
            ),
        },
    )


def _cluster_operations(broker: BrokerServices, header: RequestHeader, requested: bool) -> int:
    """The cluster's authorized operations when asked: 0 without Describe on the cluster."""
    ops = authorized_operations(broker, header, acl.CLUSTER, acl.CLUSTER_NAME, requested)
    if requested and not ops & (1 << acl.DESCRIBE):
        return 0
    return ops
