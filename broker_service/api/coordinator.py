"""FindCoordinator. A group's coordinator is the leader of its __consumer_offsets partition,
as in Kafka (the topic is created on first use); a transactional id's is a stable hash of the
id over the live brokers (``Broker.coordinator_for``). Group APIs sent to another broker
answer NOT_COORDINATOR and clients ask again. librdkafka also keys its LZ4 support on this API
being advertised."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from broker_service.api.access import (
    GROUP_AUTHORIZATION_FAILED,
    TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    allowed,
    endpoint,
)
from broker_service.api.base import Buffers, decode, respond
from broker_service.protocol.frames import RequestHeader
from broker_service.security import acl

if TYPE_CHECKING:
    from broker_service.api.services import BrokerServices


def handle(broker: BrokerServices, header: RequestHeader, frame: memoryview) -> Awaitable[Buffers]:
    return _find(broker, header, decode(header, frame))


async def _find(broker: BrokerServices, header: RequestHeader, req: Any) -> Buffers:
    await broker.refresh_live()  # every broker answers from the store's current view

    txn = (req.key_type if header.api_version >= 1 else 0) == 1
    if not txn:
        await broker.ensure_offsets_topic()

    def entry(key: str) -> dict[str, Any]:
        rtype = acl.TRANSACTIONAL_ID if txn else acl.GROUP
        if not allowed(broker, header, acl.DESCRIBE, rtype, key):
            code = TRANSACTIONAL_ID_AUTHORIZATION_FAILED if txn else GROUP_AUTHORIZATION_FAILED
            return {"node_id": -1, "host": "", "port": -1, "error_code": code,
                    "error_message": None}  # fmt: skip
        b = broker.coordinator_for(key) if txn else broker.group_coordinator(key)
        if b is None:
            return {"node_id": -1, "host": "", "port": -1, "error_message": None,
                    "error_code": ErrorCode.coordinator_not_available}  # fmt: skip
        host, port = endpoint(broker, header, b)
        return {
            "node_id": b.broker_id,
            "host": host,
            "port": port,
            "error_code": 0,
            "error_message": None,
        }

    if header.api_version >= 4:
        coordinators = [{"key": k, **entry(k)} for k in req.coordinator_keys]
        return respond(header, {"throttle_time": 0, "coordinators": coordinators})
    return respond(header, {"throttle_time": 0, **entry(req.key)})
