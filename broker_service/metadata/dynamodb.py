"""DynamoDB implementation of the MetadataStore (cloud mode).

One table, keys ``pk`` (S) and ``sk`` (S), no indexes; the item shapes, the object-commit
protocol and its failure modes are described in ``docs/DYNAMODB.md``. Same contract as
``SqliteMetadataStore``:

- an object commit is one ``TransactWriteItems`` whose first item is a ``ConditionCheck`` on
  the broker item (``epoch == mine AND state IN (ACTIVE, DRAINING)``), so a fenced broker
  never commits; fencing, lease renewal and partition moves are conditional single-item
  writes (compare-and-set on the epoch / leader epoch);
- the object item (with all its ranges packed into binary ``part`` items) is the source of
  truth; the per-stream range items that readers query are written in the same transaction
  when everything fits in 100 items, otherwise right after it behind a ``PENDING`` marker
  that readers merge (and that a later ``register_broker`` rolls forward after a crash);
- counters (stream ids, producer ids) are atomic ``UpdateItem ... ADD``; topic creation is a
  conditional put; every query is strongly consistent and paginated.

The endpoint comes from boto3's standard configuration (``AWS_ENDPOINT_URL_DYNAMODB`` /
``AWS_ENDPOINT_URL``), so moto server and LocalStack work unchanged.
"""

from __future__ import annotations

import json
import logging
import random
import struct
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from decimal import Decimal
from typing import Any

import boto3
from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import ClientError

from broker_service.metadata.base import (
    ACTIVE,
    DRAINING,
    FENCED,
    AclBinding,
    BrokerFenced,
    BrokerRecord,
    CommittedOffset,
    CompactorLease,
    ConcurrentUpdate,
    GroupRecord,
    MetadataError,
    MetadataStore,
    ObjectAlreadyCommitted,
    PartitionRecord,
    QuotaEntity,
    ScramCredential,
    StreamRange,
    TopicAlreadyExists,
    TopicRecord,
    TxnRecord,
    UnknownBroker,
    UnknownTopic,
)

log = logging.getLogger(__name__)

Item = dict[str, Any]  # an item in DynamoDB's wire format ({"attr": {"S": "..."}})

# DynamoDB limits (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html)
MAX_TX_ITEMS = 100  # actions per TransactWriteItems
MAX_TX_BYTES = 4_000_000  # aggregate size of one TransactWriteItems ("4 MB")
MAX_BATCH_WRITE = 25  # requests per BatchWriteItem
# One packed range: stream_id, start, end, position, size, max_timestamp (i64) + key index (u32).
_RANGE = struct.Struct("<qqqqqqI")
RANGES_PER_PART = 7000  # 7000 * 52 B = 364 KB per part item, under the 400 KB item limit
MAX_RANGES_PER_OBJECT = (MAX_TX_BYTES - 200_000) // _RANGE.size  # 73k; headroom for the rest

DELETING = "DELETING"  # topic state while its deletion is in progress (topics use ACTIVE too)
# Condition of every write a broker makes under its own epoch (commits, lease, state).
_SERVING = "#e = :e AND (#s = :active OR #s = :draining)"

_ser = TypeSerializer()
_des = TypeDeserializer()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _item(**attrs: Any) -> Item:
    """Python values -> DynamoDB attribute values (None -> NULL, bytes -> B, set -> SS)."""
    return {k: _ser.serialize(v) for k, v in attrs.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, Binary):
        return bytes(value.value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, set):
        return {_plain(v) for v in value}
    return value


def _load(item: Item) -> dict[str, Any]:
    """DynamoDB wire format -> plain Python (numbers as int, binary as bytes)."""
    return {k: _plain(_des.deserialize(v)) for k, v in item.items()}


def _key(pk: str, sk: str) -> Item:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def _error_code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


def _cancel_reasons(e: ClientError) -> list[str]:
    return [str(r.get("Code") or "None") for r in e.response.get("CancellationReasons") or []]


def _chunks(seq: Sequence[Any], n: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def _backoff(attempt: int) -> None:
    time.sleep(random.uniform(0, min(1.0, 0.01 * 2**attempt)))


# -- packed ranges ----------------------------------------------------------------------
def pack_ranges(ranges: Sequence[StreamRange]) -> tuple[list[str], list[bytes]]:
    """Ranges -> (distinct object keys, binary parts of at most RANGES_PER_PART ranges)."""
    keys: dict[str, int] = {}
    parts: list[bytes] = []
    for chunk in _chunks(ranges, RANGES_PER_PART):
        buf = bytearray()
        for r in chunk:
            k = keys.setdefault(r.object_key, len(keys))
            buf += _RANGE.pack(
                r.stream_id, r.start_offset, r.end_offset, r.position, r.size, r.max_timestamp, k
            )
        parts.append(bytes(buf))
    return list(keys), parts


def unpack_ranges(keys: Sequence[str], part: bytes) -> list[StreamRange]:
    return [
        StreamRange(sid, start, end, keys[k], pos, size, ts)
        for sid, start, end, pos, size, ts, k in _RANGE.iter_unpack(part)
    ]


class DynamoDbMetadataStore(MetadataStore):
    """All cluster metadata in one DynamoDB table (see docs/DYNAMODB.md)."""

    def __init__(
        self,
        table: str,
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        client: Any = None,
        max_attempts: int = 10,
    ) -> None:
        self.table = table
        self._own_client = client is None
        if client is None:
            client = boto3.client(
                "dynamodb",
                endpoint_url=endpoint_url,  # None: AWS_ENDPOINT_URL(_DYNAMODB) or AWS itself
                region_name=region_name,
                config=Config(
                    retries={"mode": "standard", "max_attempts": max_attempts},
                    max_pool_connections=32,
                    connect_timeout=5,
                    read_timeout=30,
                ),
            )
        self._c = client
        self._attempts = max_attempts
        self._cluster_id: str | None = None
        self._objects: OrderedDict[str, list[StreamRange]] = OrderedDict()  # immutable items
        self._objects_lock = threading.Lock()

    # -- table -------------------------------------------------------------------------
    def create_table(self) -> None:
        """Create the table (on-demand billing) if it does not exist; wait until ACTIVE.

        For tests and local use; in AWS the CDK stack owns the table.
        """
        try:
            self._c.create_table(
                TableName=self.table,
                KeySchema=[
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                AttributeDefinitions=[
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                ],
                BillingMode="PAY_PER_REQUEST",
            )
        except ClientError as e:
            if _error_code(e) != "ResourceInUseException":
                raise
        self._c.get_waiter("table_exists").wait(
            TableName=self.table, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
        )

    # -- low-level helpers ---------------------------------------------------------------
    def _retrying(self, fn: Callable[..., Any], **kw: Any) -> Any:
        """Call ``fn``, retrying write conflicts with a concurrent transaction on the item.

        botocore already retries throttling and 5xx; ``TransactionConflict`` is ours.
        """
        for attempt in range(self._attempts):
            try:
                return fn(**kw)
            except ClientError as e:
                code = _error_code(e)
                reasons = _cancel_reasons(e)
                retryable = code == "TransactionConflictException" or (
                    code == "TransactionCanceledException"
                    and "ConditionalCheckFailed" not in reasons
                    and any(r in ("TransactionConflict", "ThrottlingError") for r in reasons)
                )
                if not retryable or attempt + 1 == self._attempts:
                    raise
                _backoff(attempt)
        raise AssertionError("unreachable")

    def _get(self, pk: str, sk: str) -> dict[str, Any] | None:
        resp = self._c.get_item(TableName=self.table, Key=_key(pk, sk), ConsistentRead=True)
        item = resp.get("Item")
        return _load(item) if item else None

    def _put(self, item: Item, condition: str | None = None, **extra: Any) -> None:
        kw: dict[str, Any] = {"TableName": self.table, "Item": item, **extra}
        if condition:
            kw["ConditionExpression"] = condition
        self._retrying(self._c.put_item, **kw)

    def _update(self, pk: str, sk: str, expr: str, **extra: Any) -> dict[str, Any]:
        resp = self._retrying(
            self._c.update_item,
            TableName=self.table,
            Key=_key(pk, sk),
            UpdateExpression=expr,
            **extra,
        )
        return _load(resp.get("Attributes") or {})

    def _query_raw(
        self, pk: str, prefix: str | None = None, *, keys_only: bool = False, **extra: Any
    ) -> Iterator[Item]:
        names = {"#pk": "pk", **extra.pop("ExpressionAttributeNames", {})}
        values = {":pk": {"S": pk}, **extra.pop("ExpressionAttributeValues", {})}
        cond = "#pk = :pk"
        if prefix is not None:
            cond += " AND begins_with(#sk, :pre)"
            names["#sk"] = "sk"
            values[":pre"] = {"S": prefix}
        kw: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": cond,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ConsistentRead": True,
            **extra,
        }
        if keys_only:
            names["#sk"] = "sk"
            kw["ProjectionExpression"] = "#pk, #sk"
        while True:
            resp = self._c.query(**kw)
            yield from resp.get("Items", [])
            last = resp.get("LastEvaluatedKey")
            if not last:
                return
            kw["ExclusiveStartKey"] = last

    def _query(self, pk: str, prefix: str | None = None, **extra: Any) -> list[dict[str, Any]]:
        return [_load(i) for i in self._query_raw(pk, prefix, **extra)]

    def _batch_write(self, requests: Sequence[Item]) -> None:
        """BatchWriteItem in chunks of 25 (up to 8 in flight), resubmitting unprocessed
        requests. Not atomic: callers make a partial write harmless (see docs/DYNAMODB.md)."""
        chunks = list(_chunks(requests, MAX_BATCH_WRITE))
        if len(chunks) <= 2:
            for chunk in chunks:
                self._batch_write_chunk(chunk)
            return
        with ThreadPoolExecutor(max_workers=min(8, len(chunks))) as pool:
            for _ in pool.map(self._batch_write_chunk, chunks):
                pass

    def _batch_write_chunk(self, chunk: Sequence[Item]) -> None:
        pending: dict[str, Any] = {self.table: list(chunk)}
        for attempt in range(self._attempts + 5):
            resp = self._c.batch_write_item(RequestItems=pending)
            pending = resp.get("UnprocessedItems") or {}
            if not pending:
                return
            _backoff(attempt)
        raise MetadataError("DynamoDB kept returning unprocessed items")

    def _batch_delete(self, keys: Iterable[Item]) -> None:
        unique = {(k["pk"]["S"], k["sk"]["S"]): k for k in keys}
        self._batch_write([{"DeleteRequest": {"Key": k}} for k in unique.values()])

    def _next(self, name: str, count: int) -> int:
        """Reserve ``count`` consecutive values of a cluster-wide counter; return the first."""
        attrs = self._update(
            "CLUSTER",
            f"COUNTER#{name}",
            "SET #k = :kind ADD #v :n",
            ExpressionAttributeNames={"#k": "kind", "#v": "value"},
            ExpressionAttributeValues={":kind": {"S": "counter"}, ":n": {"N": str(count)}},
            ReturnValues="UPDATED_NEW",
        )
        return int(attrs["value"]) - count

    # -- cluster and brokers -------------------------------------------------------------
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
        try:  # housekeeping: finish object commits a crashed broker left half-indexed
            self.finish_pending_commits()
        except Exception:
            log.warning("could not roll forward pending object commits", exc_info=True)
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

    def live_brokers(self, now_ms: int) -> list[BrokerRecord]:
        return [b for b in self.brokers() if b.state == ACTIVE and b.lease_expiry_ms > now_ms]

    # -- topics --------------------------------------------------------------------------
    # Topic item (TOPICS, "<name>#"): identity, configs and the partition -> stream id map as
    # "segments" [first_partition, count, first_stream_id, leader_id], one per create /
    # add_partitions call, so creating or growing a topic is one single-item write however
    # many partitions it has. Partition items (TOPICS, "<name>#<partition>") hold mutable
    # partition state once something changes it; they apply only while their stream id
    # matches the topic item's (a later incarnation of the name has new stream ids).
    def _topic_items(self, name: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        topic: dict[str, Any] | None = None
        parts: list[dict[str, Any]] = []
        for a in self._query("TOPICS", f"{name}#"):
            if a.get("name") != name:
                continue
            if a.get("kind") == "topic":
                topic = a
            elif a.get("kind") == "partition":
                parts.append(a)
        return topic, parts

    @staticmethod
    def _record(topic: dict[str, Any], parts: Iterable[dict[str, Any]]) -> TopicRecord:
        name = str(topic["name"])
        state = {p["partition"]: p for p in parts}
        records: list[PartitionRecord] = []
        for first_p, count, first_sid, leader in topic["segments"]:
            for i in range(count):
                p, sid = first_p + i, first_sid + i
                s = state.get(p)
                if s is not None and s.get("stream_id") == sid:
                    records.append(
                        PartitionRecord(
                            name, p, sid, s["leader_id"], s["leader_epoch"], s["log_start_offset"]
                        )
                    )
                else:
                    records.append(PartitionRecord(name, p, sid, leader, 0, 0))
        records.sort(key=lambda r: r.partition)
        return TopicRecord(
            name, uuid.UUID(topic["topic_id"]), dict(topic.get("configs") or {}), tuple(records)
        )

    def _new_segment(self, first_partition: int, count: int, leader_id: int) -> list[int]:
        first_sid = self._next("stream_id", count) if count > 0 else 0
        return [first_partition, count, first_sid, leader_id]

    def create_topic(
        self, name: str, num_partitions: int, configs: dict[str, str], leader_id: int
    ) -> TopicRecord:
        for _ in range(self._attempts):
            existing, _parts = self._topic_items(name)
            if existing is not None:
                if existing.get("state") == ACTIVE:
                    raise TopicAlreadyExists(name)
                self._finish_delete(existing)  # a deletion that crashed half-way
            item = _item(
                kind="topic",
                name=name,
                topic_id=str(uuid.uuid4()),
                configs=dict(configs),
                partition_count=num_partitions,
                segments=[self._new_segment(0, num_partitions, leader_id)],
                state=ACTIVE,
                created_ms=_now_ms(),
            )
            try:
                self._put({**_key("TOPICS", f"{name}#"), **item}, "attribute_not_exists(pk)")
            except ClientError as e:
                if _error_code(e) != "ConditionalCheckFailedException":
                    raise
                continue  # created (or being deleted) concurrently: look again
            return self._record(_load(item), ())
        raise TopicAlreadyExists(name)

    def delete_topic(self, name: str) -> TopicRecord:
        for _ in range(self._attempts):
            topic, parts = self._topic_items(name)
            if topic is None:
                raise UnknownTopic(name)
            record = self._record(topic, parts)
            if topic.get("state") == ACTIVE:
                try:  # step 1: hide it (readers skip DELETING topics), then clean up
                    self._update(
                        "TOPICS",
                        f"{name}#",
                        "SET #s = :deleting",
                        ConditionExpression="#tid = :tid AND #s = :active",
                        ExpressionAttributeNames={"#s": "state", "#tid": "topic_id"},
                        ExpressionAttributeValues=_item(
                            **{":deleting": DELETING, ":active": ACTIVE, ":tid": topic["topic_id"]}
                        ),
                    )
                except ClientError as e:
                    if _error_code(e) != "ConditionalCheckFailedException":
                        raise
                    continue
            self._finish_delete(topic)
            return record
        raise MetadataError(f"could not delete topic {name}: too much contention")

    def _finish_delete(self, topic: dict[str, Any]) -> None:
        """Idempotent clean-up of a DELETING topic; deleting the topic item comes last."""
        name = str(topic["name"])
        sids = [p.stream_id for p in self._record(topic, ()).partitions]
        # The objects stay until compaction/retention drops unreferenced ones.
        with ThreadPoolExecutor(max_workers=8) as pool:
            for _ in pool.map(self._delete_stream_ranges, sids):
                pass
        _, parts = self._topic_items(name)
        self._batch_delete(_key("TOPICS", f"{name}#{p['partition']}") for p in parts)
        self._delete_topic_offsets(name)
        try:
            self._retrying(
                self._c.delete_item,
                TableName=self.table,
                Key=_key("TOPICS", f"{name}#"),
                ConditionExpression="#tid = :tid",
                ExpressionAttributeNames={"#tid": "topic_id"},
                ExpressionAttributeValues={":tid": {"S": topic["topic_id"]}},
            )
        except ClientError as e:
            if _error_code(e) != "ConditionalCheckFailedException":
                raise  # else: someone else finished this deletion

    def _delete_stream_ranges(self, stream_id: int) -> None:
        self._batch_delete(self._query_raw(f"STREAM#{stream_id}", keys_only=True))

    def add_partitions(self, name: str, new_total: int, leader_id: int) -> TopicRecord:
        for _ in range(self._attempts):
            topic, parts = self._topic_items(name)
            if topic is None or topic.get("state") != ACTIVE:
                raise UnknownTopic(name)
            current = int(topic["partition_count"])
            if new_total <= current:
                return self._record(topic, parts)
            segment = self._new_segment(current, new_total - current, leader_id)
            try:
                self._update(
                    "TOPICS",
                    f"{name}#",
                    "SET #n = :new, #seg = list_append(#seg, :seg)",
                    ConditionExpression="#tid = :tid AND #s = :active AND #n = :cur",
                    ExpressionAttributeNames={
                        "#n": "partition_count",
                        "#seg": "segments",
                        "#tid": "topic_id",
                        "#s": "state",
                    },
                    ExpressionAttributeValues=_item(
                        **{
                            ":new": new_total,
                            ":seg": [segment],
                            ":tid": topic["topic_id"],
                            ":active": ACTIVE,
                            ":cur": current,
                        }
                    ),
                )
            except ClientError as e:
                if _error_code(e) != "ConditionalCheckFailedException":
                    raise
                continue  # changed concurrently; the reserved stream ids are simply unused
            updated = self.topic(name)
            if updated is not None:
                return updated
        raise UnknownTopic(name)

    # Configs are compare-and-set on a version attribute of the item (absent: 0); a topic's
    # also on its identity (same topic_id, ACTIVE), so a re-created topic is never touched.
    def _set_configs(
        self,
        pk: str,
        sk: str,
        expected: dict[str, str],
        configs: dict[str, str],
        topic_id: str | None = None,
    ) -> None:
        item = self._get(pk, sk) or {}
        if dict(item.get("configs") or {}) != expected:
            raise ConcurrentUpdate(f"configs of {sk} changed meanwhile")
        version = int(item.get("configs_version", 0))
        names = {"#c": "configs", "#v": "configs_version"}
        values: dict[str, Any] = {":c": configs, ":v": version, ":next": version + 1}
        cond = "(attribute_not_exists(#v) OR #v = :v)"
        if topic_id is not None:
            cond += " AND #tid = :tid AND #s = :active"
            names |= {"#tid": "topic_id", "#s": "state"}
            values |= {":tid": topic_id, ":active": ACTIVE}
        try:
            self._update(
                pk,
                sk,
                "SET #c = :c, #v = :next",
                ConditionExpression=cond,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=_item(**values),
            )
        except ClientError as e:
            if _error_code(e) != "ConditionalCheckFailedException":
                raise
            raise ConcurrentUpdate(f"configs of {sk} changed meanwhile") from None

    def set_topic_configs(
        self, name: str, expected: dict[str, str], configs: dict[str, str]
    ) -> TopicRecord:
        topic = self.topic(name)
        if topic is None:
            raise UnknownTopic(name)
        try:
            self._set_configs("TOPICS", f"{name}#", expected, configs, str(topic.topic_id))
        except ConcurrentUpdate:
            if self.topic(name) is None:
                raise UnknownTopic(name) from None
            raise
        updated = self.topic(name)
        if updated is None:
            raise UnknownTopic(name)
        return updated

    def cluster_configs(self) -> dict[str, str]:
        item = self._get("CLUSTER", "CONFIGS")
        return dict(item.get("configs") or {}) if item else {}

    def set_cluster_configs(self, expected: dict[str, str], configs: dict[str, str]) -> None:
        self._set_configs("CLUSTER", "CONFIGS", expected, configs)

    def topics(self) -> list[TopicRecord]:
        by_name: dict[str, tuple[dict[str, Any] | None, list[dict[str, Any]]]] = {}
        for a in self._query("TOPICS"):
            entry = by_name.setdefault(str(a["name"]), (None, []))
            if a.get("kind") == "topic":
                by_name[str(a["name"])] = (a, entry[1])
            else:
                entry[1].append(a)
        return [
            self._record(t, parts)
            for name, (t, parts) in sorted(by_name.items())
            if t is not None and t.get("state") == ACTIVE
        ]

    def topic(self, name: str) -> TopicRecord | None:
        t, parts = self._topic_items(name)
        if t is None or t.get("state") != ACTIVE:
            return None
        return self._record(t, parts)

    # -- partition state -------------------------------------------------------------------
    # Leader, leader epoch and log start offset of a partition default to the segment's
    # leader, 0 and 0; the first change writes its partition item, and every change is a
    # compare-and-set of the whole state: one transaction of a ConditionCheck on the topic
    # item (same topic_id, ACTIVE) and a Put of the partition item conditional on the state
    # read (or on there being no item for this stream yet). Two GetItems + one transaction,
    # whatever the size of the topic or of its stream.
    @staticmethod
    def _stream_of(topic: dict[str, Any], partition: int) -> tuple[int, int] | None:
        """(stream id, initial leader) of a partition per the topic's segments."""
        for first_p, count, first_sid, leader in topic["segments"]:
            if first_p <= partition < first_p + count:
                return first_sid + partition - first_p, leader
        return None

    def _change_partition(
        self,
        name: str,
        partition: int,
        change: Callable[[PartitionRecord], PartitionRecord | None],
    ) -> PartitionRecord:
        """Read the partition, apply ``change`` (None: nothing to write) and write it back if
        nothing changed in between; re-read and apply again when something did."""
        for attempt in range(self._attempts):
            if attempt:
                _backoff(attempt)
            topic = self._get("TOPICS", f"{name}#")
            if topic is None or topic.get("state") != ACTIVE:
                raise UnknownTopic(name)
            where = self._stream_of(topic, partition)
            if where is None:
                raise UnknownTopic(f"{name}-{partition}")
            sid, initial_leader = where
            item = self._get("TOPICS", f"{name}#{partition}")
            names = {"#sid": "stream_id"}
            values: dict[str, Any] = {":sid": sid}
            if item is not None and item.get("stream_id") == sid:
                current = PartitionRecord(
                    name, partition, sid,
                    item["leader_id"], item["leader_epoch"], item["log_start_offset"],
                )  # fmt: skip
                cond = "#sid = :sid AND #l = :l AND #le = :le AND #lso = :lso"
                names.update({"#l": "leader_id", "#le": "leader_epoch", "#lso": "log_start_offset"})
                values.update(
                    {
                        ":l": current.leader_id,
                        ":le": current.leader_epoch,
                        ":lso": current.log_start_offset,
                    }
                )
            else:  # no item yet, or one left by an earlier incarnation of the name
                current = PartitionRecord(name, partition, sid, initial_leader, 0, 0)
                cond = "attribute_not_exists(#sid) OR #sid <> :sid"
            new = change(current)
            if new is None or new == current:
                return current
            try:
                self._retrying(
                    self._c.transact_write_items,
                    TransactItems=[
                        {
                            "ConditionCheck": {
                                "TableName": self.table,
                                "Key": _key("TOPICS", f"{name}#"),
                                "ConditionExpression": "#tid = :tid AND #s = :active",
                                "ExpressionAttributeNames": {"#tid": "topic_id", "#s": "state"},
                                "ExpressionAttributeValues": _item(
                                    **{":tid": topic["topic_id"], ":active": ACTIVE}
                                ),
                            }
                        },
                        {
                            "Put": {
                                "TableName": self.table,
                                "Item": {
                                    **_key("TOPICS", f"{name}#{partition}"),
                                    **_item(
                                        kind="partition",
                                        name=name,
                                        partition=partition,
                                        stream_id=sid,
                                        leader_id=new.leader_id,
                                        leader_epoch=new.leader_epoch,
                                        log_start_offset=new.log_start_offset,
                                    ),
                                },
                                "ConditionExpression": cond,
                                "ExpressionAttributeNames": names,
                                "ExpressionAttributeValues": _item(**values),
                            }
                        },
                    ],
                )
            except ClientError as e:
                if "ConditionalCheckFailed" not in _cancel_reasons(e):
                    raise
                continue  # the topic or the partition changed since we read it: look again
            return new
        raise ConcurrentUpdate(f"{name}-{partition}: too much contention")

    def move_partition(
        self,
        topic: str,
        partition: int,
        expected_leader: int,
        expected_leader_epoch: int,
        new_leader: int,
    ) -> PartitionRecord:
        def move(p: PartitionRecord) -> PartitionRecord:
            if (p.leader_id, p.leader_epoch) != (expected_leader, expected_leader_epoch):
                raise ConcurrentUpdate(
                    f"{topic}-{partition} is led by {p.leader_id} at epoch {p.leader_epoch}, "
                    f"not {expected_leader} at {expected_leader_epoch}"
                )
            return replace(p, leader_id=new_leader, leader_epoch=p.leader_epoch + 1)

        return self._change_partition(topic, partition, move)

    def partitions_led_by(self, broker_id: int) -> list[PartitionRecord]:
        # One Query of the TOPICS partition (topic items + changed partitions); failover only.
        return [p for t in self.topics() for p in t.partitions if p.leader_id == broker_id]

    def set_log_start_offset(self, topic: str, partition: int, offset: int) -> PartitionRecord:
        if offset < 0:
            raise ValueError(f"negative log start offset {offset}")

        def advance(p: PartitionRecord) -> PartitionRecord | None:
            return replace(p, log_start_offset=offset) if offset > p.log_start_offset else None

        return self._change_partition(topic, partition, advance)

    # -- objects and stream ranges -------------------------------------------------------
    def _range_put(self, r: StreamRange) -> Item:
        return {
            "Put": {
                "TableName": self.table,
                "Item": self._range_item(r),
            }
        }

    @staticmethod
    def _range_item(r: StreamRange) -> Item:
        return {
            **_key(f"STREAM#{r.stream_id}", f"R#{r.start_offset:020d}"),
            **_item(
                kind="range",
                stream_id=r.stream_id,
                start_offset=r.start_offset,
                end_offset=r.end_offset,
                object_key=r.object_key,
                position=r.position,
                size=r.size,
                max_timestamp=r.max_timestamp,
            ),
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
        self._batch_write([{"PutRequest": {"Item": self._range_item(r)}} for r in ranges])
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

    def allocate_producer_ids(self, count: int) -> int:
        return self._next("producer_id", count)

    # -- consumer groups -----------------------------------------------------------------
    # Registry item (GROUPS, <group>): the saved GroupRecord (saved=true) and, for every
    # group with offsets, the string set of topics it has offsets for plus a version that
    # each offset commit bumps. Offset items (GROUP#<group>, "<topic>#<partition>").
    def save_group(self, group: GroupRecord) -> None:
        self._update(
            "GROUPS",
            group.group_id,
            "SET #k = :k, #g = :g, #saved = :t, #gt = :gt, #pt = :pt",
            ExpressionAttributeNames={
                "#k": "kind",
                "#g": "group_id",
                "#saved": "saved",
                "#gt": "group_type",
                "#pt": "protocol_type",
            },
            ExpressionAttributeValues=_item(
                **{
                    ":k": "group",
                    ":g": group.group_id,
                    ":t": True,
                    ":gt": group.group_type,
                    ":pt": group.protocol_type,
                }
            ),
        )

    def groups(self) -> list[GroupRecord]:
        out: list[GroupRecord] = []
        for a in self._query("GROUPS"):
            if a.get("saved"):
                out.append(GroupRecord(a["sk"], a["group_type"], a["protocol_type"]))
            elif a.get("topics"):  # a group known only by its committed offsets
                out.append(GroupRecord(a["sk"], "classic", ""))
        return sorted(out, key=lambda g: g.group_id)

    def _group_version(self, group_id: str) -> int | None:
        a = self._get("GROUPS", group_id)
        return None if a is None else int(a.get("version", 0))

    def _version_condition(self, version: int | None) -> dict[str, Any]:
        if not version:
            return {
                "ConditionExpression": "attribute_not_exists(#v)",
                "ExpressionAttributeNames": {"#v": "version"},
            }
        return {
            "ConditionExpression": "#v = :v",
            "ExpressionAttributeNames": {"#v": "version"},
            "ExpressionAttributeValues": {":v": {"N": str(version)}},
        }

    def delete_group(self, group_id: str) -> None:
        for _ in range(self._attempts):
            version = self._group_version(group_id)
            self._batch_delete(self._query_raw(f"GROUP#{group_id}", keys_only=True))
            if version is None:
                return
            try:  # only if no offset commit slipped in since we read the version
                self._retrying(
                    self._c.delete_item,
                    TableName=self.table,
                    Key=_key("GROUPS", group_id),
                    **self._version_condition(version),
                )
                return
            except ClientError as e:
                if _error_code(e) != "ConditionalCheckFailedException":
                    raise
        raise MetadataError(f"could not delete group {group_id}: offsets keep being committed")

    def commit_offsets(self, group_id: str, offsets: list[CommittedOffset]) -> None:
        latest = {(o.topic, o.partition): o for o in offsets}  # last one wins, like SQLite
        if not latest:
            return
        now = _now_ms()
        registry = {
            "Update": {
                "TableName": self.table,
                "Key": _key("GROUPS", group_id),
                "UpdateExpression": "SET #k = :k ADD #topics :topics, #v :one",
                "ExpressionAttributeNames": {"#k": "kind", "#topics": "topics", "#v": "version"},
                "ExpressionAttributeValues": _item(
                    **{":k": "group", ":topics": {t for t, _ in latest}, ":one": 1}
                ),
            }
        }
        puts: list[Item] = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": {
                        **_key(f"GROUP#{group_id}", f"{o.topic}#{o.partition}"),
                        **_item(
                            kind="offset",
                            topic=o.topic,
                            partition=o.partition,
                            offset=o.offset,
                            leader_epoch=o.leader_epoch,
                            metadata=o.metadata,
                            commit_ms=o.commit_ms or now,
                        ),
                    },
                }
            }
            for o in latest.values()
        ]
        # One transaction up to 99 partitions; beyond, transactions of 100 (each atomic, the
        # registry first so its topic set always covers every stored offset).
        batches = [[registry, *puts[: MAX_TX_ITEMS - 1]]]
        batches += [list(c) for c in _chunks(puts[MAX_TX_ITEMS - 1 :], MAX_TX_ITEMS)]
        for batch in batches:
            self._retrying(self._c.transact_write_items, TransactItems=batch)

    def committed_offsets(self, group_id: str) -> list[CommittedOffset]:
        out = [
            CommittedOffset(
                a["topic"],
                a["partition"],
                a["offset"],
                a["leader_epoch"],
                a.get("metadata"),
                a["commit_ms"],
            )
            for a in self._query(f"GROUP#{group_id}")
        ]
        return sorted(out, key=lambda o: (o.topic, o.partition))

    def _topic_offset_keys(self, group_id: str, topic: str) -> list[Item]:
        return [
            _key(f"GROUP#{group_id}", f"{topic}#{a['partition']}")
            for a in self._query(f"GROUP#{group_id}", f"{topic}#")
            if a["topic"] == topic
        ]

    def _forget_topic(self, group_id: str, topic: str, version: int | None) -> bool:
        """Drop ``topic`` from the group's topic set unless offsets were committed since."""
        if version is None:
            return True
        try:
            cond = self._version_condition(version)
            self._retrying(
                self._c.update_item,
                TableName=self.table,
                Key=_key("GROUPS", group_id),
                UpdateExpression="DELETE #topics :t",
                ConditionExpression=cond["ConditionExpression"],
                ExpressionAttributeNames={**cond["ExpressionAttributeNames"], "#topics": "topics"},
                ExpressionAttributeValues={
                    **cond.get("ExpressionAttributeValues", {}),
                    ":t": {"SS": [topic]},
                },
            )
            return True
        except ClientError as e:
            if _error_code(e) != "ConditionalCheckFailedException":
                raise
            return False

    def delete_offsets(self, group_id: str, partitions: list[tuple[str, int]]) -> None:
        if not partitions:
            return
        version = self._group_version(group_id)
        self._batch_delete(_key(f"GROUP#{group_id}", f"{t}#{p}") for t, p in partitions)
        for topic in sorted({t for t, _ in partitions}):
            if not self._topic_offset_keys(group_id, topic):
                self._forget_topic(group_id, topic, version)  # best effort: a superset is fine

    def _delete_topic_offsets(self, topic: str) -> None:
        groups = self._query(
            "GROUPS",
            FilterExpression="contains(#topics, :t)",
            ExpressionAttributeNames={"#topics": "topics"},
            ExpressionAttributeValues={":t": {"S": topic}},
        )
        for g in groups:
            group_id = str(g["sk"])
            for _ in range(self._attempts):
                version = self._group_version(group_id)
                self._batch_delete(self._topic_offset_keys(group_id, topic))
                if self._forget_topic(group_id, topic, version):
                    break
            else:
                log.warning("group %s keeps committing offsets of deleted %s", group_id, topic)

    def close(self) -> None:
        if self._own_client:
            self._c.close()

    # -- transactions ----------------------------------------------------------------------
    # One item per transactional id (TXN, <id>): the record as JSON plus a version for CAS.
    # One item per stream (SNAPSHOT, <stream id>): the producer-state snapshot (binary).
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

    def allocate_broker_id(self) -> int:
        return self._next("broker_id", 1) + 1

    # -- broker info: a JSON string on the broker's item (register_broker leaves it alone) --
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

    # -- compaction and retention ----------------------------------------------------------
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
                items.append(
                    {"Put": {"TableName": t, "Item": self._range_item(replacement), **cond}}
                )
            else:
                key = _key(f"STREAM#{stream_id}", f"R#{r.start_offset:020d}")
                items.append({"Delete": {"TableName": t, "Key": key, **cond}})
        for r in new_by_start.values():
            items.append(
                {
                    "Put": {
                        "TableName": t,
                        "Item": self._range_item(r),
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

    # -- security ------------------------------------------------------------------------
    # SCRAM credentials (SCRAM, "<user>#<mechanism>"), ACLs (ACLS, the binding as JSON),
    # client quotas (QUOTAS, the entity as JSON) and listener endpoints (ENDPOINTS, <id>).
    def put_scram_credential(self, user: str, credential: ScramCredential) -> None:
        c = credential
        self._put(
            {
                **_key("SCRAM", f"{user}#{c.mechanism}"),
                **_item(
                    kind="scram",
                    user=user,
                    mechanism=c.mechanism,
                    salt=c.salt,
                    stored_key=c.stored_key,
                    server_key=c.server_key,
                    iterations=c.iterations,
                ),
            }
        )

    def delete_scram_credential(self, user: str, mechanism: str) -> bool:
        resp = self._retrying(
            self._c.delete_item,
            TableName=self.table,
            Key=_key("SCRAM", f"{user}#{mechanism}"),
            ReturnValues="ALL_OLD",
        )
        return bool(resp.get("Attributes"))

    def scram_credentials(self, user: str | None = None) -> list[tuple[str, ScramCredential]]:
        items = self._query("SCRAM", None if user is None else f"{user}#")
        out = [
            (
                str(a["user"]),
                ScramCredential(
                    str(a["mechanism"]),
                    a["salt"],
                    a["stored_key"],
                    a["server_key"],
                    int(a["iterations"]),
                ),
            )
            for a in items
            if user is None or a["user"] == user
        ]
        return sorted(out, key=lambda uc: (uc[0], uc[1].mechanism))

    @staticmethod
    def _acl_sk(a: AclBinding) -> str:
        return json.dumps(
            [a.resource_type, a.resource_name, a.pattern_type, a.principal, a.host,
             a.operation, a.permission_type]
        )  # fmt: skip

    def create_acls(self, acls: list[AclBinding]) -> None:
        self._batch_write(
            [
                {"PutRequest": {"Item": {**_key("ACLS", self._acl_sk(a)), **_item(kind="acl")}}}
                for a in dict.fromkeys(acls)
            ]
        )

    def delete_acls(self, acls: list[AclBinding]) -> None:
        self._batch_delete(_key("ACLS", self._acl_sk(a)) for a in acls)

    def acls(self) -> list[AclBinding]:
        out = [AclBinding(*json.loads(str(a["sk"]))) for a in self._query("ACLS")]
        return sorted(out, key=self._acl_sk)

    def alter_client_quota(
        self, entity: QuotaEntity, set_values: dict[str, float], remove: list[str]
    ) -> None:
        sk = json.dumps([list(e) for e in sorted(entity)])
        current = self._get("QUOTAS", sk)
        values = {k: float(v) for k, v in json.loads(current["values"]).items()} if current else {}
        for k in remove:
            values.pop(k, None)
        values.update({k: float(v) for k, v in set_values.items()})
        if values:
            self._put({**_key("QUOTAS", sk), **_item(kind="quota", values=json.dumps(values))})
        else:
            self._retrying(self._c.delete_item, TableName=self.table, Key=_key("QUOTAS", sk))

    def client_quotas(self) -> list[tuple[QuotaEntity, dict[str, float]]]:
        out = []
        for a in self._query("QUOTAS"):
            entity = tuple((t, n) for t, n in json.loads(str(a["sk"])))
            values = {k: float(v) for k, v in json.loads(a["values"]).items()}
            out.append((entity, values))
        return sorted(out, key=lambda ev: json.dumps(ev[0]))

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
