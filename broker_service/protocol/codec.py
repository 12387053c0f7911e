"""kio-backed codec for the control-plane APIs.

Handlers describe a response once, as plain dicts with Kafka's field names, and
``encode_response`` shapes it into the kio dataclass of the negotiated version: fields a
version lacks are dropped, fields the handler left out get their zero value. This keeps
handlers version-agnostic while kio (generated from Kafka's JSON schemas) does the bytes.
"""

from __future__ import annotations

import datetime
import io
import uuid
from dataclasses import MISSING, Field, fields
from functools import cache
from typing import Any

from kio.index import load_request_schema, load_response_schema
from kio.schema.errors import ErrorCode
from kio.serial import entity_writer
from kio.serial._introspect import EntityField, EntityTupleField, classify_field, is_optional

from broker_service.protocol.primitives import ByteReader
from broker_service.protocol.schema_reader import entity_reader

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_ZERO: dict[str, Any] = {
    "bool": False,
    "bytes": b"",
    "records": None,
    "error_code": ErrorCode.none,
    "float64": 0.0,
    "int8": 0,
    "int16": 0,
    "int32": 0,
    "int64": 0,
    "uint16": 0,
    "string": "",
    "timedelta_i32": datetime.timedelta(0),
    "timedelta_i64": datetime.timedelta(0),
    "uuid": uuid.UUID(int=0),
    "datetime_i64": None,
}


@cache
def _writer(cls: type) -> Any:
    return entity_writer(cls)


def decode_request(api_key: int, api_version: int, frame: memoryview | bytes, offset: int) -> Any:
    """Parse a request body into kio's dataclass; raise ProtocolError if malformed."""
    cls = _request_schema(api_key, api_version)
    return entity_reader(cls)(ByteReader(frame, offset))


@cache
def _request_schema(api_key: int, api_version: int) -> type:
    return load_request_schema(api_key, api_version)


@cache
def _field_plan(cls: type) -> tuple[tuple[Field[Any], str, type | None, bool, bool], ...]:
    plan = []
    for f in fields(cls):
        kind = classify_field(f)
        nested = kind.type_ if isinstance(kind, EntityField | EntityTupleField) else None
        nullable = is_optional(f) or "tag" in f.metadata
        plan.append((f, f.metadata.get("kafka_type", ""), nested, kind.is_array, nullable))
    return tuple(plan)


def _convert_scalar(kafka_type: str, value: Any) -> Any:
    if kafka_type == "error_code":
        return ErrorCode(int(value))
    if kafka_type in ("timedelta_i32", "timedelta_i64") and isinstance(value, int):
        return datetime.timedelta(milliseconds=value)
    if kafka_type == "datetime_i64" and isinstance(value, int):
        return None if value < 0 else _EPOCH + datetime.timedelta(milliseconds=value)
    return value


def shape(cls: type, data: dict[str, Any]) -> Any:
    """Build an instance of kio dataclass ``cls`` from a dict, tolerant of version drift:
    a None given for a field this version cannot null gets the field's zero value."""
    kwargs: dict[str, Any] = {}
    for f, kafka_type, nested, is_array, nullable in _field_plan(cls):
        if f.name in data and (data[f.name] is not None or nullable):
            value = data[f.name]
            if nested is not None:
                if is_array:
                    value = None if value is None else tuple(shape(nested, v) for v in value)
                else:
                    value = None if value is None else shape(nested, value)
            elif is_array:
                value = (
                    None if value is None else tuple(_convert_scalar(kafka_type, v) for v in value)
                )
            else:
                value = _convert_scalar(kafka_type, value)
            kwargs[f.name] = value
        elif f.default is not MISSING or f.default_factory is not MISSING:
            continue
        elif is_array:
            kwargs[f.name] = ()
        elif nested is not None:
            kwargs[f.name] = shape(nested, {})
        else:
            kwargs[f.name] = _ZERO.get(kafka_type, 0)
    return cls(**kwargs)


def encode_response(api_key: int, api_version: int, data: dict[str, Any]) -> bytes:
    cls = load_response_schema(api_key, api_version)
    buf = io.BytesIO()
    _writer(cls)(buf, shape(cls, data))
    return buf.getvalue()


def encode_entity(entity: Any) -> bytes:
    buf = io.BytesIO()
    _writer(type(entity))(buf, entity)  # type: ignore[arg-type]
    return buf.getvalue()
