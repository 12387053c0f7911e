"""FindCoordinator: a stable hash of the key over the live brokers (``Broker.coordinator_for``);
group APIs sent to another broker answer NOT_COORDINATOR and clients ask again. librdkafka
also keys its LZ4 support on this API being advertised."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from ..protocol.frames import RequestHeader
from .base import Buffers, decode, respond

if TYPE_CHECKING:
    from ..broker import Broker


def handle(broker: Broker, header: RequestHeader, frame: memoryview) -> Awaitable[Buffers]:
    return _find(broker, header, decode(header, frame))


async def _find(broker: Broker, header: RequestHeader, req: Any) -> Buffers:
    await broker.refresh_live()  # every broker answers from the store's current view

    def entry(key: str) -> dict[str, Any]:
        b = broker.coordinator_for(key)
        return {
            "node_id": b.broker_id,
            "host": b.host,
            "port": b.port,
            "error_code": 0,
            "error_message": None,
        }

    if header.api_version >= 4:
        coordinators = [{"key": k, **entry(k)} for k in req.coordinator_keys]
        return respond(header, {"throttle_time": 0, "coordinators": coordinators})
    return respond(header, {"throttle_time": 0, **entry(req.key)})
