"""ApiVersions: what this broker speaks. The table is built from the registered handlers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker_service.api.base import APIS, Buffers
from broker_service.protocol.codec import encode_response
from broker_service.protocol.frames import RequestHeader

if TYPE_CHECKING:
    from broker_service.api.services import BrokerServices

MAX_VERSION = 4
UNSUPPORTED_VERSION = 35


def api_keys() -> list[dict[str, int]]:
    return [
        {
            "api_key": a.key,
            "min_version": a.min_version if a.advertised_min is None else a.advertised_min,
            "max_version": a.max_version,
        }
        for a in sorted(APIS.values(), key=lambda a: a.key)
        if not a.internal
    ]


def handle(broker: BrokerServices, header: RequestHeader, frame: memoryview) -> Buffers:
    # The body is not needed (client software name/version are informational), and a client
    # asking a newer version than ours must still get an answer it can read: v0.
    if header.api_version > MAX_VERSION:
        return [encode_response(18, 0, {"error_code": UNSUPPORTED_VERSION, "api_keys": api_keys()})]
    return [
        encode_response(
            18, header.api_version, {"error_code": 0, "api_keys": api_keys(), "throttle_time": 0}
        )
    ]
