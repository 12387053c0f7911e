"""DynamoDB: producer-id blocks and producer-state snapshots."""

from __future__ import annotations

from botocore.exceptions import ClientError

from broker_service.metadata.dynamodb.base import DynamoBase, _error_code, _item, _key
from broker_service.metadata.store import ProducerStore


class DynamoProducers(DynamoBase, ProducerStore):
    """The ``COUNTER#producer_id`` counter; one item per stream (``SNAPSHOT/<stream id>``):
    the producer-state snapshot (binary)."""

    def allocate_producer_ids(self, count: int) -> int:
        return self._next("producer_id", count)

    def producer_snapshot(self, stream_id: int) -> tuple[int, bytes] | None:
        a = self._get("SNAPSHOT", str(stream_id))
        return (int(a["offset"]), bytes(a["data"])) if a else None

    def save_producer_snapshot(self, stream_id: int, offset: int, data: bytes) -> bool:
        try:
            self._put(
                {
                    **_key("SNAPSHOT", str(stream_id)),
                    **_item(kind="producer-snapshot", offset=offset, data=data),
                },
                "attribute_not_exists(pk) OR #o <= :o",
                ExpressionAttributeNames={"#o": "offset"},
                ExpressionAttributeValues=_item(**{":o": offset}),
            )
        except ClientError as e:
            if _error_code(e) == "ConditionalCheckFailedException":
                return False
            raise
        return True
