"""Move a partition's leadership to another broker: what the reassignment Lambda (and the
balancer) calls. It asks any broker with Kafka's own AlterPartitionReassignments; the current
leader stops accepting, commits and hands over with leader_epoch + 1. No data is copied, so
the time does not grow with the partition's size."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kio.index import load_request_schema

from broker_service.protocol.codec import shape

if TYPE_CHECKING:
    from broker_service.security.client import ClientSecurity

UNAUTHENTICATED_HINT = (
    "a SASL listener closes connections that have not authenticated: give reassign() a "
    "ClientSecurity (the control functions read KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM "
    "and ADMIN_SECRET_ARN)"
)


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
    bootstrap: str,
    topic: str,
    partition: int,
    target: int,
    timeout_s: float = 15.0,
    security: ClientSecurity | None = None,
) -> ReassignmentResult:
    """``security``: how to reach a TLS / SASL listener; None keeps the process default
    (``kafka_client.set_default_security``, PLAINTEXT unless a broker set it)."""
    from broker_service.control.kafka_client import Connection, KafkaClientError, parse_address

    host, port = parse_address(bootstrap.split(",")[0])
    started = time.monotonic()
    conn = Connection(host, port, client_id="reassignment", timeout=timeout_s, security=security)
    sasl = security is not None and security.protocol.startswith("SASL_")
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
        try:
            resp = conn.send(shape(load_request_schema(45, 0), body))
        except KafkaClientError as exc:
            if sasl or "closed the connection" not in str(exc):
                raise
            context = f"AlterPartitionReassignments for {topic}-{partition}"
            raise KafkaClientError(f"{context}: {exc} ({UNAUTHENTICATED_HINT})") from None
    finally:
        conn.close()
    p = resp.responses[0].partitions[0]
    return ReassignmentResult(
        topic, partition, target, int(p.error_code), p.error_message, time.monotonic() - started
    )
