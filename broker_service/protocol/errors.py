"""Kafka's error codes, one class per code (as aiokafka's errors.py): what a request's
answer says when something went wrong. Generated from kio's ``ErrorCode`` (itself generated
from Kafka's own error table); ``retriable`` is Kafka's.

Domain errors that always mean one Kafka error inherit its class (``metadata.UnknownTopic`` is
an ``UnknownTopicOrPartition``), so a handler answers ``exc.code`` for any ``KafkaError``
instead of mapping exceptions one by one.
"""

from __future__ import annotations

from kio.schema.errors import ErrorCode


class KafkaError(Exception):
    """A Kafka error: ``code`` goes into the response, the message into ``error_message``."""

    code: ErrorCode = ErrorCode.unknown_server_error
    retriable = False

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.code.name)
        self.message = message


class UnknownServerError(KafkaError):
    code = ErrorCode.unknown_server_error


class OffsetOutOfRange(KafkaError):
    code = ErrorCode.offset_out_of_range


class CorruptMessage(KafkaError):
    code = ErrorCode.corrupt_message
    retriable = True


class UnknownTopicOrPartition(KafkaError):
    code = ErrorCode.unknown_topic_or_partition
    retriable = True


class InvalidFetchSize(KafkaError):
    code = ErrorCode.invalid_fetch_size


class LeaderNotAvailable(KafkaError):
    code = ErrorCode.leader_not_available
    retriable = True


class NotLeaderOrFollower(KafkaError):
    code = ErrorCode.not_leader_or_follower
    retriable = True


class RequestTimedOut(KafkaError):
    code = ErrorCode.request_timed_out
    retriable = True


class BrokerNotAvailable(KafkaError):
    code = ErrorCode.broker_not_available


class ReplicaNotAvailable(KafkaError):
    code = ErrorCode.replica_not_available
    retriable = True


class MessageTooLarge(KafkaError):
    code = ErrorCode.message_too_large


class StaleControllerEpoch(KafkaError):
    code = ErrorCode.stale_controller_epoch


class OffsetMetadataTooLarge(KafkaError):
    code = ErrorCode.offset_metadata_too_large


class NetworkException(KafkaError):
    code = ErrorCode.network_exception
    retriable = True


class CoordinatorLoadInProgress(KafkaError):
    code = ErrorCode.coordinator_load_in_progress
    retriable = True


class CoordinatorNotAvailable(KafkaError):
    code = ErrorCode.coordinator_not_available
    retriable = True


class NotCoordinator(KafkaError):
    code = ErrorCode.not_coordinator
    retriable = True


class InvalidTopicException(KafkaError):
    code = ErrorCode.invalid_topic_exception


class RecordListTooLarge(KafkaError):
    code = ErrorCode.record_list_too_large


class NotEnoughReplicas(KafkaError):
    code = ErrorCode.not_enough_replicas
    retriable = True


class NotEnoughReplicasAfterAppend(KafkaError):
    code = ErrorCode.not_enough_replicas_after_append
    retriable = True


class InvalidRequiredAcks(KafkaError):
    code = ErrorCode.invalid_required_acks


class IllegalGeneration(KafkaError):
    code = ErrorCode.illegal_generation


class InconsistentGroupProtocol(KafkaError):
    code = ErrorCode.inconsistent_group_protocol


class InvalidGroupId(KafkaError):
    code = ErrorCode.invalid_group_id


class UnknownMemberId(KafkaError):
    code = ErrorCode.unknown_member_id


class InvalidSessionTimeout(KafkaError):
    code = ErrorCode.invalid_session_timeout


class RebalanceInProgress(KafkaError):
    code = ErrorCode.rebalance_in_progress


class InvalidCommitOffsetSize(KafkaError):
    code = ErrorCode.invalid_commit_offset_size


class TopicAuthorizationFailed(KafkaError):
    code = ErrorCode.topic_authorization_failed


class GroupAuthorizationFailed(KafkaError):
    code = ErrorCode.group_authorization_failed


class ClusterAuthorizationFailed(KafkaError):
    code = ErrorCode.cluster_authorization_failed


class InvalidTimestamp(KafkaError):
    code = ErrorCode.invalid_timestamp


class UnsupportedSaslMechanism(KafkaError):
    code = ErrorCode.unsupported_sasl_mechanism


class IllegalSaslState(KafkaError):
    code = ErrorCode.illegal_sasl_state


class UnsupportedVersion(KafkaError):
    code = ErrorCode.unsupported_version


class TopicAlreadyExists(KafkaError):
    code = ErrorCode.topic_already_exists


class InvalidPartitions(KafkaError):
    code = ErrorCode.invalid_partitions


class InvalidReplicationFactor(KafkaError):
    code = ErrorCode.invalid_replication_factor


class InvalidReplicaAssignment(KafkaError):
    code = ErrorCode.invalid_replica_assignment


class InvalidConfig(KafkaError):
    code = ErrorCode.invalid_config


class NotController(KafkaError):
    code = ErrorCode.not_controller
    retriable = True


class InvalidRequest(KafkaError):
    code = ErrorCode.invalid_request


class UnsupportedForMessageFormat(KafkaError):
    code = ErrorCode.unsupported_for_message_format


class PolicyViolation(KafkaError):
    code = ErrorCode.policy_violation


class OutOfOrderSequenceNumber(KafkaError):
    code = ErrorCode.out_of_order_sequence_number


class DuplicateSequenceNumber(KafkaError):
    code = ErrorCode.duplicate_sequence_number


class InvalidProducerEpoch(KafkaError):
    code = ErrorCode.invalid_producer_epoch


class InvalidTxnState(KafkaError):
    code = ErrorCode.invalid_txn_state


class InvalidProducerIdMapping(KafkaError):
    code = ErrorCode.invalid_producer_id_mapping


class InvalidTransactionTimeout(KafkaError):
    code = ErrorCode.invalid_transaction_timeout


class ConcurrentTransactions(KafkaError):
    code = ErrorCode.concurrent_transactions
    retriable = True


class TransactionCoordinatorFenced(KafkaError):
    code = ErrorCode.transaction_coordinator_fenced


class TransactionalIdAuthorizationFailed(KafkaError):
    code = ErrorCode.transactional_id_authorization_failed


class SecurityDisabled(KafkaError):
    code = ErrorCode.security_disabled


class OperationNotAttempted(KafkaError):
    code = ErrorCode.operation_not_attempted


class KafkaStorageError(KafkaError):
    code = ErrorCode.kafka_storage_error
    retriable = True


class LogDirNotFound(KafkaError):
    code = ErrorCode.log_dir_not_found


class SaslAuthenticationFailed(KafkaError):
    code = ErrorCode.sasl_authentication_failed


class UnknownProducerId(KafkaError):
    code = ErrorCode.unknown_producer_id


class ReassignmentInProgress(KafkaError):
    code = ErrorCode.reassignment_in_progress


class DelegationTokenAuthDisabled(KafkaError):
    code = ErrorCode.delegation_token_auth_disabled


class DelegationTokenNotFound(KafkaError):
    code = ErrorCode.delegation_token_not_found


class DelegationTokenOwnerMismatch(KafkaError):
    code = ErrorCode.delegation_token_owner_mismatch


class DelegationTokenRequestNotAllowed(KafkaError):
    code = ErrorCode.delegation_token_request_not_allowed


class DelegationTokenAuthorizationFailed(KafkaError):
    code = ErrorCode.delegation_token_authorization_failed


class DelegationTokenExpired(KafkaError):
    code = ErrorCode.delegation_token_expired


class InvalidPrincipalType(KafkaError):
    code = ErrorCode.invalid_principal_type


class NonEmptyGroup(KafkaError):
    code = ErrorCode.non_empty_group


class GroupIdNotFound(KafkaError):
    code = ErrorCode.group_id_not_found


class FetchSessionIdNotFound(KafkaError):
    code = ErrorCode.fetch_session_id_not_found
    retriable = True


class InvalidFetchSessionEpoch(KafkaError):
    code = ErrorCode.invalid_fetch_session_epoch
    retriable = True


class ListenerNotFound(KafkaError):
    code = ErrorCode.listener_not_found
    retriable = True


class TopicDeletionDisabled(KafkaError):
    code = ErrorCode.topic_deletion_disabled


class FencedLeaderEpoch(KafkaError):
    code = ErrorCode.fenced_leader_epoch
    retriable = True


class UnknownLeaderEpoch(KafkaError):
    code = ErrorCode.unknown_leader_epoch
    retriable = True


class UnsupportedCompressionType(KafkaError):
    code = ErrorCode.unsupported_compression_type


class StaleBrokerEpoch(KafkaError):
    code = ErrorCode.stale_broker_epoch


class OffsetNotAvailable(KafkaError):
    code = ErrorCode.offset_not_available
    retriable = True


class MemberIdRequired(KafkaError):
    code = ErrorCode.member_id_required


class PreferredLeaderNotAvailable(KafkaError):
    code = ErrorCode.preferred_leader_not_available
    retriable = True


class GroupMaxSizeReached(KafkaError):
    code = ErrorCode.group_max_size_reached


class FencedInstanceId(KafkaError):
    code = ErrorCode.fenced_instance_id


class EligibleLeadersNotAvailable(KafkaError):
    code = ErrorCode.eligible_leaders_not_available
    retriable = True


class ElectionNotNeeded(KafkaError):
    code = ErrorCode.election_not_needed
    retriable = True


class NoReassignmentInProgress(KafkaError):
    code = ErrorCode.no_reassignment_in_progress


class GroupSubscribedToTopic(KafkaError):
    code = ErrorCode.group_subscribed_to_topic


class InvalidRecord(KafkaError):
    code = ErrorCode.invalid_record


class UnstableOffsetCommit(KafkaError):
    code = ErrorCode.unstable_offset_commit
    retriable = True


class ThrottlingQuotaExceeded(KafkaError):
    code = ErrorCode.throttling_quota_exceeded
    retriable = True


class ProducerFenced(KafkaError):
    code = ErrorCode.producer_fenced


class ResourceNotFound(KafkaError):
    code = ErrorCode.resource_not_found


class DuplicateResource(KafkaError):
    code = ErrorCode.duplicate_resource


class UnacceptableCredential(KafkaError):
    code = ErrorCode.unacceptable_credential


class InconsistentVoterSet(KafkaError):
    code = ErrorCode.inconsistent_voter_set


class InvalidUpdateVersion(KafkaError):
    code = ErrorCode.invalid_update_version


class FeatureUpdateFailed(KafkaError):
    code = ErrorCode.feature_update_failed


class PrincipalDeserializationFailure(KafkaError):
    code = ErrorCode.principal_deserialization_failure


class SnapshotNotFound(KafkaError):
    code = ErrorCode.snapshot_not_found


class PositionOutOfRange(KafkaError):
    code = ErrorCode.position_out_of_range


class UnknownTopicId(KafkaError):
    code = ErrorCode.unknown_topic_id
    retriable = True


class DuplicateBrokerRegistration(KafkaError):
    code = ErrorCode.duplicate_broker_registration


class BrokerIdNotRegistered(KafkaError):
    code = ErrorCode.broker_id_not_registered


class InconsistentTopicId(KafkaError):
    code = ErrorCode.inconsistent_topic_id
    retriable = True


class InconsistentClusterId(KafkaError):
    code = ErrorCode.inconsistent_cluster_id


class TransactionalIdNotFound(KafkaError):
    code = ErrorCode.transactional_id_not_found


class FetchSessionTopicIdError(KafkaError):
    code = ErrorCode.fetch_session_topic_id_error
    retriable = True


class IneligibleReplica(KafkaError):
    code = ErrorCode.ineligible_replica


class NewLeaderElected(KafkaError):
    code = ErrorCode.new_leader_elected


class OffsetMovedToTieredStorage(KafkaError):
    code = ErrorCode.offset_moved_to_tiered_storage


class FencedMemberEpoch(KafkaError):
    code = ErrorCode.fenced_member_epoch


class UnreleasedInstanceId(KafkaError):
    code = ErrorCode.unreleased_instance_id


class UnsupportedAssignor(KafkaError):
    code = ErrorCode.unsupported_assignor


class StaleMemberEpoch(KafkaError):
    code = ErrorCode.stale_member_epoch


class MismatchedEndpointType(KafkaError):
    code = ErrorCode.mismatched_endpoint_type


class UnsupportedEndpointType(KafkaError):
    code = ErrorCode.unsupported_endpoint_type


class UnknownControllerId(KafkaError):
    code = ErrorCode.unknown_controller_id


class UnknownSubscriptionId(KafkaError):
    code = ErrorCode.unknown_subscription_id


class TelemetryTooLarge(KafkaError):
    code = ErrorCode.telemetry_too_large


class InvalidRegistration(KafkaError):
    code = ErrorCode.invalid_registration


class TransactionAbortable(KafkaError):
    code = ErrorCode.transaction_abortable


class InvalidRecordState(KafkaError):
    code = ErrorCode.invalid_record_state


class ShareSessionNotFound(KafkaError):
    code = ErrorCode.share_session_not_found
    retriable = True


class InvalidShareSessionEpoch(KafkaError):
    code = ErrorCode.invalid_share_session_epoch
    retriable = True


class FencedStateEpoch(KafkaError):
    code = ErrorCode.fenced_state_epoch


class InvalidVoterKey(KafkaError):
    code = ErrorCode.invalid_voter_key


class DuplicateVoter(KafkaError):
    code = ErrorCode.duplicate_voter


class VoterNotFound(KafkaError):
    code = ErrorCode.voter_not_found


class InvalidRegularExpression(KafkaError):
    code = ErrorCode.invalid_regular_expression


class RebootstrapRequired(KafkaError):
    code = ErrorCode.rebootstrap_required


class StreamsInvalidTopology(KafkaError):
    code = ErrorCode.streams_invalid_topology


class StreamsInvalidTopologyEpoch(KafkaError):
    code = ErrorCode.streams_invalid_topology_epoch


class StreamsTopologyFenced(KafkaError):
    code = ErrorCode.streams_topology_fenced


class ShareSessionLimitReached(KafkaError):
    code = ErrorCode.share_session_limit_reached
    retriable = True


BY_CODE: dict[int, type[KafkaError]] = {
    -1: UnknownServerError,
    1: OffsetOutOfRange,
    2: CorruptMessage,
    3: UnknownTopicOrPartition,
    4: InvalidFetchSize,
    5: LeaderNotAvailable,
    6: NotLeaderOrFollower,
    7: RequestTimedOut,
    8: BrokerNotAvailable,
    9: ReplicaNotAvailable,
    10: MessageTooLarge,
    11: StaleControllerEpoch,
    12: OffsetMetadataTooLarge,
    13: NetworkException,
    14: CoordinatorLoadInProgress,
    15: CoordinatorNotAvailable,
    16: NotCoordinator,
    17: InvalidTopicException,
    18: RecordListTooLarge,
    19: NotEnoughReplicas,
    20: NotEnoughReplicasAfterAppend,
    21: InvalidRequiredAcks,
    22: IllegalGeneration,
    23: InconsistentGroupProtocol,
    24: InvalidGroupId,
    25: UnknownMemberId,
    26: InvalidSessionTimeout,
    27: RebalanceInProgress,
    28: InvalidCommitOffsetSize,
    29: TopicAuthorizationFailed,
    30: GroupAuthorizationFailed,
    31: ClusterAuthorizationFailed,
    32: InvalidTimestamp,
    33: UnsupportedSaslMechanism,
    34: IllegalSaslState,
    35: UnsupportedVersion,
    36: TopicAlreadyExists,
    37: InvalidPartitions,
    38: InvalidReplicationFactor,
    39: InvalidReplicaAssignment,
    40: InvalidConfig,
    41: NotController,
    42: InvalidRequest,
    43: UnsupportedForMessageFormat,
    44: PolicyViolation,
    45: OutOfOrderSequenceNumber,
    46: DuplicateSequenceNumber,
    47: InvalidProducerEpoch,
    48: InvalidTxnState,
    49: InvalidProducerIdMapping,
    50: InvalidTransactionTimeout,
    51: ConcurrentTransactions,
    52: TransactionCoordinatorFenced,
    53: TransactionalIdAuthorizationFailed,
    54: SecurityDisabled,
    55: OperationNotAttempted,
    56: KafkaStorageError,
    57: LogDirNotFound,
    58: SaslAuthenticationFailed,
    59: UnknownProducerId,
    60: ReassignmentInProgress,
    61: DelegationTokenAuthDisabled,
    62: DelegationTokenNotFound,
    63: DelegationTokenOwnerMismatch,
    64: DelegationTokenRequestNotAllowed,
    65: DelegationTokenAuthorizationFailed,
    66: DelegationTokenExpired,
    67: InvalidPrincipalType,
    68: NonEmptyGroup,
    69: GroupIdNotFound,
    70: FetchSessionIdNotFound,
    71: InvalidFetchSessionEpoch,
    72: ListenerNotFound,
    73: TopicDeletionDisabled,
    74: FencedLeaderEpoch,
    75: UnknownLeaderEpoch,
    76: UnsupportedCompressionType,
    77: StaleBrokerEpoch,
    78: OffsetNotAvailable,
    79: MemberIdRequired,
    80: PreferredLeaderNotAvailable,
    81: GroupMaxSizeReached,
    82: FencedInstanceId,
    83: EligibleLeadersNotAvailable,
    84: ElectionNotNeeded,
    85: NoReassignmentInProgress,
    86: GroupSubscribedToTopic,
    87: InvalidRecord,
    88: UnstableOffsetCommit,
    89: ThrottlingQuotaExceeded,
    90: ProducerFenced,
    91: ResourceNotFound,
    92: DuplicateResource,
    93: UnacceptableCredential,
    94: InconsistentVoterSet,
    95: InvalidUpdateVersion,
    96: FeatureUpdateFailed,
    97: PrincipalDeserializationFailure,
    98: SnapshotNotFound,
    99: PositionOutOfRange,
    100: UnknownTopicId,
    101: DuplicateBrokerRegistration,
    102: BrokerIdNotRegistered,
    103: InconsistentTopicId,
    104: InconsistentClusterId,
    105: TransactionalIdNotFound,
    106: FetchSessionTopicIdError,
    107: IneligibleReplica,
    108: NewLeaderElected,
    109: OffsetMovedToTieredStorage,
    110: FencedMemberEpoch,
    111: UnreleasedInstanceId,
    112: UnsupportedAssignor,
    113: StaleMemberEpoch,
    114: MismatchedEndpointType,
    115: UnsupportedEndpointType,
    116: UnknownControllerId,
    117: UnknownSubscriptionId,
    118: TelemetryTooLarge,
    119: InvalidRegistration,
    120: TransactionAbortable,
    121: InvalidRecordState,
    122: ShareSessionNotFound,
    123: InvalidShareSessionEpoch,
    124: FencedStateEpoch,
    125: InvalidVoterKey,
    126: DuplicateVoter,
    127: VoterNotFound,
    128: InvalidRegularExpression,
    129: RebootstrapRequired,
    130: StreamsInvalidTopology,
    131: StreamsInvalidTopologyEpoch,
    132: StreamsTopologyFenced,
    133: ShareSessionLimitReached,
}


def for_code(code: int, message: str | None = None) -> KafkaError:
    """The error of a code (as read from another broker's answer)."""
    return BY_CODE.get(code, KafkaError)(message)
