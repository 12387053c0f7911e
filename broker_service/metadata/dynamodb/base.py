"""The DynamoDB store's shared base: the client, retries, and the request helpers.

One table, keys ``pk`` (S) and ``sk`` (S), no indexes; the item shapes and protocols are in
``docs/DYNAMODB.md``. Every query is strongly consistent and paginated. The endpoint comes
from boto3's standard configuration (``AWS_ENDPOINT_URL_DYNAMODB`` / ``AWS_ENDPOINT_URL``),
so moto server and LocalStack work unchanged.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import boto3
from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import ClientError

from broker_service.metadata.dynamodb.stream_index import IndexState
from broker_service.metadata.errors import CommitDeadlinePassed, MetadataError
from broker_service.metadata.records import StreamRange

if TYPE_CHECKING:
    from broker_service.metadata.dynamodb.stream_index import Chunk, StreamState

log = logging.getLogger(__name__)

Item = dict[str, Any]  # an item in DynamoDB's wire format ({"attr": {"S": "..."}})

# DynamoDB limits (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html)
MAX_TX_ITEMS = 100  # actions per TransactWriteItems
MAX_TX_BYTES = 4_000_000  # aggregate size of one TransactWriteItems ("4 MB")
MAX_BATCH_WRITE = 25  # requests per BatchWriteItem

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


class DynamoBase:
    """The client and helpers every domain mixin of the DynamoDB store uses."""

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
        # A commit's deadline, checked before every HTTP attempt of its transaction
        # (botocore's own retries included): per thread, as calls run on worker threads.
        self._deadline = threading.local()
        client.meta.events.register(
            "before-send.dynamodb.TransactWriteItems", self._refuse_past_deadline
        )
        self._cluster_id: str | None = None
        # the stream index's writers, caches and background folder (streams.py)
        self._ix = IndexState(lambda stream_id: self.fold_stream(stream_id))

    def _refuse_past_deadline(self, **_: Any) -> None:
        deadline = getattr(self._deadline, "ms", None)
        if deadline is not None and _now_ms() >= deadline:
            raise CommitDeadlinePassed(f"commit deadline passed {_now_ms() - deadline} ms ago")

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

    def close(self) -> None:
        if self._own_client:
            self._c.close()

    # Steps one domain takes in another's items; the composed store has the real ones.
    def _delete_stream_ranges(self, stream_id: int) -> None:
        raise NotImplementedError  # streams.py

    def _release_stream(self, stream_id: int) -> None:
        raise NotImplementedError  # streams.py

    def fold_stream(self, stream_id: int, release: str | None = None) -> bool:
        raise NotImplementedError  # streams.py

    def _stream_state(self, stream_id: int) -> StreamState:
        raise NotImplementedError  # streams.py

    def _write_stream(
        self,
        state: StreamState,
        want: list[StreamRange],
        extra: list[Item],
        drop: Iterable[str] = (),
        rechunk: frozenset[str] = frozenset(),
    ) -> None:
        raise NotImplementedError  # streams.py

    def merge_chunks(self, stream_id: int, chunks: Sequence[Chunk]) -> None:
        raise NotImplementedError  # streams.py

    def _delete_topic_offsets(self, topic: str) -> None:
        raise NotImplementedError  # groups.py
