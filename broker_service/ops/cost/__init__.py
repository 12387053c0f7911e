"""Cost model: this system on AWS next to Apache Kafka on EC2 + EBS (docs/COST.md)."""

from broker_service.ops.cost.model import (
    Assumptions,
    Estimate,
    KafkaAssumptions,
    LineItem,
    OursAssumptions,
    Workload,
    brokers_needed,
    kafka_brokers_needed,
    price_kafka,
    price_ours,
    wal_capacity_mbps,
    wal_object_bytes,
)
from broker_service.ops.cost.prices import PriceTable, load_prices

__all__ = [
    "Assumptions",
    "Estimate",
    "KafkaAssumptions",
    "LineItem",
    "OursAssumptions",
    "PriceTable",
    "Workload",
    "brokers_needed",
    "kafka_brokers_needed",
    "load_prices",
    "price_kafka",
    "price_ours",
    "wal_capacity_mbps",
    "wal_object_bytes",
]
