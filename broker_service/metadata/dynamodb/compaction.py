"""DynamoDB: the compactor lease, range swaps and the object lifecycle."""

from __future__ import annotations

import uuid
from typing import Any

from botocore.exceptions import ClientError

from broker_service.metadata.dynamodb.base import (
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
from broker_service.metadata.dynamodb.ranges import pack_keys, unpack_keys
from broker_service.metadata.dynamodb.stream_index import entry_sk, log_pk
from broker_service.metadata.dynamodb.streams import _CCF, StreamConflict, TooManyChunks
from broker_service.metadata.errors import ConcurrentUpdate, MetadataError
from broker_service.metadata.records import (
    CompactorLease,
    StreamRange,
    compactor_shard,
    next_compactor_epoch,
)
from broker_service.metadata.store import CompactionStore

_RELEASED = "RELEASED"
_MARKS = "MARKS#"
# Object keys of one marks item: front-coded WAL keys take ~20-30 bytes each, well inside
# DynamoDB's 400 KB item (a few KB written per run, 1 WRU a KB).
RELEASE_MARKS_PER_ITEM = 2000


def _marked_keys(a: dict[str, Any]) -> list[str]:
    if a.get("kind") == "released_marks":
        return unpack_keys(a.get("keys"))
    return [str(a["sk"])]  # one object's mark (before marks items)


def _lease_sk(shard: int) -> str:
    """Shard 0's lease is the item of the single lease before shards."""
    return "COMPACTOR" if shard == 0 else f"COMPACTOR#{shard}"


class DynamoCompaction(DynamoBase, CompactionStore):
    """Items ``CLUSTER/COMPACTOR[#shard]``, ``RELEASED/MARKS#<ms>#<id>`` (one garbage
    collection run's release marks; ``RELEASED/<key>`` before them, still read); swaps
    rewrite ``STREAM#`` chunks."""

    def acquire_compactor_lease(
        self, owner: str, lease_ms: int, now_ms: int, shard: int = 0
    ) -> CompactorLease:
        # Read, then a compare-and-set on the epoch read (a one-action transaction, like
        # fence_broker: a retry after a lost response does not fail its own condition).
        sk = _lease_sk(shard)
        current = self._get("CLUSTER", sk)
        if current is not None and int(current["expiry_ms"]) > now_ms:
            raise ConcurrentUpdate(
                f"compactor lease held by {current['owner']} (epoch {current['epoch']})"
            )
        seen = int(current["epoch"]) if current is not None else 0
        lease = CompactorLease(next_compactor_epoch(seen, shard), owner, now_ms + lease_ms)
        put: dict[str, Any] = {
            "TableName": self.table,
            "Item": {
                **_key("CLUSTER", sk),
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
                _lease_sk(compactor_shard(epoch)),
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
        # One transaction: the lease check, the new object's record and the stream's rewrite
        # (the chunks holding old ranges are replaced, the log tail is folded in), conditional
        # on the stream head's version: O(1) items per output object whatever the stream's
        # length or the number of objects the old ranges were in. A head that moved (a fold,
        # a claim) is read again; old ranges that changed or went are a ConcurrentUpdate. The
        # old objects are not marked here: most are WAL objects that other streams still
        # name, and a mark per old object made a swap cost 80 items instead of ~5 (70 WRU
        # per WAL object at 32 partitions); the run's garbage collection marks the objects no
        # range names, after the swap, so their grace period starts no earlier.
        t = self.table
        extra: list[Item] = [
            {
                "ConditionCheck": {
                    "TableName": t,
                    "Key": _key("CLUSTER", _lease_sk(compactor_shard(compactor_epoch))),
                    "ConditionExpression": "#e = :e AND #x > :now",
                    "ExpressionAttributeNames": {"#e": "epoch", "#x": "expiry_ms"},
                    "ExpressionAttributeValues": _item(**{":e": compactor_epoch, ":now": now_ms}),
                }
            }
        ]
        if object_key is not None:
            record = _item(
                kind="object",
                object_key=object_key,
                size=object_size,
                state="COMMITTED",
                broker_id=-1,
                broker_epoch=compactor_epoch,
                committed_ms=now_ms,
                range_count=len(new),
            )
            extra.append(
                {
                    "Put": {
                        "TableName": t,
                        "Item": {**_key(f"OBJECT#{object_key}", "OBJECT"), **record},
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
            )
        for attempt in range(self._attempts):
            state = self._stream_state(stream_id)
            current = {r.start_offset: r for r in state.ranges()}
            for r in old:
                if current.get(r.start_offset) != r:
                    raise ConcurrentUpdate(f"range {stream_id}@{r.start_offset} changed")
            for r in old:
                del current[r.start_offset]
            current.update({r.start_offset: r for r in new})
            try:
                self._write_stream(state, [current[k] for k in sorted(current)], extra)
                return
            except TooManyChunks as many:  # fewer, larger chunks first, then the swap
                try:
                    self.merge_chunks(stream_id, many.chunks)
                except StreamConflict:
                    _backoff(attempt)
                continue
            except StreamConflict as c:
                if c.head_moved and _CCF not in c.reasons[: c.head_index]:
                    _backoff(attempt)
                    continue  # a fold or claim: read the stream again
                raise ConcurrentUpdate(
                    f"stream {stream_id}: the compactor lease or the new object key changed"
                ) from None
        raise ConcurrentUpdate(f"stream {stream_id}: too much contention")

    def committed_objects(self, keys: list[str]) -> set[str]:
        found: set[str] = set()
        for chunk in _chunks(sorted(set(keys)), 100):
            pending: dict[str, Any] = {
                self.table: {
                    "Keys": [_key(f"OBJECT#{k}", "OBJECT") for k in chunk],
                    "ProjectionExpression": "object_key, #s",
                    "ExpressionAttributeNames": {"#s": "state"},
                    "ConsistentRead": True,
                }
            }
            for attempt in range(self._attempts + 5):
                resp = self._c.batch_get_item(RequestItems=pending)
                found.update(
                    a["object_key"]
                    for a in map(_load, resp["Responses"].get(self.table, []))
                    if a.get("state") != "ABORTED"
                )
                pending = resp.get("UnprocessedKeys") or {}
                if not pending:
                    break
                _backoff(attempt)
            else:
                raise MetadataError("DynamoDB kept returning unprocessed keys")
        return found

    def released_objects(self) -> dict[str, int]:
        marks: dict[str, int] = {}
        for a in self._query(_RELEASED):
            since = int(a["released_ms"])
            for k in _marked_keys(a):
                marks[k] = min(since, marks.get(k, since))
        return marks

    def mark_released(self, keys: list[str], now_ms: int) -> None:
        # One item per run's marks (front-coded keys), not one per object: a mark per WAL
        # object was 2 of the 4 WRU its garbage collection cost (put, then delete).
        for chunk in _chunks(sorted(set(keys)), RELEASE_MARKS_PER_ITEM):
            sk = f"{_MARKS}{now_ms:015d}#{uuid.uuid4().hex[:12]}"
            self._put(
                {
                    **_key(_RELEASED, sk),
                    **_item(kind="released_marks", released_ms=now_ms, keys=pack_keys(chunk)),
                }
            )

    def unmark_released(self, keys: list[str]) -> None:
        self._drop_marks(set(keys))

    def forget_objects(self, keys: list[str]) -> None:
        doomed: list[Item] = []
        for k in keys:
            for a in self._query(f"OBJECT#{k}"):
                doomed.append(_key(str(a["pk"]), str(a["sk"])))
                if a.get("sk") == "OBJECT" and a.get("log") is not None:
                    # its log entry only serves readers of ranges in it, and none refer to
                    # the object any more (that is why it is forgotten)
                    doomed += self._entry_keys(str(a["log"]), int(a["seq"]), k)
        self._batch_delete(doomed)
        self._drop_marks(set(keys))  # last: a mark left by a crash is dropped by a later run

    def _drop_marks(self, keys: set[str]) -> None:
        """Take ``keys`` out of the release marks. A marks item is rewritten only if it still
        holds what was read (a compactor that lost its lease may be at it too); on a conflict
        the marks are read again."""
        for attempt in range(self._attempts):
            try:
                for a in self._query(_RELEASED):
                    held = _marked_keys(a)
                    keep = [k for k in held if k not in keys]
                    if len(keep) == len(held):
                        continue
                    if a.get("kind") != "released_marks":  # one object's mark (before marks items)
                        self._retrying(
                            self._c.delete_item, TableName=self.table, Key=_key(_RELEASED, a["sk"])
                        )
                        continue
                    unchanged: dict[str, Any] = {
                        "ConditionExpression": "#k = :held",
                        "ExpressionAttributeNames": {"#k": "keys"},
                        "ExpressionAttributeValues": {":held": {"B": a["keys"]}},
                    }
                    if keep:
                        item = {**_key(_RELEASED, a["sk"]), **_item(
                            kind="released_marks", released_ms=a["released_ms"],
                            keys=pack_keys(keep),
                        )}  # fmt: skip
                        self._retrying(self._c.put_item, TableName=self.table, Item=item,
                                       **unchanged)  # fmt: skip
                    else:
                        self._retrying(self._c.delete_item, TableName=self.table,
                                       Key=_key(_RELEASED, a["sk"]), **unchanged)  # fmt: skip
                return
            except ClientError as e:
                if _error_code(e) != "ConditionalCheckFailedException":
                    raise
                _backoff(attempt)
        raise ConcurrentUpdate("release marks: too much contention")

    def _entry_keys(self, log_: str, seq: int, object_key: str) -> list[Item]:
        items = self._query(log_pk(log_), entry_sk(seq))
        first = next((a for a in items if a.get("sk") == entry_sk(seq)), None)
        if first is None or unpack_keys(first.get("keys")) != [object_key]:
            return []  # its ranges name other objects too: keep it
        return [_key(str(a["pk"]), str(a["sk"])) for a in items]
