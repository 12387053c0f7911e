"""Hand-written readers and writers for Kafka's wire primitives.

Used on the data path (Produce, Fetch) where kio's general entity machinery would cost too
much. Everything works on ``memoryview``/``bytes`` and never touches I/O.
"""

from __future__ import annotations

import struct
import uuid

_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")


class ProtocolError(ValueError):
    """The bytes do not form a valid Kafka message."""


class ByteReader:
    """A cursor over a buffer; every read checks bounds and raises ``ProtocolError``."""

    __slots__ = ("buf", "pos", "end")

    def __init__(self, buf: memoryview | bytes, pos: int = 0) -> None:
        self.buf = memoryview(buf) if not isinstance(buf, memoryview) else buf
        self.pos = pos
        self.end = len(self.buf)

    def _take(self, n: int) -> int:
        p = self.pos
        if n < 0 or p + n > self.end:
            raise ProtocolError(f"truncated: need {n} bytes at {p}, have {self.end - p}")
        self.pos = p + n
        return p

    def remaining(self) -> int:
        return self.end - self.pos

    def i8(self) -> int:
        return int(_I8.unpack_from(self.buf, self._take(1))[0])

    def i16(self) -> int:
        return int(_I16.unpack_from(self.buf, self._take(2))[0])

    def i32(self) -> int:
        return int(_I32.unpack_from(self.buf, self._take(4))[0])

    def i64(self) -> int:
        return int(_I64.unpack_from(self.buf, self._take(8))[0])

    def uuid(self) -> uuid.UUID:
        p = self._take(16)
        return uuid.UUID(bytes=bytes(self.buf[p : p + 16]))

    def uvarint(self) -> int:
        shift = 0
        result = 0
        while True:
            if self.pos >= self.end:
                raise ProtocolError("truncated varint")
            b = self.buf[self.pos]
            self.pos += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 63:
                raise ProtocolError("varint too long")

    def varint(self) -> int:
        v = self.uvarint()
        return (v >> 1) ^ -(v & 1)

    def raw(self, n: int) -> memoryview:
        p = self._take(n)
        return self.buf[p : p + n]

    def string(self, flexible: bool) -> str | None:
        n = self.uvarint() - 1 if flexible else self.i16()
        if n < 0:
            return None
        try:
            return bytes(self.raw(n)).decode()
        except UnicodeDecodeError as exc:
            raise ProtocolError("string is not UTF-8") from exc

    def bytes_(self, flexible: bool) -> memoryview | None:
        n = self.uvarint() - 1 if flexible else self.i32()
        if n < 0:
            return None
        return self.raw(n)

    def array_len(self, flexible: bool) -> int:
        n = self.uvarint() - 1 if flexible else self.i32()
        if n > self.remaining():
            raise ProtocolError(f"array length {n} exceeds the frame")
        return n

    def skip_tagged_fields(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()
            self.raw(self.uvarint())


def uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def varint(value: int) -> bytes:
    """A signed varint (zigzag), as record fields are written."""
    return uvarint((value << 1) ^ (value >> 63))


def string(value: str | None, flexible: bool) -> bytes:
    if value is None:
        return b"\x00" if flexible else b"\xff\xff"
    data = value.encode()
    return (uvarint(len(data) + 1) if flexible else _I16.pack(len(data))) + data


def array_len(n: int, flexible: bool) -> bytes:
    return uvarint(n + 1) if flexible else _I32.pack(n)


def bytes_len(n: int | None, flexible: bool) -> bytes:
    if n is None:
        return b"\x00" if flexible else b"\xff\xff\xff\xff"
    return uvarint(n + 1) if flexible else _I32.pack(n)


pack_i16 = _I16.pack
pack_i32 = _I32.pack
pack_i64 = _I64.pack
pack_u32 = _U32.pack
