"""Request/response framing: size prefix, request header, response header.

Pure functions over bytes. The server hands a whole frame (without its 4-byte size) here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cache
from typing import Any

from kio.index import UnknownAPIKey, UnknownEntity, load_request_schema

from broker_service.protocol.primitives import ByteReader, ProtocolError

_HDR = struct.Struct(">hhi")
_SIZE = struct.Struct(">i")
API_VERSIONS_KEY = 18


@dataclass(slots=True)
class RequestHeader:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body_offset: int
    flexible: bool
    client_host: str = ""  # filled in by the server (the peer's address), not on the wire
    session: Any = None  # the server's per-connection security session (security/sasl.py)
    throttle_ms: int = 0  # quota throttle the response reports (set by the server)


@cache
def is_flexible(api_key: int, api_version: int) -> bool:
    """Whether (api_key, version) uses flexible encoding (request header v2, response v1)."""
    try:
        return bool(load_request_schema(api_key, api_version).__flexible__)
    except (UnknownAPIKey, UnknownEntity):
        return False


def peek_ids(frame: memoryview | bytes) -> tuple[int, int, int]:
    """api_key, api_version and correlation_id: readable even when the rest is garbage."""
    if len(frame) < 8:
        raise ProtocolError("frame shorter than a request header")
    k, v, c = _HDR.unpack_from(frame, 0)
    return int(k), int(v), int(c)


def parse_request_header(frame: memoryview | bytes) -> RequestHeader:
    api_key, api_version, correlation_id = peek_ids(frame)
    r = ByteReader(frame, 8)
    client_id = r.string(False)  # client_id is a legacy string even in header v2
    flexible = is_flexible(api_key, api_version)
    # ApiVersions requests may arrive in a version newer than we know; its header is v2 from
    # v3 on, and is_flexible covers the versions kio knows.
    if flexible:
        r.skip_tagged_fields()
    return RequestHeader(api_key, api_version, correlation_id, client_id, r.pos, flexible)


def response_header(correlation_id: int, api_key: int, api_version: int) -> bytes:
    """Response header bytes; ApiVersions always answers with header v0 (KIP-511)."""
    if api_key != API_VERSIONS_KEY and is_flexible(api_key, api_version):
        return struct.pack(">ib", correlation_id, 0)
    return struct.pack(">i", correlation_id)


def size_prefix(n: int) -> bytes:
    return _SIZE.pack(n)
