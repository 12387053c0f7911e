"""The dispatch table: API key -> supported versions and handler.

Consumer groups and transactions register here when they arrive (their own modules).
"""

from __future__ import annotations

from broker_service.api import (
    api_versions,
    configs,
    consumer_groups,
    coordinator,
    delete_records,
    fetch,
    groups,
    leader_epoch,
    list_offsets,
    log_dirs,
    metadata,
    offsets,
    produce,
    reassignment,
    replica_state,
    sasl,
    security_admin,
    topics,
    transactions,
    txn_admin,
    zone_forward,
)
from broker_service.api.base import APIS, Api
from broker_service.protocol.zone import REPLICA_STATE, ZONE_FORWARD_PRODUCE

APIS.update(
    (a.key, a)
    for a in [
        Api(0, "Produce", 3, 11, produce.handle, advertised_min=0),
        Api(1, "Fetch", 4, 17, fetch.handle),
        Api(2, "ListOffsets", 1, 9, list_offsets.handle),
        Api(3, "Metadata", 0, 12, metadata.handle),
        Api(8, "OffsetCommit", 2, 9, offsets.offset_commit),
        Api(9, "OffsetFetch", 1, 9, offsets.offset_fetch),
        Api(10, "FindCoordinator", 0, 6, coordinator.handle),
        Api(11, "JoinGroup", 0, 9, groups.join_group),
        Api(12, "Heartbeat", 0, 4, groups.heartbeat),
        Api(13, "LeaveGroup", 0, 5, groups.leave_group),
        Api(14, "SyncGroup", 0, 5, groups.sync_group),
        Api(15, "DescribeGroups", 0, 5, groups.describe_groups),
        Api(16, "ListGroups", 0, 5, groups.list_groups),
        Api(17, "SaslHandshake", 0, 1, sasl.handshake),
        Api(18, "ApiVersions", 0, api_versions.MAX_VERSION, api_versions.handle),
        Api(19, "CreateTopics", 2, 7, topics.create_topics),
        Api(20, "DeleteTopics", 1, 6, topics.delete_topics),
        Api(21, "DeleteRecords", 0, 2, delete_records.handle),
        Api(22, "InitProducerId", 0, 4, transactions.init_producer_id),
        Api(23, "OffsetForLeaderEpoch", 2, 4, leader_epoch.handle),
        Api(24, "AddPartitionsToTxn", 0, 3, transactions.add_partitions_to_txn),
        Api(25, "AddOffsetsToTxn", 0, 3, transactions.add_offsets_to_txn),
        Api(26, "EndTxn", 0, 3, transactions.end_txn),
        Api(27, "WriteTxnMarkers", 1, 1, transactions.write_txn_markers),
        Api(28, "TxnOffsetCommit", 0, 3, transactions.txn_offset_commit),
        Api(29, "DescribeAcls", 1, 3, security_admin.describe_acls),
        Api(30, "CreateAcls", 1, 3, security_admin.create_acls),
        Api(31, "DeleteAcls", 1, 3, security_admin.delete_acls),
        Api(32, "DescribeConfigs", 1, 4, configs.describe_configs),
        Api(33, "AlterConfigs", 0, 2, configs.alter_configs),
        Api(35, "DescribeLogDirs", 1, 4, log_dirs.describe_log_dirs),
        Api(36, "SaslAuthenticate", 0, 2, sasl.authenticate),
        Api(37, "CreatePartitions", 0, 3, topics.create_partitions),
        Api(42, "DeleteGroups", 0, 2, groups.delete_groups),
        Api(43, "ElectLeaders", 0, 2, reassignment.elect_leaders),
        Api(44, "IncrementalAlterConfigs", 0, 1, configs.incremental_alter_configs),
        Api(45, "AlterPartitionReassignments", 0, 0, reassignment.alter),
        Api(46, "ListPartitionReassignments", 0, 0, reassignment.list_reassignments),
        Api(47, "OffsetDelete", 0, 0, offsets.offset_delete),
        Api(48, "DescribeClientQuotas", 0, 1, security_admin.describe_quotas),
        Api(49, "AlterClientQuotas", 0, 1, security_admin.alter_quotas),
        Api(50, "DescribeUserScramCredentials", 0, 0, security_admin.describe_scram),
        Api(51, "AlterUserScramCredentials", 0, 0, security_admin.alter_scram),
        Api(60, "DescribeCluster", 0, 2, configs.describe_cluster),
        Api(61, "DescribeProducers", 0, 0, txn_admin.describe_producers),
        Api(65, "DescribeTransactions", 0, 0, txn_admin.describe_transactions),
        Api(66, "ListTransactions", 0, 1, txn_admin.list_transactions),
        Api(68, "ConsumerGroupHeartbeat", 0, 1, consumer_groups.heartbeat),
        Api(69, "ConsumerGroupDescribe", 0, 1, consumer_groups.describe),
        Api(75, "DescribeTopicPartitions", 0, 0, log_dirs.describe_topic_partitions),
        # between brokers only (protocol/zone.py)
        Api(ZONE_FORWARD_PRODUCE, "ZoneForwardProduce", 0, 0, zone_forward.handle,
            internal=True),
        Api(REPLICA_STATE, "ReplicaState", 0, 0, replica_state.handle, internal=True),
    ]  # fmt: skip
)

__all__ = ["APIS", "Api"]
