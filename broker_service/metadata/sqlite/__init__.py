"""SQLite implementation of the MetadataStore (embedded mode): one mixin per domain over a
shared connection (``base.py``), composed here."""

from __future__ import annotations

from broker_service.metadata.sqlite.base import SCHEMA
from broker_service.metadata.sqlite.brokers import SqliteBrokers
from broker_service.metadata.sqlite.compaction import SqliteCompaction
from broker_service.metadata.sqlite.groups import SqliteGroups
from broker_service.metadata.sqlite.producers import SqliteProducers
from broker_service.metadata.sqlite.security import SqliteSecurity
from broker_service.metadata.sqlite.streams import SqliteStreams
from broker_service.metadata.sqlite.topics import SqliteTopics
from broker_service.metadata.sqlite.txns import SqliteTxns
from broker_service.metadata.store import MetadataStore

__all__ = ["SCHEMA", "SqliteMetadataStore"]


class SqliteMetadataStore(
    SqliteBrokers,
    SqliteTopics,
    SqliteStreams,
    SqliteProducers,
    SqliteGroups,
    SqliteTxns,
    SqliteCompaction,
    SqliteSecurity,
    MetadataStore,
):
    """Every domain on one SQLite file (``SqliteMetadataStore(path)``)."""
