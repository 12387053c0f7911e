"""FindCoordinator: this broker coordinates every group and transactional id for now.

The groups and txn issues add the coordinators themselves; placement across brokers comes with
the cluster issue. librdkafka also keys its LZ4 support on this API being advertised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..protocol.frames import RequestHeader
from .base import Buffers, decode, respond

if TYPE_CHECKING:
    from ..broker import Broker


def handle(broker: Broker, header: RequestHeader, frame: memoryview) -> Buffers:
    req = decode(header, frame)
    host, port = broker.config.advertised
    me: dict[str, Any] = {
        "node_id": broker.node_id,
        "host": host,
        "port": port,
        "error_code": 0,
        "error_message": None,
    }
    if header.api_version >= 4:
        coordinators = [{"key": k, **me} for k in req.coordinator_keys]
        return respond(header, {"throttle_time": 0, "coordinators": coordinators})
    return respond(header, {"throttle_time": 0, **me})
