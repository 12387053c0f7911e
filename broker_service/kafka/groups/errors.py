"""Group coordinator outcomes as Kafka error codes (values of kio's ErrorCode)."""

from kio.schema.errors import ErrorCode

from broker_service.protocol.errors import KafkaError

NONE = ErrorCode.none
COORDINATOR_NOT_AVAILABLE = ErrorCode.coordinator_not_available
NOT_COORDINATOR = ErrorCode.not_coordinator
ILLEGAL_GENERATION = ErrorCode.illegal_generation
INCONSISTENT_GROUP_PROTOCOL = ErrorCode.inconsistent_group_protocol
INVALID_GROUP_ID = ErrorCode.invalid_group_id
UNKNOWN_MEMBER_ID = ErrorCode.unknown_member_id
INVALID_SESSION_TIMEOUT = ErrorCode.invalid_session_timeout
REBALANCE_IN_PROGRESS = ErrorCode.rebalance_in_progress
NON_EMPTY_GROUP = ErrorCode.non_empty_group
GROUP_ID_NOT_FOUND = ErrorCode.group_id_not_found
MEMBER_ID_REQUIRED = ErrorCode.member_id_required
FENCED_INSTANCE_ID = ErrorCode.fenced_instance_id
GROUP_SUBSCRIBED_TO_TOPIC = ErrorCode.group_subscribed_to_topic
FENCED_MEMBER_EPOCH = ErrorCode.fenced_member_epoch
UNSUPPORTED_ASSIGNOR = ErrorCode.unsupported_assignor
STALE_MEMBER_EPOCH = ErrorCode.stale_member_epoch
OFFSET_METADATA_TOO_LARGE = ErrorCode.offset_metadata_too_large
UNKNOWN_TOPIC_OR_PARTITION = ErrorCode.unknown_topic_or_partition
INVALID_REQUEST = ErrorCode.invalid_request


def require_coordinator(coordinates: bool) -> None:
    if not coordinates:
        raise GroupError(NOT_COORDINATOR)


class GroupError(KafkaError):
    """A group coordinator's answer: ``code`` is chosen where it is raised."""

    def __init__(self, code: ErrorCode, message: str | None = None) -> None:
        super().__init__(message or code.name)
        self.code = code
