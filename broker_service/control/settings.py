"""What a control function is told through its environment (the CDK stacks set these)."""

from __future__ import annotations

from functools import cache, partial
from typing import Any
from urllib.parse import urlparse

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from broker_service.config.compaction import CompactionConfig
from broker_service.control.autoscaler import MB, AutoscalerPolicy
from broker_service.control.balancer import BalancerPolicy, Reassign
from broker_service.control.kafka_access import KafkaAccess
from broker_service.control.reassignment import reassign
from broker_service.control.sizing import BrokerCapacity
from broker_service.security.client import ClientSecurity


class ControlSettings(KafkaAccess, BaseSettings):
    """The one settings model of every control function's process (the four Lambdas).
    Env vars without prefix: TENANT, METADATA_TABLE, STORAGE_URI, METRICS_NAMESPACE,
    ECS_CLUSTER, ECS_SERVICE, MIN_BROKERS, MAX_BROKERS, PRODUCE_MBPS_PER_BROKER,
    CONSUME_MBPS_PER_BROKER, ... (the stacks compute the two capacities with control/sizing.py);
    how to reach the brokers (KafkaAccess: KAFKA_SECURITY_PROTOCOL, ...); compaction's knobs
    (COMPACTION_*)."""

    model_config = SettingsConfigDict(extra="ignore")

    compaction: CompactionConfig = Field(default_factory=CompactionConfig)

    tenant: str = "default"
    metadata_table: str = Field(description="DynamoDB table of the cluster's metadata")
    storage_uri: str | None = Field(None, description="s3://bucket/prefix of the cluster's data")
    metrics_namespace: str = Field("Kafka/local", description="the brokers' EMF namespace")
    ecs_cluster: str | None = None
    ecs_service: str | None = None
    min_brokers: int = Field(1, ge=0)
    max_brokers: int = Field(10, ge=1)
    produce_mbps_per_broker: float | None = Field(
        None, gt=0, description="produce MB/s one broker is sized for (default: sizing.py)"
    )
    consume_mbps_per_broker: float | None = Field(
        None, gt=0, description="consume MB/s one broker is sized for (default: sizing.py)"
    )
    powertools_service_name: str = "kafka-control"
    # tuning with defaults (not set by the stacks)
    scale_out_cooldown_s: float = 120.0
    scale_in_cooldown_s: float = 600.0
    autoscaler_window_s: float = 300.0
    balance_band: float = 0.10
    balance_min_mbps: float = Field(1.048576, description="mean MB/s below which load is ignored")
    balance_max_moves: int = 5
    balance_window_s: float = 300.0
    lease_grace_ms: int = 1000
    lease_stale_read_ms: int = Field(
        3000, gt=0, description="recovery sweep: a read of the brokers slower than this "
        "judges no lease (the store stalled; renewals may be queued behind it). Half the "
        "brokers' lease (BROKER_LEASE_MS, 6 s by default), as the brokers' own checks use",
    )
    arrival_timeout_s: float = Field(
        30.0, ge=0, description="balancer: how long to wait for a RUNNING task's broker"
    )

    def autoscaler_policy(self) -> AutoscalerPolicy:
        return AutoscalerPolicy(
            capacity=self.capacity(),
            min_brokers=self.min_brokers,
            max_brokers=self.max_brokers,
            scale_out_cooldown_s=self.scale_out_cooldown_s,
            scale_in_cooldown_s=self.scale_in_cooldown_s,
            window_s=self.autoscaler_window_s,
        )

    def capacity(self) -> BrokerCapacity:
        default = BrokerCapacity.for_vcpu()
        if self.produce_mbps_per_broker and not self.consume_mbps_per_broker:
            return BrokerCapacity.for_produce(self.produce_mbps_per_broker)
        return BrokerCapacity(self.produce_mbps_per_broker or default.produce_mbps,
                              self.consume_mbps_per_broker or default.consume_mbps)  # fmt: skip

    def balancer_policy(self) -> BalancerPolicy:
        return BalancerPolicy(
            band=self.balance_band,
            min_mean_bytes_per_s=self.balance_min_mbps * MB,
            max_moves=self.balance_max_moves,
            window_s=self.balance_window_s,
        )

    def object_store(self) -> Any:
        from broker_service.stream.objectstore.s3 import S3ObjectStore

        if not self.storage_uri:
            raise ValueError("STORAGE_URI is not set (s3://bucket/prefix)")
        url = urlparse(self.storage_uri)
        return S3ObjectStore(bucket=url.netloc, prefix=url.path.lstrip("/"))

    def metadata_store(self) -> Any:
        from broker_service.metadata.dynamodb import DynamoDbMetadataStore

        return DynamoDbMetadataStore(table=self.metadata_table)

    @property
    def bucket(self) -> str | None:
        return urlparse(self.storage_uri).netloc if self.storage_uri else None


@cache
def cold_start_security() -> ClientSecurity | None:
    """Read once per Lambda container (cold start): the secret is not fetched per event."""
    return ControlSettings().client_security()  # type: ignore[call-arg]  # from the environment


def secured_reassign() -> Reassign:
    """reassign() bound to this function's ClientSecurity (what balance() and autoscale()
    call for each move)."""
    return partial(reassign, security=cold_start_security())
