"""What a handler is: (broker, request header, frame) -> response body buffers.

Requests of one connection take effect in the order they were sent (Kafka's guarantee), so
what a handler returns says when its effects are done:
- the buffers, or None when no response is sent (acks=0): done, answered at once;
- ``Later(awaitable)``: done (offsets assigned, state changed), but the answer waits, e.g. for
  durability (produce) or for data (a fetch long-poll); the next request may start meanwhile;
- an awaitable (a coroutine): the effects are still under way (an offset commit writing the
  metadata store); the connection starts nothing else until it finishes, and its result is
  one of the above.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from broker_service.protocol.codec import decode_request, encode_response
from broker_service.protocol.frames import RequestHeader

if TYPE_CHECKING:
    from broker_service.api.services import BrokerServices

Buffers = list[memoryview | bytes]


@dataclass(frozen=True, slots=True)
class Later:
    """Effects done; the response comes when ``response`` resolves. Cancelling ``response``
    (the client went away) must undo nothing: it only observes."""

    response: Awaitable[Buffers]


Outcome = Buffers | Later | None
Result = Outcome | Awaitable[Outcome]
Handler = Callable[["BrokerServices", RequestHeader, memoryview], Result]

NOT_REQUESTED_OPS = -(2**31)  # authorized_operations when the client did not ask


@dataclass(frozen=True, slots=True)
class Api:
    key: int
    name: str
    min_version: int
    max_version: int
    handler: Handler
    # Lowest version told to clients in ApiVersions, when lower than what is served: old
    # librdkafka (e.g. Debian's kcat) only compresses with gzip/snappy/lz4 when Produce v0-v2
    # are advertised; like Apache Kafka 4.0 (KAFKA-18659) we advertise and refuse them.
    advertised_min: int | None = None
    # served only between brokers (protocol/zone.py): never advertised in ApiVersions
    internal: bool = False


# API key -> its Api, filled in by api/__init__.py (ApiVersions reads it to answer)
APIS: dict[int, Api] = {}


def decode(header: RequestHeader, frame: memoryview) -> Any:
    return decode_request(header.api_key, header.api_version, frame, header.body_offset)


def respond(header: RequestHeader, data: dict[str, Any]) -> Buffers:
    return [encode_response(header.api_key, header.api_version, data)]
