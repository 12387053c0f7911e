"""The cached Metadata encoder writes exactly the bytes the plain codec writes, for every
version, on a first (cold) and a second (cached) call, and a changed topic is re-encoded."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from broker_service.protocol.codec import encode_response
from broker_service.protocol.metadata_encoding import MetadataResponseEncoder

IDS = [uuid.UUID(int=i + 1) for i in range(40)]


def _topic(i: int, leader: int = 1, epoch: int = 0, error: int = 0) -> dict[str, Any]:
    return {
        "error_code": error,
        "name": f"topic-{i}",
        "topic_id": IDS[i],
        "is_internal": i == 0,
        "partitions": [
            {"error_code": 0, "partition_index": p, "leader_id": leader, "leader_epoch": epoch,
             "replica_nodes": [leader], "isr_nodes": [leader], "offline_replicas": []}
            for p in range(i % 4 + 1)
        ],  # fmt: skip
        "topic_authorized_operations": -2147483648 if i % 3 else 0b1111_1000,
    }


def _response(topics: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "throttle_time": 0,
        "brokers": [{"node_id": n, "host": f"h{n}", "port": 9092 + n, "rack": "r" if n else None}
                    for n in range(3)],  # fmt: skip
        "cluster_id": "cluster-x",
        "controller_id": 2,
        "topics": topics,
        "cluster_authorized_operations": 0b11110,
    }


@pytest.mark.parametrize("version", range(13))
def test_same_bytes_as_the_codec_cold_and_cached(version: int) -> None:
    enc = MetadataResponseEncoder()
    data = _response([_topic(i) for i in range(40)])
    want = encode_response(3, version, data)
    assert enc.encode(version, data) == want
    assert enc.encode(version, data) == want  # from the cache
    # a leader moves in one topic: that topic's bytes change, the rest are reused
    moved = _response([_topic(i, leader=2, epoch=5) if i == 7 else _topic(i) for i in range(40)])
    assert enc.encode(version, moved) == encode_response(3, version, moved) != want


def test_few_topics_and_no_topics() -> None:
    enc = MetadataResponseEncoder()
    for topics in ([], [_topic(1, error=3)]):
        data = _response(topics)
        assert enc.encode(12, data) == encode_response(3, 12, data)


def test_the_cache_stays_bounded() -> None:
    enc = MetadataResponseEncoder(slack=10)
    for epoch in range(50):  # every call a new leader epoch everywhere: all new entries
        data = _response([_topic(i, epoch=epoch) for i in range(40)])
        assert enc.encode(12, data) == encode_response(3, 12, data)
    assert len(enc._topics) <= 2 * 40 + 10 + 40
