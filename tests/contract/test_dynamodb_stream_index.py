"""The DynamoDB store's lean commits and stream index (metadata/dynamodb/streams.py), against
a real moto server over HTTP: O(1) items per commit, reads bounded by the unfolded tail,
takeover after fencing, commits whose answer was lost, graceful moves, compaction swaps.

Requests are observed with botocore's event hooks on the store's own client; faults (a lost
answer, a request that never left) are raised from those hooks, as a network would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from botocore.exceptions import ConnectionClosedError, EndpointConnectionError

from broker_service.metadata.dynamodb import DynamoDbMetadataStore
from broker_service.metadata.dynamodb.stream_index import (
    Head,
    entry_sk,
    log_name,
    log_pk,
    stream_pk,
)
from broker_service.metadata.errors import BrokerFenced, MetadataError, ObjectAlreadyCommitted
from broker_service.metadata.records import StreamRange

from .conftest import dynamodb_client

Open = Callable[[], DynamoDbMetadataStore]


@contextmanager
def recording(store: DynamoDbMetadataStore) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Every request the store sends in the block: (operation, params)."""
    calls: list[tuple[str, dict[str, Any]]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append((model.name, params))

    store._c.meta.events.register("provide-client-params.dynamodb.*", record)
    try:
        yield calls
    finally:
        store._c.meta.events.unregister("provide-client-params.dynamodb.*", record)


def _writes(calls: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, int]]:
    return [
        (op, len(p.get("TransactItems", [])))
        for op, p in calls
        if op in ("TransactWriteItems", "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem")
    ]


def _queried(calls: list[tuple[str, dict[str, Any]]], pk: str) -> int:
    return sum(
        1 for op, p in calls if op == "Query" and p["ExpressionAttributeValues"][":pk"]["S"] == pk
    )


def _commit(
    store: DynamoDbMetadataStore, broker: int, epoch: int, key: str, sids: list[int], at: int
) -> list[StreamRange]:
    ranges = [StreamRange(sid, at, at + 5, key, 100 * i, 100, at) for i, sid in enumerate(sids)]
    store.commit_object(broker, epoch, key, 100 * len(sids), ranges)
    return ranges


@pytest.mark.parametrize("partitions", [1, 32, 256])
def test_a_commit_writes_three_items_whatever_the_number_of_streams(
    open_store: Open, partitions: int
) -> None:
    store = open_store()
    me = store.register_broker(1, "h", 1, None, 60_000)
    sids = [p.stream_id for p in store.create_topic("t", partitions, {}, [1]).partitions]
    with recording(store) as calls:
        _commit(store, 1, me.epoch, "first", sids, 0)
    # the first commit of each stream under this epoch claims it (once), then the commit
    assert _writes(calls) == [("UpdateItem", 0)] * partitions + [("TransactWriteItems", 3)]
    for i in range(1, 4):
        with recording(store) as calls:
            _commit(store, 1, me.epoch, f"k{i}", sids, 5 * i)
        assert _writes(calls) == [("TransactWriteItems", 3)]  # broker check, object, log entry
    reader = open_store()
    assert [len(reader.stream_ranges(s)) for s in (sids[0], sids[-1])] == [4, 4]


@pytest.mark.heavy  # hundreds of commits through the one-request-at-a-time moto
def test_reads_are_bounded_by_the_unfolded_tail_not_by_history(open_store: Open) -> None:
    store = open_store()
    store.fold_every = 16
    me = store.register_broker(1, "h", 1, None, 60_000)
    sids = [p.stream_id for p in store.create_topic("t", 3, {}, [1]).partitions]
    want = [r for i in range(200) for r in _commit(store, 1, me.epoch, f"k{i}", sids, 5 * i)]
    store.flush_index()  # what the background folder does every 16 ranges of a stream
    extra = [r for i in range(200, 205) for r in _commit(store, 1, me.epoch, f"k{i}", sids, 5 * i)]
    reader = open_store()
    returned: list[int] = []

    def count_items(parsed: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name == "Query":
            returned.append(len(parsed.get("Items", [])))

    reader._c.meta.events.register("after-call.dynamodb.Query", count_items)
    with recording(reader) as calls:
        got = reader.stream_ranges(sids[1])
    assert got == sorted([r for r in want + extra if r.stream_id == sids[1]],
                         key=lambda r: r.start_offset)  # fmt: skip
    ops = [op for op, _ in calls]
    # the head, its chunks, the live broker epochs, the log after the cursor: 4 requests
    assert ops.count("GetItem") == 1 and ops.count("Query") <= 3, ops
    assert _queried(calls, log_pk(log_name(1, me.epoch))) == 1
    assert max(returned) <= 205 // 16 * 3 + 16  # never the 205 entries of the whole log


def test_a_takeover_after_fencing_reads_the_dead_log_once_and_forgets_it(
    open_store: Open,
) -> None:
    a, b = open_store(), open_store()
    # a folds only when told, so every head gets the same cursor into a's log: background
    # folds finish when they finish, and heads left at different cursors make a reader query
    # the log once per lower cursor (a loaded CI host: 2 queries, not 1)
    a.fold_every, b.fold_every = 10**6, 10
    ea = a.register_broker(1, "a", 1, None, 60_000).epoch
    eb = b.register_broker(2, "b", 2, None, 60_000).epoch
    sids = [p.stream_id for p in a.create_topic("t", 8, {}, [1]).partitions]
    want = [r for i in range(20) for r in _commit(a, 1, ea, f"a{i}", sids, 5 * i)]
    a.flush_index()  # every stream folded to a's 20th commit...
    want += [r for i in range(20, 25) for r in _commit(a, 1, ea, f"a{i}", sids, 5 * i)]
    # ...and a tail of 5 commits the dead broker never folded
    b.fence_broker(1, ea)
    with pytest.raises(BrokerFenced):
        _commit(a, 1, ea, "late", sids, 500)
    reader = open_store()
    with recording(reader) as calls:
        for sid in sids:
            assert reader.stream_ranges(sid) == [r for r in want if r.stream_id == sid]
    assert _queried(calls, log_pk(log_name(1, ea))) == 1  # read to its end once, for all 8
    want += [r for i in range(25, 40) for r in _commit(b, 2, eb, f"b{i}", sids, 5 * i)]
    b.flush_index()
    for sid in sids:
        head = Head.load(b._get(stream_pk(sid), "HEAD"))
        assert list(head.cursors) == [log_name(2, eb)]  # a's dropped
        assert open_store().stream_ranges(sid) == [r for r in want if r.stream_id == sid]


def test_a_lost_answer_after_the_commit_applied_is_settled_as_committed(open_store: Open) -> None:
    store = open_store()
    me = store.register_broker(1, "h", 1, None, 60_000)
    sid = store.create_topic("t", 1, {}, [1]).partitions[0].stream_id
    _commit(store, 1, me.epoch, "k0", [sid], 0)
    lost = {"n": 0}

    def lose_answer(model: Any, **_: Any) -> None:
        if model.name == "TransactWriteItems" and lost["n"] == 0:
            lost["n"] += 1
            raise ConnectionClosedError(endpoint_url="http://moto")

    store._c.meta.events.register("after-call.dynamodb.TransactWriteItems", lose_answer)
    r1 = _commit(store, 1, me.epoch, "k1", [sid], 5)  # no error: it is known to have landed
    assert lost["n"] == 1
    store._c.meta.events.unregister("after-call.dynamodb.TransactWriteItems", lose_answer)
    with pytest.raises(ObjectAlreadyCommitted):  # and a retry of the same key is harmless
        _commit(store, 1, me.epoch, "k1", [sid], 5)
    r2 = _commit(store, 1, me.epoch, "k2", [sid], 10)
    assert [r.object_key for r in open_store().stream_ranges(sid)] == ["k0", "k1", "k2"]
    assert (r1[0].end_offset, r2[0].start_offset) == (10, 10)


def test_a_commit_that_never_left_is_sealed_and_can_never_land_later(
    open_store: Open, dynamodb_endpoint: str, table: str
) -> None:
    store = open_store()
    me = store.register_broker(1, "h", 1, None, 60_000)
    sid = store.create_topic("t", 1, {}, [1]).partitions[0].stream_id
    _commit(store, 1, me.epoch, "k0", [sid], 0)
    held: dict[str, Any] = {}

    def never_sent(params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name == "TransactWriteItems" and not held:
            held.update(params)  # a request stuck somewhere on the network...
            raise EndpointConnectionError(endpoint_url="http://moto")

    store._c.meta.events.register("provide-client-params.dynamodb.TransactWriteItems", never_sent)
    with pytest.raises(EndpointConnectionError):
        _commit(store, 1, me.epoch, "k1", [sid], 5)
    store._c.meta.events.unregister("provide-client-params.dynamodb.TransactWriteItems", never_sent)
    client = dynamodb_client(dynamodb_endpoint)
    log_ = log_pk(log_name(1, me.epoch))
    seq = int(store._get("OBJECT#k0", "OBJECT")["seq"]) + 1
    sealed = client.get_item(TableName=table, Key={"pk": {"S": log_}, "sk": {"S": entry_sk(seq)}})
    assert sealed["Item"]["kind"]["S"] == "log-tombstone"
    with pytest.raises(client.exceptions.TransactionCanceledException):
        client.transact_write_items(**held)  # ...arrives late: it cannot apply any more
    assert store._get("OBJECT#k1", "OBJECT") is None
    _commit(store, 1, me.epoch, "k1", [sid], 5)  # the caller's retry
    assert int(store._get("OBJECT#k1", "OBJECT")["seq"]) == seq + 1
    assert [r.object_key for r in open_store().stream_ranges(sid)] == ["k0", "k1"]


def test_an_unknown_outcome_holds_the_epochs_next_commit_until_it_is_known(
    open_store: Open,
) -> None:
    store = open_store()
    me = store.register_broker(1, "h", 1, None, 60_000)
    sid = store.create_topic("t", 1, {}, [1]).partitions[0].stream_id
    _commit(store, 1, me.epoch, "k0", [sid], 0)
    down = {"on": True}

    def network_down(model: Any, **_: Any) -> None:
        if down["on"] and model.name in ("TransactWriteItems", "PutItem", "GetItem"):
            raise EndpointConnectionError(endpoint_url="http://moto")

    store._c.meta.events.register("provide-client-params.dynamodb.*", network_down)
    with pytest.raises(EndpointConnectionError):  # neither the commit nor its seal got out
        _commit(store, 1, me.epoch, "k1", [sid], 5)
    with pytest.raises(EndpointConnectionError):  # still unknown: no later seq is written
        _commit(store, 1, me.epoch, "k1", [sid], 5)
    down["on"] = False
    store._c.meta.events.unregister("provide-client-params.dynamodb.*", network_down)
    _commit(store, 1, me.epoch, "k1", [sid], 5)
    assert [r.object_key for r in open_store().stream_ranges(sid)] == ["k0", "k1"]


def test_a_graceful_move_folds_the_stream_and_drops_the_old_leaders_log(
    open_store: Open,
) -> None:
    a, b = open_store(), open_store()
    ea = a.register_broker(1, "a", 1, None, 60_000).epoch
    eb = b.register_broker(2, "b", 2, None, 60_000).epoch
    t = a.create_topic("t", 2, {}, [1])
    sids = [p.stream_id for p in t.partitions]
    want = [r for i in range(10) for r in _commit(a, 1, ea, f"a{i}", sids, 5 * i)]
    a.move_partition("t", 0, 1, 0, 2)  # the leader hands partition 0 over
    head = Head.load(a._get(stream_pk(sids[0]), "HEAD"))
    assert head.cursors == {} and head.chunk_count == 1
    more = _commit(b, 2, eb, "b0", [sids[0]], 50)
    reader = open_store()
    with recording(reader) as calls:
        assert reader.stream_ranges(sids[0]) == [r for r in want if r.stream_id == sids[0]] + more
    assert _queried(calls, log_pk(log_name(1, ea))) == 0  # the new leader never reads a's log
    _commit(a, 1, ea, "a10", [sids[1]], 50)  # a still leads partition 1: its cursor stays
    assert [r.object_key for r in reader.stream_ranges(sids[1])][-1] == "a10"
    a.move_partition("t", 1, 1, 0, 2)
    b.move_partition("t", 1, 2, 1, 1)  # ...and back: a claims it again before committing
    _commit(a, 1, ea, "a11", [sids[1]], 55)
    assert [r.object_key for r in open_store().stream_ranges(sids[1])][-2:] == ["a10", "a11"]


@pytest.mark.parametrize(
    "history", [60, pytest.param(300, marks=pytest.mark.heavy)]  # 300: ~1,000 requests
)
def test_a_compaction_swap_writes_the_same_items_whatever_the_streams_length(
    open_store: Open, history: int
) -> None:
    store = open_store()
    store.fold_every = 50
    me = store.register_broker(1, "h", 1, None, 60_000)
    sid = store.create_topic("t", 1, {}, [1]).partitions[0].stream_id
    for i in range(history):
        _commit(store, 1, me.epoch, f"k{i}", [sid], 5 * i)
    store.flush_index()
    for i in range(history, history + 7):  # and an unfolded tail
        _commit(store, 1, me.epoch, f"k{i}", [sid], 5 * i)
    lease = store.acquire_compactor_lease("c", 60_000, 1)
    ranges = store.stream_ranges(sid)
    old = ranges[history - 20 : history + 5]  # across the last chunk and into the tail
    new = StreamRange(sid, old[0].start_offset, old[-1].end_offset, "merged", 0, 2500, 1)
    with recording(store) as calls:
        store.replace_stream_ranges(lease.epoch, sid, old, [new], "merged", 2500, 2)
    tx = [p["TransactItems"] for op, p in calls if op == "TransactWriteItems"]
    assert len(tx) == 1
    chunk_actions = [
        a for a in tx[0] for v in a.values() if v["Key" if "Key" in v else "Item"]["pk"]["S"]
        == stream_pk(sid) and "HEAD" not in str(v)
    ]  # fmt: skip
    # lease + new object + head + at most two chunks replaced and two written, however long
    # the stream and however many objects the old ranges were in
    assert len(tx[0]) <= 2 + 1 + 4 and len(chunk_actions) <= 4
    want = ranges[: history - 20] + [new] + ranges[history + 5 :]
    assert store.stream_ranges(sid) == want
    assert open_store().stream_ranges(sid) == want
    assert store.released_objects() == {}  # garbage collection marks what no range names
    store.forget_objects([old[0].object_key])  # its log entry goes with the record
    assert store._get(log_pk(log_name(1, me.epoch)), entry_sk(history - 20 + 1)) is None
    assert open_store().stream_ranges(sid) == want


def test_a_swap_across_more_chunks_than_a_transaction_holds_merges_them_first(
    open_store: Open,
) -> None:
    """A stream folded in many small steps (moves, restarts) has many small chunks; a swap
    whose old ranges lie in more of them than one transaction can delete first merges them
    (the same ranges) and then lands."""
    store = open_store()
    me = store.register_broker(1, "h", 1, None, 60_000)
    sid = store.create_topic("t", 1, {}, [1]).partitions[0].stream_id
    for i in range(110):
        _commit(store, 1, me.epoch, f"k{i}", [sid], 5 * i)
        store.fold_stream(sid)  # a chunk of one range each
    assert Head.load(store._get(stream_pk(sid), "HEAD")).chunk_count == 110
    ranges = store.stream_ranges(sid)
    lease = store.acquire_compactor_lease("c", 60_000, 1)
    old = ranges[:105]
    new = StreamRange(sid, old[0].start_offset, old[-1].end_offset, "merged", 0, 10_500, 1)
    with recording(store) as calls:
        store.replace_stream_ranges(lease.epoch, sid, old, [new], "merged", 10_500, 2)
    tx = [p["TransactItems"] for op, p in calls if op == "TransactWriteItems"]
    assert len(tx) == 2 and all(len(t) <= 100 for t in tx)  # a chunk merge, then the swap
    want = [new, *ranges[105:]]
    assert store.stream_ranges(sid) == want
    assert open_store().stream_ranges(sid) == want


def test_a_fold_racing_a_new_claim_keeps_the_claim(open_store: Open) -> None:
    a, b = open_store(), open_store()
    ea = a.register_broker(1, "a", 1, None, 60_000).epoch
    eb = b.register_broker(2, "b", 2, None, 60_000).epoch
    sid = a.create_topic("t", 1, {}, [1]).partitions[0].stream_id
    want = [r for i in range(5) for r in _commit(a, 1, ea, f"a{i}", [sid], 5 * i)]
    real = DynamoDbMetadataStore._stream_state
    raced = {"n": 0}

    def state_then_claim(self: DynamoDbMetadataStore, stream_id: int) -> Any:
        state = real(self, stream_id)
        if self is a and raced["n"] == 0:  # b claims between a's read and a's write
            raced["n"] += 1
            want.extend(_commit(b, 2, eb, "b0", [sid], 25))
        return state

    a._stream_state = state_then_claim.__get__(a)  # type: ignore[method-assign]
    assert a.fold_stream(sid)
    head = Head.load(a._get(stream_pk(sid), "HEAD"))
    assert set(head.cursors) == {log_name(1, ea), log_name(2, eb)}
    assert open_store().stream_ranges(sid) == want


def test_a_torn_read_of_the_chunks_is_refused_not_returned(
    open_store: Open, dynamodb_endpoint: str, table: str
) -> None:
    store = open_store()
    store.fold_every = 5
    me = store.register_broker(1, "h", 1, None, 60_000)
    sid = store.create_topic("t", 1, {}, [1]).partitions[0].stream_id
    for i in range(10):
        _commit(store, 1, me.epoch, f"k{i}", [sid], 5 * i)
    store.flush_index()
    dynamodb_client(dynamodb_endpoint).put_item(  # a chunk the head does not list
        TableName=table,
        Item={
            "pk": {"S": stream_pk(sid)},
            "sk": {"S": "C#00000000000000000000#stray"},
            "keys": {"L": []},
            "ranges": {"B": b""},
        },
    )
    with pytest.raises(MetadataError, match="keep changing"):
        open_store().stream_ranges(sid)


def test_a_garbage_collection_run_marks_its_objects_in_one_item(
    open_store: Open, dynamodb_endpoint: str, table: str
) -> None:
    """Release marks are one item per run (front-coded keys), not one per object: marking 300
    objects is one PutItem; forgetting some rewrites that item, forgetting the rest deletes
    it; a mark written one item per object (tables from before) is still read and dropped."""
    store = open_store()
    me = store.register_broker(1, "h", 1, None, 60_000)
    sid = store.create_topic("t", 1, {}, [1]).partitions[0].stream_id
    keys = [f"wal/1-{me.epoch}-{1_700_000_000_000_000_000 + i}-{i}.sso" for i in range(300)]
    for i, key in enumerate(keys[:3]):
        _commit(store, 1, me.epoch, key, [sid], 5 * i)
    dynamodb_client(dynamodb_endpoint).put_item(
        TableName=table,
        Item={"pk": {"S": "RELEASED"}, "sk": {"S": "wal/old"}, "kind": {"S": "released"},
              "released_ms": {"N": "5"}},
    )  # fmt: skip
    with recording(store) as calls:
        store.mark_released(keys, 1000)
    assert _writes(calls) == [("PutItem", 0)]
    assert store.released_objects() == {"wal/old": 5, **{k: 1000 for k in keys}}
    with recording(store) as calls:
        store.forget_objects(keys[:3] + ["wal/old"])
    assert store.committed_objects(keys[:3]) == set()
    assert ("PutItem", 0) in _writes(calls)  # the marks item, rewritten without them
    assert store.released_objects() == {k: 1000 for k in keys[3:]}
    store.unmark_released(keys[3:])
    assert store.released_objects() == {}
    assert store._query("RELEASED") == []
