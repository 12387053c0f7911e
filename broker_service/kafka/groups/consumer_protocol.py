"""The "consumer" embedded protocol: subscription and assignment bytes inside JoinGroup and
SyncGroup. The broker never needs them to run a classic group; it reads subscriptions for
OffsetDelete/ListGroups and writes assignments so DescribeGroups can show KIP-848 groups."""

from __future__ import annotations

import struct

from broker_service.protocol.primitives import ByteReader, ProtocolError, array_len, string


def decode_subscription(data: bytes) -> list[str]:
    """Topics of a ConsumerProtocolSubscription (any version); [] when unreadable."""
    try:
        r = ByteReader(data)
        r.i16()  # version
        return [t for t in (r.string(False) for _ in range(r.array_len(False))) if t]
    except ProtocolError:
        return []


def decode_assignment(data: bytes) -> dict[str, list[int]]:
    """topic -> partitions of a ConsumerProtocolAssignment; {} when unreadable."""
    try:
        r = ByteReader(data)
        r.i16()
        out: dict[str, list[int]] = {}
        for _ in range(r.array_len(False)):
            topic = r.string(False) or ""
            out[topic] = [r.i32() for _ in range(r.array_len(False))]
        return out
    except ProtocolError:
        return {}


def encode_assignment(assignment: dict[str, list[int]]) -> bytes:
    out = bytearray(struct.pack(">h", 0))
    out += array_len(len(assignment), False)
    for topic, parts in sorted(assignment.items()):
        out += string(topic, False)
        out += array_len(len(parts), False)
        out += b"".join(struct.pack(">i", p) for p in sorted(parts))
    out += struct.pack(">i", -1)  # user_data: null
    return bytes(out)


def encode_subscription(topics: list[str]) -> bytes:
    out = bytearray(struct.pack(">h", 0))
    out += array_len(len(topics), False)
    for t in sorted(topics):
        out += string(t, False)
    out += struct.pack(">i", -1)
    return bytes(out)


def decode_subscription_full(data: bytes) -> tuple[list[str], dict[str, set[int]], str | None]:
    """(topics, owned partitions (v1+), rack (v3+)) of a ConsumerProtocolSubscription; what
    a classic member tells a KIP-848 group about itself. Unreadable parts are empty."""
    topics: list[str] = []
    owned: dict[str, set[int]] = {}
    rack: str | None = None
    try:
        r = ByteReader(data)
        version = r.i16()
        topics = [t for t in (r.string(False) for _ in range(r.array_len(False))) if t]
        r.bytes_(False)  # user data
        if version >= 1:
            for _ in range(r.array_len(False)):
                topic = r.string(False) or ""
                parts = {r.i32() for _ in range(r.array_len(False))}
                if parts:
                    owned[topic] = parts
        if version >= 2:
            r.i32()  # generation id
        if version >= 3:
            rack = r.string(False)
    except ProtocolError:
        pass
    return topics, owned, rack
