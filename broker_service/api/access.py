"""What handlers ask about the client: may it do this (ACLs), and which endpoints to give it.

Requests whose only answer to a refusal is a top-level error are refused here, centrally, by
``refuse_whole_request`` (called by the connection before the handler); handlers with
per-resource errors call ``allowed`` for each resource.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from broker_service.api.base import Buffers, respond
from broker_service.metadata.records import BrokerRecord
from broker_service.protocol.frames import RequestHeader
from broker_service.security import acl

if TYPE_CHECKING:
    from broker_service.api.services import BrokerServices

CLUSTER_AUTHORIZATION_FAILED = ErrorCode.cluster_authorization_failed
TOPIC_AUTHORIZATION_FAILED = ErrorCode.topic_authorization_failed
GROUP_AUTHORIZATION_FAILED = ErrorCode.group_authorization_failed
TRANSACTIONAL_ID_AUTHORIZATION_FAILED = ErrorCode.transactional_id_authorization_failed

# API key -> the cluster operation it needs, for APIs answered with one top-level error.
CLUSTER_APIS: dict[int, int] = {
    29: acl.DESCRIBE,  # DescribeAcls
    35: acl.DESCRIBE,  # DescribeLogDirs
    43: acl.ALTER,  # ElectLeaders
    45: acl.ALTER,  # AlterPartitionReassignments
    46: acl.DESCRIBE,  # ListPartitionReassignments
    48: acl.DESCRIBE_CONFIGS,  # DescribeClientQuotas
    50: acl.DESCRIBE,  # DescribeUserScramCredentials
}  # not DescribeCluster: a broker answers it to anyone (only its authorized ops need Describe)


def allowed(
    broker: BrokerServices, header: RequestHeader, operation: int, rtype: int, name: str
) -> bool:
    authorizer = broker.security.authorizer
    session = header.session
    if not authorizer.enabled or session is None:
        return True
    return authorizer.authorize(session.principal, session.client_host, operation, rtype, name)


def allowed_topic(
    broker: BrokerServices, header: RequestHeader, operation: int, topic: str
) -> bool:
    return allowed(broker, header, operation, acl.TOPIC, topic)


def allowed_group(
    broker: BrokerServices, header: RequestHeader, operation: int, group: str
) -> bool:
    return allowed(broker, header, operation, acl.GROUP, group)


def allowed_cluster(broker: BrokerServices, header: RequestHeader, operation: int) -> bool:
    return allowed(broker, header, operation, acl.CLUSTER, acl.CLUSTER_NAME)


def allowed_any_topic(broker: BrokerServices, header: RequestHeader, operation: int) -> bool:
    authorizer = broker.security.authorizer
    session = header.session
    if not authorizer.enabled or session is None:
        return True
    return authorizer.authorize_any(session.principal, session.client_host, operation, acl.TOPIC)


def may_create_topic(broker: BrokerServices, header: RequestHeader, topic: str) -> bool:
    return allowed_cluster(broker, header, acl.CREATE) or allowed_topic(
        broker, header, acl.CREATE, topic
    )


def authorized_operations(
    broker: BrokerServices, header: RequestHeader, rtype: int, name: str, requested: bool
) -> int:
    """``*_authorized_operations`` of a response: the bit field when asked for."""
    from broker_service.api.base import NOT_REQUESTED_OPS

    if not requested:
        return NOT_REQUESTED_OPS
    session = header.session
    principal = session.principal if session is not None else "User:ANONYMOUS"
    host = session.client_host if session is not None else ""
    a = broker.security.authorizer
    if not a.enabled:
        return sum(1 << op for op in acl.SUPPORTED_OPERATIONS.get(rtype, ()))
    return a.authorized_operations(principal, host, rtype, name)


def refuse_whole_request(broker: BrokerServices, header: RequestHeader) -> Buffers | None:
    op = CLUSTER_APIS.get(header.api_key)
    if op is None or allowed_cluster(broker, header, op):
        return None
    return respond(
        header,
        {
            "throttle_time": 0,
            "error_code": CLUSTER_AUTHORIZATION_FAILED,
            "error_message": "Cluster authorization failed.",
        },
    )


def endpoint(broker: BrokerServices, header: RequestHeader, b: BrokerRecord) -> tuple[str, int]:
    """Broker ``b``'s endpoint on the listener this client connected to."""
    session = header.session
    return broker.security.endpoint(b, session.listener.name if session is not None else None)


def broker_endpoint_fields(
    broker: BrokerServices, header: RequestHeader, b: BrokerRecord
) -> dict[str, Any]:
    host, port = endpoint(broker, header, b)
    return {"host": host, "port": port}


def require_group(
    broker: BrokerServices, header: RequestHeader, operation: int, group: str
) -> None:
    """Raise the group coordinator's GroupError(GROUP_AUTHORIZATION_FAILED) if refused."""
    from broker_service.kafka.groups.errors import GroupError

    if not allowed_group(broker, header, operation, group):
        raise GroupError(GROUP_AUTHORIZATION_FAILED)


def refuse_produce(
    broker: BrokerServices, header: RequestHeader, acks: int, transactional_id: str | None
) -> ErrorCode | None:
    """The error every partition of a Produce request gets, if the whole request is refused."""
    if acks not in (-1, 0, 1):
        return ErrorCode.invalid_required_acks
    if transactional_id is not None and not allowed(
        broker, header, acl.WRITE, acl.TRANSACTIONAL_ID, transactional_id
    ):
        return TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    return None
