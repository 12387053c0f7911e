"""Move a partition's leadership to another broker: what the reassignment Lambda (and the
balancer) calls. It asks any broker with Kafka's own AlterPartitionReassignments; the current
leader stops accepting, commits and hands over with leader_epoch + 1. No data is copied, so
the time does not grow with the partition's size."""

from __future__ import annotations

import time
from dataclasses import dataclass

from kio.index import load_request_schema

from ..protocol.codec import shape


@dataclass(frozen=True, slots=True)
class ReassignmentResult:
    topic: str
    partition: int
    target: int
    error_code: int
    error_message: str | None
    seconds: float

    @property
    def ok(self) -> bool:
        return self.error_code == 0


def reassign(
    bootstrap: str, topic: str, partition: int, target: int, timeout_s: float = 15.0
) -> ReassignmentResult:
    from ..tools.kafka_client import Connection, parse_address

    host, port = parse_address(bootstrap.split(",")[0])
    started = time.monotonic()
    conn = Connection(host, port, client_id="reassignment", timeout=timeout_s)
    try:
        body = {
            "timeout": int(timeout_s * 1000),
            "topics": [
                {
                    "name": topic,
                    "partitions": [{"partition_index": partition, "replicas": [target]}],
                }
            ],
        }
        resp = conn.send(shape(load_request_schema(45, 0), body))
    finally:
        conn.close()
    p = resp.responses[0].partitions[0]
    return ReassignmentResult(
        topic, partition, target, int(p.error_code), p.error_message, time.monotonic() - started
    )
