"""DynamoDB implementation of the MetadataStore (cloud mode): one mixin per domain over a
shared client (``base.py``), composed here. Item shapes, the object-commit protocol and its
failure modes are in ``docs/DYNAMODB.md``. Same contract as ``SqliteMetadataStore``:

- an object commit is one ``TransactWriteItems`` whose first item is a ``ConditionCheck`` on
  the broker item (``epoch == mine AND state IN (ACTIVE, DRAINING)``), so a fenced broker
  never commits; fencing, lease renewal and partition moves are conditional single-item
  writes (compare-and-set on the epoch / leader epoch);
- the object item (with all its ranges packed into binary ``part`` items) is the source of
  truth; the per-stream range items that readers query are written in the same transaction
  when everything fits in 100 items, otherwise right after it behind a ``PENDING`` marker
  that readers merge (and that a later ``register_broker`` rolls forward after a crash);
- counters (stream ids, producer ids) are atomic ``UpdateItem ... ADD``; topic creation is a
  conditional put; every query is strongly consistent and paginated.
"""

from __future__ import annotations

from broker_service.metadata.dynamodb.brokers import DynamoBrokers
from broker_service.metadata.dynamodb.compaction import DynamoCompaction
from broker_service.metadata.dynamodb.groups import DynamoGroups
from broker_service.metadata.dynamodb.producers import DynamoProducers
from broker_service.metadata.dynamodb.ranges import (
    MAX_RANGES_PER_OBJECT,
    RANGES_PER_PART,
    pack_ranges,
    unpack_ranges,
)
from broker_service.metadata.dynamodb.security import DynamoSecurity
from broker_service.metadata.dynamodb.streams import DynamoStreams
from broker_service.metadata.dynamodb.topics import DynamoTopics
from broker_service.metadata.dynamodb.txns import DynamoTxns
from broker_service.metadata.store import MetadataStore

__all__ = [
    "MAX_RANGES_PER_OBJECT",
    "RANGES_PER_PART",
    "DynamoDbMetadataStore",
    "pack_ranges",
    "unpack_ranges",
]


class DynamoDbMetadataStore(
    DynamoBrokers,
    DynamoTopics,
    DynamoStreams,
    DynamoProducers,
    DynamoGroups,
    DynamoTxns,
    DynamoCompaction,
    DynamoSecurity,
    MetadataStore,
):
    """All cluster metadata in one DynamoDB table (``DynamoDbMetadataStore(table)``)."""
