"""Commits with a deadline, and settling a commit whose outcome is unknown (both stores).

A caller that cannot tell whether its commit landed (an error after the write applied, an
answer that never came) settles it with ``abort_object_commit``: the key is written ABORTED
unless it has a record, so a late copy of the commit can never land afterwards, and the
answer says which happened."""

from __future__ import annotations

import time
import uuid

import pytest

from broker_service.metadata.dynamodb import DynamoDbMetadataStore
from broker_service.metadata.errors import (
    CommitDeadlinePassed,
    ConcurrentUpdate,
    ObjectAlreadyCommitted,
)
from broker_service.metadata.records import StreamRange
from broker_service.metadata.store import MetadataStore
from tests.cloud.fault_proxy import SLOWDOWN, FaultProxy
from tests.contract.conftest import dynamodb_client


def _setup(store: MetadataStore) -> tuple[int, int]:
    b = store.register_broker(1, "h", 1, None, 60_000)
    t = store.create_topic("t", 1, {}, [1])
    return b.epoch, t.partitions[0].stream_id


def _range(sid: int, key: str, start: int = 0, end: int = 10) -> StreamRange:
    return StreamRange(sid, start, end, key, 0, 100)


def _now_ms() -> int:
    return int(time.time() * 1000)


def test_a_commit_past_its_deadline_is_refused_and_writes_nothing(store: MetadataStore) -> None:
    epoch, sid = _setup(store)
    with pytest.raises(CommitDeadlinePassed):
        store.commit_object(1, epoch, "k1", 100, [_range(sid, "k1")], deadline_ms=_now_ms() - 1)
    assert store.stream_ranges(sid) == []
    assert store.committed_objects(["k1"]) == set()
    store.commit_object(1, epoch, "k2", 100, [_range(sid, "k2")], deadline_ms=_now_ms() + 60_000)
    assert [r.object_key for r in store.stream_ranges(sid)] == ["k2"]


def test_an_aborted_key_never_commits_afterwards(store: MetadataStore) -> None:
    epoch, sid = _setup(store)
    assert store.abort_object_commit("late") is False
    assert store.abort_object_commit("late") is False  # idempotent (a retried settle)
    with pytest.raises(ObjectAlreadyCommitted):  # the late original loses
        store.commit_object(1, epoch, "late", 100, [_range(sid, "late")])
    assert store.stream_ranges(sid) == []
    assert store.committed_objects(["late"]) == set(), "aborted is not committed"


def test_settling_a_commit_that_landed_says_it_is_durable(store: MetadataStore) -> None:
    epoch, sid = _setup(store)
    store.commit_object(1, epoch, "landed", 100, [_range(sid, "landed")])
    assert store.abort_object_commit("landed") is True
    assert store.abort_object_commit("landed") is True
    assert [r.object_key for r in store.stream_ranges(sid)] == ["landed"]
    assert store.committed_objects(["landed"]) == {"landed"}


def test_an_aborted_compaction_output_is_never_swapped_in(store: MetadataStore) -> None:
    epoch, sid = _setup(store)
    old = _range(sid, "small")
    store.commit_object(1, epoch, "small", 100, [old])
    lease = store.acquire_compactor_lease("c", 60_000, _now_ms())
    assert store.abort_object_commit("merged") is False
    with pytest.raises(ConcurrentUpdate):
        store.replace_stream_ranges(lease.epoch, sid, [old], [_range(sid, "merged")], "merged",
                                    100, _now_ms())  # fmt: skip
    assert store.stream_ranges(sid) == [old]


def test_dynamodb_checks_the_deadline_before_each_retry(dynamodb_endpoint: str) -> None:
    """The first attempt leaves before the deadline and is refused by the service (503, not
    applied) after it; botocore's retry must not go out: past its deadline, the commit is
    refused without being sent. (SQLite checks inside its transaction: no retries.)"""
    table = f"meta-{uuid.uuid4().hex[:12]}"
    store = DynamoDbMetadataStore(table, client=dynamodb_client(dynamodb_endpoint))
    store.create_table()
    epoch, sid = _setup(store)
    with FaultProxy(dynamodb_endpoint, delay=0.2) as proxy:
        slow = DynamoDbMetadataStore(table, client=dynamodb_client(proxy.endpoint))
        # A first commit claims the stream for the broker's log: the next one is a single
        # TransactWriteItems, which leaves at once (well before its deadline).
        slow.commit_object(1, epoch, "k0", 100, [_range(sid, "k0")])
        proxy.add(SLOWDOWN, "POST", op="TransactWriteItems", times=5)
        sent = len(proxy.ops("TransactWriteItems"))
        with pytest.raises(CommitDeadlinePassed):
            slow.commit_object(1, epoch, "k", 100, [_range(sid, "k", 10, 20)],
                               deadline_ms=_now_ms() + 100)  # fmt: skip
        assert proxy.ops("TransactWriteItems")[sent:] == [503], (
            "one attempt, no retry past the deadline"
        )
    assert [r.object_key for r in store.stream_ranges(sid)] == ["k0"]
