"""DynamoDB: brokers, leases and fencing (the broker item is the unit of fencing), broker
info and listener endpoints."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from botocore.exceptions import ClientError

from broker_service.metadata.dynamodb.base import (
    _SERVING,
    DynamoBase,
    _cancel_reasons,
    _error_code,
    _item,
    _key,
    _now_ms,
)
from broker_service.metadata.errors import BrokerFenced, ConcurrentUpdate, UnknownBroker
from broker_service.metadata.records import ACTIVE, DRAINING, FENCED, BrokerRecord
from broker_service.metadata.store import BrokerRegistry

log = logging.getLogger(__name__)


class DynamoBrokers(DynamoBase, BrokerRegistry):
    """Items ``BROKERS/<id>`` (with their info), ``ENDPOINTS/<id>``, ``CLUSTER/ID``."""

    def cluster_id(self) -> str:
        if self._cluster_id is None:
            item = self._get("CLUSTER", "ID")
            if item is None:
                cid = uuid.uuid4().hex[:22]
                try:
                    self._put(
                        {**_key("CLUSTER", "ID"), **_item(kind="cluster", cluster_id=cid)},
                        "attribute_not_exists(pk)",
                    )
                except ClientError as e:
                    if _error_code(e) != "ConditionalCheckFailedException":
                        raise
                item = self._get("CLUSTER", "ID")
                assert item is not None
            self._cluster_id = str(item["cluster_id"])
        return self._cluster_id

    def register_broker(
        self, broker_id: int, host: str, port: int, rack: str | None, lease_ms: int
    ) -> BrokerRecord:
        expiry = _now_ms() + lease_ms
        attrs = self._update(
            "BROKERS",
            str(broker_id),
            "SET #kind = :kind, #id = :id, #host = :host, #port = :port, #rack = :rack, "
            "#state = :state, #lease = :lease ADD #epoch :one",
            ExpressionAttributeNames={
                "#kind": "kind",
                "#id": "broker_id",
                "#host": "host",
                "#port": "port",
                "#rack": "rack",
                "#state": "state",
                "#lease": "lease_expiry_ms",
                "#epoch": "epoch",
            },
            ExpressionAttributeValues={
                ":" + k: v
                for k, v in _item(
                    kind="broker",
                    id=broker_id,
                    host=host,
                    port=port,
                    rack=rack,
                    state=ACTIVE,
                    lease=expiry,
                    one=1,
                ).items()
            },
            ReturnValues="ALL_NEW",
        )
        return self._broker(attrs)

    @staticmethod
    def _broker(a: dict[str, Any]) -> BrokerRecord:
        return BrokerRecord(
            a["broker_id"], a["host"], a["port"], a.get("rack"), a["epoch"], a["state"],
            a["lease_expiry_ms"],
        )  # fmt: skip

    def brokers(self) -> list[BrokerRecord]:
        return sorted((self._broker(a) for a in self._query("BROKERS")), key=lambda b: b.broker_id)

    def _serving_update(
        self, broker_id: int, epoch: int, expr: str, names: dict[str, str], values: dict[str, Any]
    ) -> BrokerRecord:
        """``UpdateItem`` of the broker item, conditional on ``epoch`` and a serving state."""
        try:
            attrs = self._update(
                "BROKERS",
                str(broker_id),
                expr,
                ConditionExpression=_SERVING,
                ExpressionAttributeNames={"#e": "epoch", "#s": "state", **names},
                ExpressionAttributeValues=_item(
                    **{":e": epoch, ":active": ACTIVE, ":draining": DRAINING, **values}
                ),
                ReturnValues="ALL_NEW",
            )
        except ClientError as e:
            if _error_code(e) != "ConditionalCheckFailedException":
                raise
            raise BrokerFenced(f"broker {broker_id} epoch {epoch} is fenced") from None
        return self._broker(attrs)

    def renew_lease(self, broker_id: int, epoch: int, lease_ms: int) -> BrokerRecord:
        # Idempotent: a retry after a lost response meets the same condition.
        return self._serving_update(
            broker_id,
            epoch,
            "SET #lease = :lease",
            {"#lease": "lease_expiry_ms"},
            {":lease": _now_ms() + lease_ms},
        )

    def set_broker_state(self, broker_id: int, epoch: int, state: str) -> BrokerRecord:
        if state not in (ACTIVE, DRAINING):
            raise ValueError(f"a broker can only set itself {ACTIVE} or {DRAINING}, not {state}")
        return self._serving_update(broker_id, epoch, "SET #s = :state", {}, {":state": state})

    def fence_broker(self, broker_id: int, expected_epoch: int) -> BrokerRecord:
        current = self._get("BROKERS", str(broker_id))
        if current is None:
            raise UnknownBroker(f"broker {broker_id}")
        if current["epoch"] != expected_epoch:
            raise ConcurrentUpdate(
                f"broker {broker_id} is at epoch {current['epoch']} ({current['state']}), "
                f"not {expected_epoch}"
            )
        # A one-action transaction rather than UpdateItem: botocore's ClientRequestToken makes
        # a retry after a lost response succeed again instead of failing its own condition.
        try:
            self._retrying(
                self._c.transact_write_items,
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": _key("BROKERS", str(broker_id)),
                            "UpdateExpression": "SET #e = :next, #s = :fenced",
                            "ConditionExpression": "#e = :expected",
                            "ExpressionAttributeNames": {"#e": "epoch", "#s": "state"},
                            "ExpressionAttributeValues": _item(
                                **{
                                    ":next": expected_epoch + 1,
                                    ":fenced": FENCED,
                                    ":expected": expected_epoch,
                                }
                            ),
                        }
                    }
                ],
            )
        except ClientError as e:
            if _cancel_reasons(e)[:1] != ["ConditionalCheckFailed"]:
                raise
            raise ConcurrentUpdate(
                f"broker {broker_id} left epoch {expected_epoch} meanwhile"
            ) from None
        current.update(epoch=expected_epoch + 1, state=FENCED)
        return self._broker(current)

    def live_brokers(self, now_ms: int) -> list[BrokerRecord]:
        return [b for b in self.brokers() if b.state == ACTIVE and b.lease_expiry_ms > now_ms]

    def allocate_broker_id(self) -> int:
        return self._next("broker_id", 1) + 1

    # Broker info: a JSON string on the broker's item (register_broker leaves it alone).
    def set_broker_info(self, broker_id: int, epoch: int, info: dict[str, str]) -> None:
        self._serving_update(
            broker_id,
            epoch,
            "SET #info = :info",
            {"#info": "info"},
            {":info": json.dumps(info, sort_keys=True)},
        )

    def broker_info(self) -> dict[int, dict[str, str]]:
        return {
            int(a["broker_id"]): json.loads(a["info"])
            for a in self._query("BROKERS")
            if a.get("info")
        }

    def save_broker_endpoints(self, broker_id: int, endpoints: dict[str, tuple[str, int]]) -> None:
        self._put(
            {
                **_key("ENDPOINTS", str(broker_id)),
                **_item(
                    kind="endpoints",
                    broker_id=broker_id,
                    endpoints=json.dumps({n: [h, p] for n, (h, p) in endpoints.items()}),
                ),
            }
        )

    def broker_endpoints(self) -> dict[int, dict[str, tuple[str, int]]]:
        return {
            int(a["broker_id"]): {
                n: (str(h), int(p)) for n, (h, p) in json.loads(a["endpoints"]).items()
            }
            for a in self._query("ENDPOINTS")
        }

    def forget_broker(self, broker_id: int, expected_epoch: int) -> bool:
        # The broker item holds its info too; its endpoints item goes after it (an endpoints
        # item left behind by a crash here names a broker nobody lists: harmless).
        try:
            self._retrying(
                self._c.delete_item,
                TableName=self.table,
                Key=_key("BROKERS", str(broker_id)),
                ConditionExpression="#s = :fenced AND #e = :e",
                ExpressionAttributeNames={"#s": "state", "#e": "epoch"},
                ExpressionAttributeValues=_item(**{":fenced": FENCED, ":e": expected_epoch}),
            )
        except ClientError as e:
            if _error_code(e) != "ConditionalCheckFailedException":
                raise
            return False
        self._retrying(
            self._c.delete_item, TableName=self.table, Key=_key("ENDPOINTS", str(broker_id))
        )
        return True
