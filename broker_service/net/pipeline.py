"""What happens to a request frame, in one place: authentication -> API and version ->
quota -> ACL -> the handler (route). Each step either passes, answers, or closes.

The connection calls ``route`` for one frame at a time, in arrival order (see connection.py).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from broker_service.api import APIS, access, sasl
from broker_service.api.api_versions import UNSUPPORTED_VERSION, api_keys
from broker_service.api.base import Buffers, Later, Outcome, Result
from broker_service.protocol.codec import encode_response
from broker_service.protocol.fetch import build_fetch_response
from broker_service.protocol.frames import (
    API_VERSIONS_KEY,
    RequestHeader,
    parse_request_header,
    peek_ids,
)
from broker_service.protocol.primitives import ProtocolError
from broker_service.security.quotas import PRODUCER_BYTE_RATE
from broker_service.security.sasl import SecuritySession

RAW_TOKEN = -1  # api key of a bare SASL token (answered without a response header)
PRODUCE, FETCH = 0, 1


class Close(Exception):
    """The connection must close (Kafka closes on these rather than answer)."""


@dataclass(frozen=True, slots=True)
class Routed:
    correlation_id: int
    api_key: int
    api_version: int
    result: Result


class Channel(Protocol):
    """What the pipeline needs of a connection."""

    session: SecuritySession
    peer_host: str

    def mute(self, ms: int) -> None: ...


def route(broker: Any, channel: Channel, frame: memoryview) -> Routed:
    """Run one request frame through the pipeline; raises Close."""
    session = channel.session
    if session.raw_tokens:  # after SaslHandshake v0: a bare SASL token, no header
        return Routed(0, RAW_TOKEN, 0, sasl.raw_token(broker, session, bytes(frame)))
    try:
        api_key, version, correlation_id = peek_ids(frame)
        refusal = session.gate(api_key)  # authentication
        if refusal is not None:
            raise Close(refusal)
        api = APIS.get(api_key)
        if api is None:
            raise Close(f"unknown API key {api_key}")
        if not api.min_version <= version <= api.max_version:
            if api_key == API_VERSIONS_KEY:  # answered in v0, so any client can read it
                body = {"error_code": UNSUPPORTED_VERSION, "api_keys": api_keys()}
                return Routed(correlation_id, api_key, 0, [encode_response(18, 0, body)])
            raise Close(f"{api.name} v{version} is not supported")
        header = parse_request_header(frame)
    except ProtocolError as exc:
        raise Close(f"bad request ({exc})") from None
    header.client_host = channel.peer_host
    header.session = session
    quotas = broker.security.quotas
    if api_key == PRODUCE and quotas.active:
        header.throttle_ms = quotas.record(
            PRODUCER_BYTE_RATE, _user(session), header.client_id or "", len(frame),
            time.monotonic(),
        )  # fmt: skip
        if header.throttle_ms:
            channel.mute(header.throttle_ms)  # Kafka mutes the channel for the throttle time
    result: Result = access.refuse_whole_request(broker, header)  # ACL
    if result is None:
        try:
            result = api.handler(broker, header, frame)
        except ProtocolError as exc:
            raise Close(f"bad request ({exc})") from None
        if api_key == FETCH and quotas.active:
            result = _fetch_quota(broker, channel, header, result)
    return Routed(correlation_id, api_key, version, result)


def _user(session: SecuritySession) -> str:
    return session.principal.partition(":")[2]


async def _fetch_quota(
    broker: Any, channel: Channel, header: RequestHeader, result: Result
) -> Outcome:
    """Throttle a fetch response over the client's byte rate (the effects, none for a fetch,
    stay where the handler put them)."""
    outcome = await result if isinstance(result, Awaitable) else result
    if isinstance(outcome, Later):
        return Later(_throttled(broker, channel, header, outcome.response))
    assert outcome is not None
    return await _throttled(broker, channel, header, _ready(outcome))


async def _ready(bufs: Buffers) -> Buffers:
    return bufs


async def _throttled(
    broker: Any, channel: Channel, header: RequestHeader, response: Awaitable[Buffers]
) -> Buffers:
    bufs = await response
    nbytes = sum(len(b) for b in bufs)
    throttle, deliver = broker.security.quotas.record_fetch(
        _user(channel.session), header.client_id or "", nbytes, time.monotonic()
    )
    if not throttle:
        return bufs
    # Over the quota: the channel is muted for the throttle time, as Kafka does; a client
    # already over it gets an empty response (it fetches the same offsets again later).
    channel.mute(throttle)
    if deliver:
        return _with_fetch_throttle(bufs, throttle)
    return build_fetch_response(header.api_version, [], throttle_ms=throttle)


def _with_fetch_throttle(bufs: Buffers, throttle_ms: int) -> Buffers:
    """A Fetch response body with its throttle_time_ms (its first field, v1+) set."""
    first = bytearray(bufs[0])
    first[0:4] = throttle_ms.to_bytes(4, "big", signed=True)
    return [bytes(first), *bufs[1:]]


Router = Callable[[Any, Channel, memoryview], Routed]
