"""DynamoDB: the compactor lease, range swaps and the object lifecycle."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from broker_service.metadata.dynamodb.base import (
    MAX_TX_ITEMS,
    DynamoBase,
    Item,
    _backoff,
    _cancel_reasons,
    _chunks,
    _error_code,
    _item,
    _key,
    _load,
)
from broker_service.metadata.dynamodb.ranges import pack_ranges, range_item
from broker_service.metadata.errors import ConcurrentUpdate, MetadataError
from broker_service.metadata.records import CompactorLease, StreamRange
from broker_service.metadata.store import CompactionStore


class DynamoCompaction(DynamoBase, CompactionStore):
    """Items ``CLUSTER/COMPACTOR``, ``RELEASED/<key>``; swaps rewrite ``STREAM#`` range items."""

    def acquire_compactor_lease(self, owner: str, lease_ms: int, now_ms: int) -> CompactorLease:
        # Read, then a compare-and-set on the epoch read (a one-action transaction, like
        # fence_broker: a retry after a lost response does not fail its own condition).
        current = self._get("CLUSTER", "COMPACTOR")
        if current is not None and int(current["expiry_ms"]) > now_ms:
            raise ConcurrentUpdate(
                f"compactor lease held by {current['owner']} (epoch {current['epoch']})"
            )
        seen = int(current["epoch"]) if current is not None else 0
        lease = CompactorLease(seen + 1, owner, now_ms + lease_ms)
        put: dict[str, Any] = {
            "TableName": self.table,
            "Item": {
                **_key("CLUSTER", "COMPACTOR"),
                **_item(
                    kind="compactor", epoch=lease.epoch, owner=owner, expiry_ms=lease.expiry_ms
                ),
            },
        }
        if current is None:
            put["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            put["ConditionExpression"] = "#e = :seen"
            put["ExpressionAttributeNames"] = {"#e": "epoch"}
            put["ExpressionAttributeValues"] = _item(**{":seen": seen})
        try:
            self._retrying(self._c.transact_write_items, TransactItems=[{"Put": put}])
        except ClientError as e:
            if _cancel_reasons(e)[:1] != ["ConditionalCheckFailed"]:
                raise
            raise ConcurrentUpdate("another run took the compactor lease first") from None
        return lease

    def release_compactor_lease(self, epoch: int) -> None:
        try:
            self._update(
                "CLUSTER",
                "COMPACTOR",
                "SET #x = :zero",
                ConditionExpression="#e = :e",
                ExpressionAttributeNames={"#x": "expiry_ms", "#e": "epoch"},
                ExpressionAttributeValues=_item(**{":zero": 0, ":e": epoch}),
            )
        except ClientError as e:
            if _error_code(e) != "ConditionalCheckFailedException":
                raise

    def replace_stream_ranges(
        self,
        compactor_epoch: int,
        stream_id: int,
        old: list[StreamRange],
        new: list[StreamRange],
        object_key: str | None,
        object_size: int,
        now_ms: int,
    ) -> None:
        t = self.table
        items: list[Item] = [
            {
                "ConditionCheck": {
                    "TableName": t,
                    "Key": _key("CLUSTER", "COMPACTOR"),
                    "ConditionExpression": "#e = :e AND #x > :now",
                    "ExpressionAttributeNames": {"#e": "epoch", "#x": "expiry_ms"},
                    "ExpressionAttributeValues": _item(**{":e": compactor_epoch, ":now": now_ms}),
                }
            }
        ]
        # A range item is a (stream, start) key: a new range starting where an old one did
        # replaces it with a conditional Put (one action per item per transaction).
        new_by_start = {r.start_offset: r for r in new}
        for r in old:
            cond = {
                "ConditionExpression": "#k = :k AND #end = :end AND #pos = :pos AND #sz = :sz",
                "ExpressionAttributeNames": {
                    "#k": "object_key",
                    "#end": "end_offset",
                    "#pos": "position",
                    "#sz": "size",
                },
                "ExpressionAttributeValues": _item(
                    **{":k": r.object_key, ":end": r.end_offset, ":pos": r.position, ":sz": r.size}
                ),
            }
            replacement = new_by_start.pop(r.start_offset, None)
            if replacement is not None:
                items.append({"Put": {"TableName": t, "Item": range_item(replacement), **cond}})
            else:
                key = _key(f"STREAM#{stream_id}", f"R#{r.start_offset:020d}")
                items.append({"Delete": {"TableName": t, "Key": key, **cond}})
        for r in new_by_start.values():
            items.append(
                {
                    "Put": {
                        "TableName": t,
                        "Item": range_item(r),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
            )
        for k in sorted({r.object_key for r in old}):
            # an object still PENDING may get its range items written again by a roll-forward
            items.append(
                {
                    "ConditionCheck": {
                        "TableName": t,
                        "Key": _key("PENDING", k),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
            )
            items.append(
                {
                    "Put": {
                        "TableName": t,
                        "Item": {
                            **_key("RELEASED", k),
                            **_item(kind="released", released_ms=now_ms),
                        },
                    }
                }
            )
        if object_key is not None:
            keys, parts = pack_ranges(new)
            obj = dict(
                kind="object",
                object_key=object_key,
                size=object_size,
                state="COMMITTED",
                broker_id=-1,
                broker_epoch=compactor_epoch,
                committed_ms=now_ms,
                range_count=len(new),
                part_count=len(parts),
                keys=keys,
            )
            items.append(
                {
                    "Put": {
                        "TableName": t,
                        "Item": {**_key(f"OBJECT#{object_key}", "OBJECT"), **_item(**obj)},
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
            )
            items += [
                {
                    "Put": {
                        "TableName": t,
                        "Item": {
                            **_key(f"OBJECT#{object_key}", f"PART#{i:04d}"),
                            **_item(kind="object-part", ranges=part),
                        },
                    }
                }
                for i, part in enumerate(parts)
            ]
        if len(items) > MAX_TX_ITEMS:
            raise MetadataError(f"a swap of {len(old)} ranges needs {len(items)} items (max 100)")
        try:
            self._retrying(self._c.transact_write_items, TransactItems=items)
        except ClientError as e:
            if "ConditionalCheckFailed" in _cancel_reasons(e):
                raise ConcurrentUpdate(
                    f"stream {stream_id}: ranges or compactor lease changed"
                ) from None
            raise

    def committed_objects(self, keys: list[str]) -> set[str]:
        found: set[str] = set()
        for chunk in _chunks(sorted(set(keys)), 100):
            pending: dict[str, Any] = {
                self.table: {
                    "Keys": [_key(f"OBJECT#{k}", "OBJECT") for k in chunk],
                    "ProjectionExpression": "object_key",
                    "ConsistentRead": True,
                }
            }
            for attempt in range(self._attempts + 5):
                resp = self._c.batch_get_item(RequestItems=pending)
                found.update(_load(i)["object_key"] for i in resp["Responses"].get(self.table, []))
                pending = resp.get("UnprocessedKeys") or {}
                if not pending:
                    break
                _backoff(attempt)
            else:
                raise MetadataError("DynamoDB kept returning unprocessed keys")
        return found

    def released_objects(self) -> dict[str, int]:
        return {str(a["sk"]): int(a["released_ms"]) for a in self._query("RELEASED")}

    def mark_released(self, keys: list[str], now_ms: int) -> None:
        for k in keys:
            try:
                self._put(
                    {**_key("RELEASED", k), **_item(kind="released", released_ms=now_ms)},
                    "attribute_not_exists(pk)",
                )
            except ClientError as e:
                if _error_code(e) != "ConditionalCheckFailedException":
                    raise

    def unmark_released(self, keys: list[str]) -> None:
        self._batch_delete(_key("RELEASED", k) for k in keys)

    def forget_objects(self, keys: list[str]) -> None:
        doomed: list[Item] = []
        for k in keys:
            doomed += [
                {"pk": i["pk"], "sk": i["sk"]}
                for i in self._query_raw(f"OBJECT#{k}", keys_only=True)
            ]
            doomed.append(_key("RELEASED", k))
        self._batch_delete(doomed)
