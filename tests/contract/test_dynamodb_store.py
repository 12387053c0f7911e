"""DynamoDB-only behaviour: endpoint configuration, DynamoDB limits and crash recovery.

All against a real moto server over HTTP (see conftest.py).
"""

from __future__ import annotations

import dataclasses
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from broker_service.metadata.dynamodb import (
    MAX_RANGES_PER_OBJECT,
    DynamoDbMetadataStore,
    pack_ranges,
)
from broker_service.metadata.dynamodb import ranges as ranges_layout
from broker_service.metadata.errors import (
    ConcurrentUpdate,
    MetadataError,
    TopicAlreadyExists,
    UnknownTopic,
)
from broker_service.metadata.records import (
    CommittedOffset,
    GroupRecord,
    PartitionRecord,
    StreamRange,
)

from .conftest import REGION, dynamodb_client


def test_endpoint_and_region_come_from_the_standard_environment(
    dynamodb_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_endpoint)
    store = DynamoDbMetadataStore(f"env-{uuid.uuid4().hex[:8]}")
    store.create_table()
    store.create_table()  # idempotent
    assert store.create_topic("t", 1, {}, [1]).name == "t"
    assert store.topic("t") is not None
    store.close()


def _wide_commit(store: DynamoDbMetadataStore, n: int, key: str) -> list[StreamRange]:
    me = store.register_broker(1, "h", 1, None, 1000)
    t = store.topic("wide") or store.create_topic("wide", n, {}, [1])
    ranges = [
        StreamRange(p.stream_id, 0, 7, key, 10 * i, 10, 5) for i, p in enumerate(t.partitions)
    ]
    store.commit_object(1, me.epoch, key, 10 * n, ranges)
    return ranges


def test_commit_larger_than_one_item_is_atomic_and_readable(
    open_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A log entry whose packed ranges outweigh one item (at the real 350 KB per item, tens
    of thousands of partitions in one object): here items of 1,000 bytes, so 300 ranges make
    the entry and more part items, all in the one transaction that is the commit."""
    monkeypatch.setattr(ranges_layout, "PART_BYTES", 1000)
    store, reader = open_store(), open_store()
    n = 300
    calls: list[tuple[str, int]] = []

    def count(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append((model.name, len(params.get("TransactItems", []))))

    store._c.meta.events.register("provide-client-params.dynamodb.*", count)
    ranges = _wide_commit(store, n, "huge")
    parts = len(pack_ranges(ranges)[1])
    assert parts >= 3
    # broker check + object record + log entry + its further parts; claims before it
    assert [c for c in calls if c[0] == "TransactWriteItems"] == [("TransactWriteItems", 2 + parts)]
    sample = ranges[:: n // 8] + [ranges[-1]]  # moto scans the whole table per query
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(reader.stream_ranges, [r.stream_id for r in sample]))
    assert got == [[r] for r in sample]


def test_a_committed_object_key_cannot_be_committed_again(open_store: Any) -> None:
    store = open_store()
    me = store.register_broker(1, "h", 1, None, 1000)
    sid = store.create_topic("t", 1, {}, [1]).partitions[0].stream_id
    r = StreamRange(sid, 0, 5, "k", 0, 50, 1)
    store.commit_object(1, me.epoch, "k", 50, [r])
    with pytest.raises(MetadataError, match="already committed"):
        store.commit_object(1, me.epoch, "k", 50, [StreamRange(sid, 5, 9, "k", 0, 40, 1)])
    with pytest.raises(MetadataError, match="duplicate"):
        store.commit_object(1, me.epoch, "k2", 50, [r, r])
    too_many = [StreamRange(i, 0, 1, "k3", 0, 1, 1) for i in range(MAX_RANGES_PER_OBJECT + 1)]
    with pytest.raises(MetadataError, match="ranges in one object"):  # > 4 MB transaction
        store.commit_object(1, me.epoch, "k3", 50, too_many)
    assert store.stream_ranges(sid) == [r]


def test_partition_state_items_apply_only_to_their_stream(
    open_store: Any, dynamodb_endpoint: str, table: str
) -> None:
    """Mutable partition state lives in (TOPICS, "<name>#<partition>") items keyed to a
    stream id; an item left over from an earlier incarnation of the name is ignored."""
    store = open_store()
    t = store.create_topic("t", 2, {}, [1])
    client = dynamodb_client(dynamodb_endpoint)

    def put_state(partition: int, stream_id: int) -> None:
        client.put_item(
            TableName=table,
            Item={
                "pk": {"S": "TOPICS"},
                "sk": {"S": f"t#{partition}"},
                "kind": {"S": "partition"},
                "name": {"S": "t"},
                "partition": {"N": str(partition)},
                "stream_id": {"N": str(stream_id)},
                "leader_id": {"N": "4"},
                "leader_epoch": {"N": "3"},
                "log_start_offset": {"N": "100"},
            },
        )

    put_state(0, t.partitions[0].stream_id)
    put_state(1, 999_999)  # stale: not this topic's stream
    got = store.topic("t")
    assert got is not None
    p0, p1 = got.partitions
    assert (p0.leader_id, p0.leader_epoch, p0.log_start_offset) == (4, 3, 100)
    assert p1 == t.partitions[1]
    assert store.topics() == [got]
    store.delete_topic("t")  # removes the partition items too
    again = store.create_topic("t", 2, {}, [1])
    assert all(p.leader_epoch == 0 and p.log_start_offset == 0 for p in again.partitions)


def test_a_deletion_that_crashed_half_way_is_finished_later(
    open_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store()
    me = store.register_broker(1, "h", 1, None, 1000)
    t = store.create_topic("t", 2, {}, [1])
    sid = t.partitions[0].stream_id
    store.commit_object(1, me.epoch, "k", 5, [StreamRange(sid, 0, 5, "k", 0, 5, 1)])
    store.save_group(GroupRecord("g", "classic", "consumer"))
    store.commit_offsets("g", [CommittedOffset("t", 0, 3, 0, None, 1)])

    def crash(self: DynamoDbMetadataStore, topic: str) -> None:
        raise ConnectionError("died")

    with monkeypatch.context() as mp:
        mp.setattr(DynamoDbMetadataStore, "_delete_topic_offsets", crash)
        with pytest.raises(ConnectionError):
            store.delete_topic("t")
    assert store.topic("t") is None and store.topics() == []  # hidden while DELETING
    with pytest.raises(UnknownTopic):
        store.add_partitions("t", 3, [1])
    again = store.create_topic("t", 1, {}, [1])  # finishes the old deletion first
    assert store.committed_offsets("g") == []
    assert store.stream_ranges(sid) == []
    assert store.topic("t") == again
    with pytest.raises(TopicAlreadyExists):
        store.create_topic("t", 1, {}, [1])


def test_partition_moves_and_log_start_offsets_are_constant_size(open_store: Any) -> None:
    """Two GetItems and one two-action transaction, however big the topic or its stream."""
    store = open_store()
    me = store.register_broker(1, "h", 1, None, 60_000)
    t = store.create_topic("wide", 1000, {}, [1])
    store.add_partitions("wide", 1200, [2])
    for i in range(3):  # other changed partitions and committed ranges do not matter
        store.move_partition("wide", i, 1, 0, 3)
    sid = t.partitions[500].stream_id
    ranges = [StreamRange(sid, i * 10, i * 10 + 10, f"o{i}", 0, 10, 1) for i in range(20)]
    for i, r in enumerate(ranges):
        store.commit_object(1, me.epoch, f"o{i}", 10, [r])
    # a recoverer or balancer moves it (the committing broker's own graceful move also folds
    # the stream and drops its cursor: tests/contract/test_dynamodb_stream_index.py)
    store = open_store()
    calls: list[tuple[str, int]] = []

    def count(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append((model.name, len(params.get("TransactItems", []))))

    store._c.meta.events.register("provide-client-params.dynamodb.*", count)
    moved = store.move_partition("wide", 500, 1, 0, 2)
    assert calls == [("GetItem", 0), ("GetItem", 0), ("TransactWriteItems", 2)]
    calls.clear()
    store.move_partition("wide", 1100, 2, 0, 1)  # a partition of the second segment
    store.set_log_start_offset("wide", 500, 30)
    assert calls == [("GetItem", 0), ("GetItem", 0), ("TransactWriteItems", 2)] * 2
    calls.clear()
    assert store.set_log_start_offset("wide", 500, 20).log_start_offset == 30  # no write
    assert calls == [("GetItem", 0), ("GetItem", 0)]
    store._c.meta.events.unregister("provide-client-params.dynamodb.*", count)
    assert store.stream_ranges(sid) == ranges
    got = store.topic("wide")
    assert got.partitions[500] == dataclasses.replace(moved, log_start_offset=30)
    assert (got.partitions[1100].leader_id, got.partitions[1100].leader_epoch) == (1, 1)


def test_a_leftover_partition_item_of_an_earlier_incarnation_is_overwritten(
    open_store: Any, dynamodb_endpoint: str, table: str
) -> None:
    store = open_store()
    t = store.create_topic("t", 1, {}, [1])
    dynamodb_client(dynamodb_endpoint).put_item(  # e.g. written by a crashed older version
        TableName=table,
        Item={
            "pk": {"S": "TOPICS"},
            "sk": {"S": "t#0"},
            "kind": {"S": "partition"},
            "name": {"S": "t"},
            "partition": {"N": "0"},
            "stream_id": {"N": "999999"},
            "leader_id": {"N": "4"},
            "leader_epoch": {"N": "3"},
            "log_start_offset": {"N": "100"},
        },
    )
    assert store.topic("t") == t  # ignored by readers
    with pytest.raises(ConcurrentUpdate):  # and by compare-and-set
        store.move_partition("t", 0, 4, 3, 2)
    moved = store.move_partition("t", 0, 1, 0, 2)
    assert moved == PartitionRecord("t", 0, t.partitions[0].stream_id, 2, 1, 0)
    assert store.topic("t").partitions == (moved,)


def test_a_placement_is_stored_per_segment_however_many_partitions(
    open_store: Any, dynamodb_endpoint: str, table: str
) -> None:
    """A round-robin placement is one list of leaders per segment (the number of brokers),
    not one per partition: 1000 + 1000 partitions over 50 brokers stay a small item."""
    store = open_store()
    brokers = list(range(1, 51))
    store.create_topic("wide", 1000, {}, brokers)
    grown = store.add_partitions("wide", 2000, brokers[7:] + brokers[:7])
    assert [(p.leader_id, p.leader_epoch) for p in grown.partitions] == [
        (1 + p % 50, 0) if p < 1000 else (1 + (p - 1000 + 7) % 50, 0) for p in range(2000)
    ]
    raw = dynamodb_client(dynamodb_endpoint).get_item(
        TableName=table, Key={"pk": {"S": "TOPICS"}, "sk": {"S": "wide#"}}
    )["Item"]
    segments = raw["segments"]["L"]
    assert [len(s["L"][3]["L"]) for s in segments] == [50, 50]
    assert len(str(raw)) < 20_000  # far from DynamoDB's 400 KB item limit
    # one leader is stored as one number, the only form before placement at creation
    store.create_topic("one", 3, {}, [4])
    raw = dynamodb_client(dynamodb_endpoint).get_item(
        TableName=table, Key={"pk": {"S": "TOPICS"}, "sk": {"S": "one#"}}
    )["Item"]
    assert [s["L"][3] for s in raw["segments"]["L"]] == [{"N": "4"}]
    assert open_store().topic("wide") == grown


def test_a_topic_item_of_the_layout_before_placement_still_loads(
    open_store: Any, dynamodb_endpoint: str, table: str
) -> None:
    """Segments written before placement at creation hold one leader number each."""
    store = open_store()
    dynamodb_client(dynamodb_endpoint).put_item(
        TableName=table,
        Item={
            "pk": {"S": "TOPICS"},
            "sk": {"S": "old#"},
            "kind": {"S": "topic"},
            "name": {"S": "old"},
            "topic_id": {"S": str(uuid.uuid4())},
            "configs": {"M": {}},
            "partition_count": {"N": "3"},
            "segments": {"L": [
                {"L": [{"N": "0"}, {"N": "2"}, {"N": "500"}, {"N": "1"}]},
                {"L": [{"N": "2"}, {"N": "1"}, {"N": "900"}, {"N": "2"}]},
            ]},
            "state": {"S": "ACTIVE"},
            "created_ms": {"N": "1"},
        },
    )  # fmt: skip
    old = store.topic("old")
    assert old is not None
    assert [(p.partition, p.stream_id, p.leader_id, p.leader_epoch) for p in old.partitions] == [
        (0, 500, 1, 0), (1, 501, 1, 0), (2, 900, 2, 0),
    ]  # fmt: skip
    assert store.move_partition("old", 2, 2, 0, 3).leader_epoch == 1
    grown = store.add_partitions("old", 5, [3, 1])
    assert [(p.leader_id, p.leader_epoch) for p in grown.partitions] == [
        (1, 0), (1, 0), (3, 1), (3, 0), (1, 0),
    ]  # fmt: skip
