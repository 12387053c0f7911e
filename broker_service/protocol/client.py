"""The client side of the wire, sans-I/O: request frames out, response frames in.

Used by every Kafka client this package has: the brokers' async inter-broker RPC
(cluster/rpc.py) and the blocking client of the operator tools and control functions
(control/kafka_client.py). Responses are read with the bounds-checked schema reader.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from functools import cache
from typing import Any

from kio.index import load_response_schema

from broker_service.protocol.codec import encode_entity
from broker_service.protocol.frames import API_VERSIONS_KEY, is_flexible
from broker_service.protocol.primitives import ByteReader, ProtocolError
from broker_service.protocol.primitives import string as legacy_string
from broker_service.protocol.schema_reader import entity_reader

_HEADER = struct.Struct(">hhi")
_I32 = struct.Struct(">i")


def request_frame(entity: Any, correlation_id: int, client_id: str | None) -> bytes:
    """A kio request dataclass as a whole frame (size prefix, header v1/v2, body)."""
    api_key, version = int(entity.__api_key__), int(entity.__version__)
    header = _HEADER.pack(api_key, version, correlation_id) + legacy_string(client_id, False)
    if is_flexible(api_key, version):
        header += b"\x00"  # request header v2: no tagged fields
    payload = header + encode_entity(entity)
    return _I32.pack(len(payload)) + payload


def raw_request_frame(
    api_key: int, version: int, correlation_id: int, client_id: str | None, body: bytes
) -> bytes:
    """A request frame (header v1) around a body encoded elsewhere (the private
    inter-broker requests of protocol/zone.py)."""
    payload = _HEADER.pack(api_key, version, correlation_id) + legacy_string(client_id, False)
    payload += body
    return _I32.pack(len(payload)) + payload


def response_correlation_id(frame: bytes | memoryview) -> int:
    if len(frame) < 4:
        raise ProtocolError("response shorter than its header")
    return int(_I32.unpack_from(frame, 0)[0])


def decode_response(api_key: int, version: int, frame: bytes | memoryview) -> Any:
    """A response frame (without its size prefix) as kio's response dataclass."""
    reader = ByteReader(frame)
    reader.i32()  # correlation id
    if is_flexible(api_key, version) and api_key != API_VERSIONS_KEY:  # ApiVersions: v0 header
        reader.skip_tagged_fields()
    return _response_reader(api_key, version)(reader)


@cache
def _response_reader(api_key: int, version: int) -> Callable[[ByteReader], Any]:
    return entity_reader(load_response_schema(api_key, version))
