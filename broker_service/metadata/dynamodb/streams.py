"""DynamoDB: object commits (object + packed parts, fenced by the broker item) and per-stream
range items."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import ClientError

from broker_service.metadata.dynamodb.base import (
    _SERVING,
    MAX_TX_ITEMS,
    DynamoBase,
    Item,
    _cancel_reasons,
    _error_code,
    _item,
    _key,
    _now_ms,
)
from broker_service.metadata.dynamodb.ranges import (
    MAX_RANGES_PER_OBJECT,
    pack_ranges,
    range_item,
    unpack_ranges,
)
from broker_service.metadata.errors import BrokerFenced, MetadataError, ObjectAlreadyCommitted
from broker_service.metadata.records import ACTIVE, DRAINING, StreamRange
from broker_service.metadata.store import StreamObjects

log = logging.getLogger(__name__)


class DynamoStreams(DynamoBase, StreamObjects):
    """Items ``OBJECT#<key>`` (object, ``PART#n``), ``STREAM#<id>/R#<start>``, ``PENDING/<key>``."""

    def _range_put(self, r: StreamRange) -> Item:
        return {
            "Put": {
                "TableName": self.table,
                "Item": range_item(r),
            }
        }

    def commit_object(
        self,
        broker_id: int,
        broker_epoch: int,
        object_key: str,
        object_size: int,
        ranges: list[StreamRange],
    ) -> None:
        seen: set[tuple[int, int]] = set()
        for r in ranges:
            if (r.stream_id, r.start_offset) in seen:
                raise MetadataError(f"duplicate range {r.stream_id}@{r.start_offset}")
            seen.add((r.stream_id, r.start_offset))
        if len(ranges) > MAX_RANGES_PER_OBJECT:
            raise MetadataError(f"{len(ranges)} ranges in one object (max {MAX_RANGES_PER_OBJECT})")
        keys, parts = pack_ranges(ranges)
        # check + object + its part (at most one when it fits) + one item per range
        inline = 2 + len(parts) + len(ranges) <= MAX_TX_ITEMS
        check = {
            "ConditionCheck": {
                "TableName": self.table,
                "Key": _key("BROKERS", str(broker_id)),
                "ConditionExpression": _SERVING,
                "ExpressionAttributeNames": {"#e": "epoch", "#s": "state"},
                "ExpressionAttributeValues": _item(
                    **{":e": broker_epoch, ":active": ACTIVE, ":draining": DRAINING}
                ),
            }
        }
        obj: dict[str, Any] = dict(
            kind="object",
            object_key=object_key,
            size=object_size,
            state="COMMITTED",
            broker_id=broker_id,
            broker_epoch=broker_epoch,
            committed_ms=_now_ms(),
            range_count=len(ranges),
            part_count=len(parts),
            keys=keys,
        )
        items: list[Item] = [
            check,
            {
                "Put": {
                    "TableName": self.table,
                    "Item": {**_key(f"OBJECT#{object_key}", "OBJECT"), **_item(**obj)},
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
        ]
        items += [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": {
                        **_key(f"OBJECT#{object_key}", f"PART#{i:04d}"),
                        **_item(kind="object-part", ranges=part),
                    },
                }
            }
            for i, part in enumerate(parts)
        ]
        if inline:  # everything in one transaction: fully indexed at once
            items += [self._range_put(r) for r in ranges]
        else:  # the commit point: object + parts + PENDING marker; ranges indexed after
            items.append(
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": {
                            **_key("PENDING", object_key),
                            **_item(kind="pending", broker_id=broker_id, created_ms=_now_ms()),
                        },
                    }
                }
            )
        assert len(items) <= MAX_TX_ITEMS
        try:
            self._retrying(self._c.transact_write_items, TransactItems=items)
        except ClientError as e:
            reasons = _cancel_reasons(e)
            if _error_code(e) == "TransactionCanceledException" and reasons:
                if reasons[0] == "ConditionalCheckFailed":
                    raise BrokerFenced(
                        f"broker {broker_id} epoch {broker_epoch} is fenced"
                    ) from None
                if reasons[1:2] == ["ConditionalCheckFailed"]:
                    raise ObjectAlreadyCommitted(
                        f"object {object_key} is already committed"
                    ) from None
            raise
        if not inline:
            try:
                self._index_object(object_key, ranges)
            except Exception:  # committed all the same: readers merge the PENDING object
                log.warning("object %s committed but not yet indexed", object_key, exc_info=True)

    def _index_object(self, object_key: str, ranges: Sequence[StreamRange]) -> None:
        """Write an object's per-stream range items, then drop its PENDING marker."""
        self._batch_write([{"PutRequest": {"Item": range_item(r)}} for r in ranges])
        self._retrying(self._c.delete_item, TableName=self.table, Key=_key("PENDING", object_key))

    def _object_ranges(self, object_key: str) -> list[StreamRange]:
        """All ranges of a committed object, from its packed parts (objects are immutable)."""
        with self._objects_lock:
            cached = self._objects.get(object_key)
            if cached is not None:
                self._objects.move_to_end(object_key)
                return cached
        obj = self._get(f"OBJECT#{object_key}", "OBJECT")
        if obj is None:
            return []
        ranges: list[StreamRange] = []
        for part in self._query(f"OBJECT#{object_key}", "PART#"):
            ranges += unpack_ranges(obj["keys"], part["ranges"])
        if len(ranges) != obj["range_count"]:
            raise MetadataError(f"object {object_key}: {len(ranges)} of {obj['range_count']}")
        with self._objects_lock:
            self._objects[object_key] = ranges
            while len(self._objects) > 16:
                self._objects.popitem(last=False)
        return ranges

    def pending_commits(self) -> list[str]:
        """Keys of committed objects whose per-stream range items may be incomplete."""
        return [str(a["sk"]) for a in self._query("PENDING")]

    def finish_pending_commits(self) -> int:
        """Roll forward commits whose indexing was interrupted (idempotent); return how many."""
        done = 0
        for key in self.pending_commits():
            self._index_object(key, self._object_ranges(key))
            done += 1
        return done

    def stream_ranges(self, stream_id: int) -> list[StreamRange]:
        # PENDING first: a commit that finishes indexing after this query has written its
        # range items before dropping its marker, so the range query below sees them.
        found: dict[int, StreamRange] = {}
        for key in self.pending_commits():
            for r in self._object_ranges(key):
                if r.stream_id == stream_id:
                    found[r.start_offset] = r
        for a in self._query(f"STREAM#{stream_id}"):
            found[a["start_offset"]] = StreamRange(
                stream_id,
                a["start_offset"],
                a["end_offset"],
                a["object_key"],
                a["position"],
                a["size"],
                a["max_timestamp"],
            )
        return [found[k] for k in sorted(found)]

    def _delete_stream_ranges(self, stream_id: int) -> None:
        self._batch_delete(self._query_raw(f"STREAM#{stream_id}", keys_only=True))
