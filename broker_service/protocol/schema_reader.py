"""Decode request bodies into kio's dataclasses with a bounds-checked pure-Python reader.

kio's schemas (generated from Kafka's JSON message specs) say what a request holds; this
module reads the bytes. kio 0.6's native reader reserves memory for whatever array length a
request claims, so one crafted 40-byte frame could abort the process, and it rejects unknown
tagged fields, which KIP-482 says must be ignored. Here every length is checked against the
bytes left before anything is allocated, and unknown tags are skipped.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable
from dataclasses import MISSING, fields
from functools import cache
from typing import Any

from kio.schema.errors import ErrorCode
from kio.serial._implicit_defaults import get_tagged_field_default
from kio.serial._introspect import EntityField, EntityTupleField, classify_field, is_optional

from broker_service.protocol.primitives import ByteReader, ProtocolError

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
Read = Callable[[ByteReader], Any]


def _nullable_uuid(r: ByteReader) -> uuid.UUID | None:
    u = r.uuid()
    return None if u.int == 0 else u


def _float64(r: ByteReader) -> float:
    import struct

    return float(struct.unpack(">d", bytes(r.raw(8)))[0])


def _scalar(kafka_type: str, flexible: bool, optional: bool) -> Read:
    if kafka_type == "string":

        def read_string(r: ByteReader) -> str | None:
            s = r.string(flexible)
            if s is None and not optional:
                raise ProtocolError("null in a non-nullable string")
            return s

        return read_string
    if kafka_type in ("bytes", "records"):

        def read_bytes(r: ByteReader) -> bytes | None:
            b = r.bytes_(flexible)
            if b is None:
                if not optional and kafka_type == "bytes":
                    raise ProtocolError("null in non-nullable bytes")
                return None
            return bytes(b)

        return read_bytes
    simple: dict[str, Read] = {
        "bool": lambda r: r.i8() != 0,
        "int8": ByteReader.i8,
        "int16": ByteReader.i16,
        "int32": ByteReader.i32,
        "int64": ByteReader.i64,
        "uint16": lambda r: r.i16() & 0xFFFF,
        "float64": _float64,
        "uuid": _nullable_uuid,
        "error_code": lambda r: ErrorCode(r.i16()),
        "timedelta_i32": lambda r: datetime.timedelta(milliseconds=r.i32()),
        "timedelta_i64": lambda r: datetime.timedelta(milliseconds=r.i64()),
        "datetime_i64": lambda r: (
            None if (ms := r.i64()) < 0 else _EPOCH + datetime.timedelta(milliseconds=ms)
        ),
    }
    try:
        return simple[kafka_type]
    except KeyError:
        raise ProtocolError(f"unsupported kafka type {kafka_type}") from None


def _array(item: Read, flexible: bool, optional: bool) -> Read:
    def read_array(r: ByteReader) -> tuple[Any, ...] | None:
        n = r.array_len(flexible)  # checked against the bytes left: no huge allocation
        if n < 0:
            if not optional:
                raise ProtocolError("null in a non-nullable array")
            return None
        return tuple(item(r) for _ in range(n))

    return read_array


@cache
def entity_reader(cls: type) -> Read:
    flexible = bool(cls.__flexible__)  # type: ignore[attr-defined]
    plain: list[tuple[str, Read]] = []
    tagged: dict[int, tuple[str, Read]] = {}
    tag_defaults: dict[str, Any] = {}
    for f in fields(cls):
        kind = classify_field(f)
        kafka_type = f.metadata.get("kafka_type", "")
        optional = is_optional(f)
        tag = f.metadata.get("tag")
        if isinstance(kind, EntityField | EntityTupleField):
            read = entity_reader(kind.type_)
        else:
            read = _scalar(kafka_type, flexible, optional and tag is None)
        if kind.is_array:
            read = _array(read, flexible, optional)
        elif isinstance(kind, EntityField) and optional:
            read = _nullable_entity(read)
        if tag is None:
            plain.append((f.name, read))
        else:
            tagged[int(tag)] = (f.name, read)
            tag_defaults[f.name] = (
                f.default if f.default is not MISSING else get_tagged_field_default(f)
            )

    def read_entity(r: ByteReader) -> Any:
        values = {name: read(r) for name, read in plain}
        if flexible:
            values.update(tag_defaults)
            for _ in range(r.uvarint()):
                tag = r.uvarint()
                size = r.uvarint()
                end = r.pos + size
                if end > r.end:
                    raise ProtocolError("tagged field runs past the frame")
                known = tagged.get(tag)
                if known is not None:
                    sub = ByteReader(r.buf[:end], r.pos)
                    values[known[0]] = known[1](sub)
                r.pos = end  # unknown tags are skipped (KIP-482)
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"invalid {cls.__name__}: {exc}") from exc

    return read_entity


def _nullable_entity(read: Read) -> Read:
    def read_nullable(r: ByteReader) -> Any:
        if r.i8() < 0:
            return None
        return read(r)

    return read_nullable
