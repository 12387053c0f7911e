"""The dispatch table: API key -> supported versions and handler.

Consumer groups and transactions register here when they arrive (their own modules).
"""

from __future__ import annotations

from . import (
    api_versions,
    configs,
    coordinator,
    fetch,
    list_offsets,
    metadata,
    produce,
    producer_ids,
    topics,
)
from .base import Api

APIS: dict[int, Api] = {
    a.key: a
    for a in [
        Api(0, "Produce", 3, 11, produce.handle, advertised_min=0),
        Api(1, "Fetch", 4, 16, fetch.handle),
        Api(2, "ListOffsets", 1, 7, list_offsets.handle),
        Api(3, "Metadata", 0, 12, metadata.handle),
        Api(10, "FindCoordinator", 0, 4, coordinator.handle),
        Api(18, "ApiVersions", 0, api_versions.MAX_VERSION, api_versions.handle),
        Api(19, "CreateTopics", 2, 7, topics.create_topics),
        Api(20, "DeleteTopics", 1, 6, topics.delete_topics),
        Api(22, "InitProducerId", 0, 4, producer_ids.handle),
        Api(32, "DescribeConfigs", 1, 4, configs.describe_configs),
        Api(37, "CreatePartitions", 0, 3, topics.create_partitions),
        Api(60, "DescribeCluster", 0, 1, configs.describe_cluster),
    ]
}
