"""Metadata responses whose topic entries are encoded once and reused between requests.

A client asking for every topic of a 10,000-topic cluster costs ~350 ms of CPU to shape and
encode, on the event loop, for bytes that rarely change. Each topic's encoded entry is kept,
keyed by the entry itself (its repr: name, id, error, every partition's leader and epoch...),
so a changed topic is simply a new key: no invalidation to forget. The response is the
encoding of everything but the topics (cheap) with the topics array spliced in where it
belongs.

Layout (Kafka's MetadataResponse): throttle_time_ms (v3+), brokers, cluster_id (v2+),
controller_id (v1+), topics, cluster_authorized_operations (v8-v10), tagged fields (v9+).
The topics array is therefore followed by a suffix of known length.
"""

from __future__ import annotations

import io
from dataclasses import fields
from functools import cache
from typing import Any

from kio.index import load_response_schema

from broker_service.protocol.codec import _field_plan, _writer, encode_response, shape

METADATA = 3
FIRST_FLEXIBLE = 9


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _array_length(version: int, n: int) -> bytes:
    return _uvarint(n + 1) if version >= FIRST_FLEXIBLE else n.to_bytes(4, "big", signed=True)


@cache
def _layout(version: int) -> tuple[type, int]:
    """The version's topic entity class and the length of what follows the topics array."""
    cls = load_response_schema(METADATA, version)
    topic_cls = next(nested for f, _, nested, _, _ in _field_plan(cls) if f.name == "topics")
    assert topic_cls is not None
    names = {f.name for f in fields(cls)}
    suffix = (4 if "cluster_authorized_operations" in names else 0) + (
        1 if version >= FIRST_FLEXIBLE else 0  # the response's empty tagged fields
    )
    return topic_cls, suffix


class MetadataResponseEncoder:
    """Encodes Metadata responses (the ``encode_response`` dict form), reusing each topic
    entry's bytes. Bounded: the cache starts over when it outgrows the entries in use."""

    def __init__(self, slack: int = 1000) -> None:
        self._topics: dict[tuple[int, str], bytes] = {}
        self._slack = slack

    def encode(self, version: int, data: dict[str, Any]) -> bytes:
        topics = data.get("topics") or []
        if len(topics) < 8:  # not worth a cache entry
            return encode_response(METADATA, version, data)
        topic_cls, suffix = _layout(version)
        head = encode_response(METADATA, version, {**data, "topics": []})
        empty = _array_length(version, 0)
        cut = len(head) - suffix - len(empty)
        assert head[cut : cut + len(empty)] == empty, "unexpected Metadata response layout"
        if len(self._topics) > 2 * len(topics) + self._slack:
            self._topics.clear()
        out = io.BytesIO()
        out.write(head[:cut])
        out.write(_array_length(version, len(topics)))
        write = _writer(topic_cls)
        for entry in topics:
            key = (version, repr(entry))  # the entry's content: C-fast, and exact
            encoded = self._topics.get(key)
            if encoded is None:
                buf = io.BytesIO()
                write(buf, shape(topic_cls, entry))
                encoded = self._topics[key] = buf.getvalue()
            out.write(encoded)
        out.write(head[cut + len(empty) :])
        return out.getvalue()
