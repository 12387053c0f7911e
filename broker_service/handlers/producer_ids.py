"""InitProducerId for idempotent producers (kafka-python enables idempotence by default).

Producer ids come from blocks reserved in the metadata store, so they are unique across
brokers and restarts. Sequence checking and transactions are the txn issue's work; a
transactional id is refused here rather than half-served.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kio.schema.errors import ErrorCode

from ..protocol.frames import RequestHeader
from .base import Buffers, decode, respond

if TYPE_CHECKING:
    from ..broker import Broker


def handle(broker: Broker, header: RequestHeader, frame: memoryview) -> Buffers:
    req = decode(header, frame)
    if req.transactional_id is not None:
        return respond(
            header,
            {
                "throttle_time": 0,
                "error_code": ErrorCode.coordinator_not_available,
                "producer_id": -1,
                "producer_epoch": -1,
            },
        )
    return respond(
        header,
        {
            "throttle_time": 0,
            "error_code": 0,
            "producer_id": broker.producer_ids.next(),
            "producer_epoch": 0,
        },
    )
