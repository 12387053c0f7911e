"""DynamoDB: transaction records (compare-and-set on a version)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from broker_service.metadata.dynamodb.base import DynamoBase, _error_code, _item, _key
from broker_service.metadata.errors import ConcurrentUpdate
from broker_service.metadata.records import TxnRecord
from broker_service.metadata.store import TxnStore


class DynamoTxns(DynamoBase, TxnStore):
    """One item per transactional id (``TXN/<id>``): the record as JSON plus a version for CAS."""

    def transaction(self, transactional_id: str) -> TxnRecord | None:
        a = self._get("TXN", transactional_id)
        return TxnRecord.from_json(str(a["body"]), int(a["version"])) if a else None

    def transactions(self) -> list[TxnRecord]:
        return [TxnRecord.from_json(str(a["body"]), int(a["version"])) for a in self._query("TXN")]

    def save_transaction(self, rec: TxnRecord) -> TxnRecord:
        saved = rec.with_(version=rec.version + 1)
        condition = "attribute_not_exists(pk)" if rec.version == 0 else "#v = :v"
        extra: dict[str, Any] = {}
        if rec.version:
            extra = {
                "ExpressionAttributeNames": {"#v": "version"},
                "ExpressionAttributeValues": _item(**{":v": rec.version}),
            }
        try:
            self._put(
                {
                    **_key("TXN", rec.transactional_id),
                    **_item(kind="txn", version=saved.version, body=saved.to_json()),
                },
                condition,
                **extra,
            )
        except ClientError as e:
            if _error_code(e) == "ConditionalCheckFailedException":
                raise ConcurrentUpdate(
                    f"transaction {rec.transactional_id} changed meanwhile"
                ) from None
            raise
        return saved
