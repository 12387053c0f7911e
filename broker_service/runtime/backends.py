"""Build a broker from its configuration: which object store, metadata store and WAL.

The embedded default is a local directory + SQLite + file WAL under ``data_dir``; ``storage``,
``metadata`` and ``wal`` switch to S3, DynamoDB and the object WAL. AWS endpoints come from
the standard ``AWS_ENDPOINT_URL*`` variables, so LocalStack and moto server work unchanged.

Tests and chaos runs may wrap both stores in fault plans (latency, ambiguous errors) with the
``BROKER_FAULT_METADATA_*`` / ``BROKER_FAULT_OBJECTS_*`` settings (``broker_service/faults.py``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlparse

from broker_service.config import BrokerConfig
from broker_service.config.faults import FaultPlan
from broker_service.metadata import latency as metadata_faults
from broker_service.metadata.ports import MetadataPorts
from broker_service.metadata.store import MetadataStore
from broker_service.metrics import BrokerMetrics
from broker_service.runtime.broker import Broker
from broker_service.stream.objectstore import latency as object_faults
from broker_service.stream.objectstore.base import ObjectStore
from broker_service.stream.objectstore.counting import CountingObjectStore
from broker_service.stream.wal import FileWal, ObjectWal, Wal

log = logging.getLogger(__name__)


def object_store_for(config: BrokerConfig) -> ObjectStore:
    url = config.storage
    if url and url.startswith("s3://"):
        from broker_service.stream.objectstore.s3 import S3ObjectStore

        parsed = urlparse(url)
        return S3ObjectStore(bucket=parsed.netloc, prefix=parsed.path.lstrip("/"))
    from broker_service.stream.objectstore.fs import FsObjectStore

    path = Path(url.removeprefix("file://")) if url else config.data_dir / "objects"
    return FsObjectStore(path)


def metadata_store_for(config: BrokerConfig) -> MetadataStore:
    url = config.metadata
    if url and url.startswith("dynamodb://"):
        from broker_service.metadata.dynamodb import DynamoDbMetadataStore

        return DynamoDbMetadataStore(table=urlparse(url).netloc)
    from broker_service.metadata.sqlite import SqliteMetadataStore

    path = Path(url.removeprefix("sqlite://")) if url else config.data_dir / "metadata.sqlite"
    return SqliteMetadataStore(path)


def wal_for(config: BrokerConfig, objects: ObjectStore, ports: MetadataPorts) -> Wal:
    if config.wal == "object":
        return ObjectWal(
            objects,
            ports,
            flush_interval_ms=config.effective_wal_flush_ms,
            flush_bytes=config.effective_wal_flush_bytes,
            block_bytes=config.object_block_bytes,
            max_in_flight=config.wal_max_in_flight,
        )
    return FileWal(
        config.data_dir / "wal" / f"broker-{config.node_id}",
        flush_interval_ms=config.effective_wal_flush_ms,
        flush_bytes=config.effective_wal_flush_bytes,
        segment_bytes=config.wal_segment_bytes,
    )


def build_broker(config: BrokerConfig) -> Broker:
    metrics = BrokerMetrics(config.node_id)
    object_plan, metadata_plan = FaultPlan.from_env("OBJECTS"), FaultPlan.from_env("METADATA")
    for kind, plan in (("object store", object_plan), ("metadata store", metadata_plan)):
        if plan is not None:
            log.warning("fault injection on the %s (a test/chaos setting): %s", kind, plan)
    objects = CountingObjectStore(
        object_faults.with_faults(object_store_for(config), object_plan), metrics
    )
    metadata = metadata_faults.with_faults(metadata_store_for(config), metadata_plan)
    ports = MetadataPorts(metadata, workers=config.metadata_threads)
    wal = wal_for(config, objects, ports)
    return Broker(config, metadata, objects, wal, metrics, ports)
