"""The MetadataStore's transaction state and producer snapshots, on every backend."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from broker_service.metadata.errors import ConcurrentUpdate
from broker_service.metadata.records import TXN_ONGOING, CommittedOffset, TxnRecord
from broker_service.metadata.store import MetadataStore

from .conftest import Backend


def test_transaction_record_round_trips_with_its_offsets(store: MetadataStore) -> None:
    assert store.transaction("tx") is None
    rec = store.save_transaction(TxnRecord("tx", 7, 0, 60_000))
    assert rec.version == 1
    offsets = (CommittedOffset("t", 0, 42, 3, "meta", 123), CommittedOffset("t", 1, 7, -1, None))
    ongoing = store.save_transaction(
        rec.with_(
            state=TXN_ONGOING,
            partitions=(("t", 0), ("t", 1)),
            groups=("g",),
            pending_offsets=(("g", offsets),),
            txn_seq=1,
            start_ms=5,
        )
    )
    got = store.transaction("tx")
    assert got == ongoing and got.version == 2
    assert got.pending_offsets == (("g", offsets),)
    assert [r.transactional_id for r in store.transactions()] == ["tx"]


def test_transaction_saves_are_compare_and_set(backend: Backend) -> None:
    a, b = backend.store(), backend.store()
    first = a.save_transaction(TxnRecord("tx", 1, 0, 1000))
    with pytest.raises(ConcurrentUpdate):
        b.save_transaction(TxnRecord("tx", 2, 0, 1000))  # version 0: must not exist
    a.save_transaction(first.with_(producer_epoch=1))
    with pytest.raises(ConcurrentUpdate):
        b.save_transaction(first.with_(producer_epoch=5))  # stale version
    assert b.transaction("tx").producer_epoch == 1  # type: ignore[union-attr]


def test_only_one_of_many_concurrent_saves_wins(backend: Backend) -> None:
    base = backend.store().save_transaction(TxnRecord("race", 1, 0, 1000))
    stores = [backend.store() for _ in range(4)]

    def bump(i: int) -> bool:
        try:
            stores[i].save_transaction(base.with_(producer_epoch=10 + i))
            return True
        except ConcurrentUpdate:
            return False

    with ThreadPoolExecutor(4) as pool:
        wins = list(pool.map(bump, range(4)))
    assert wins.count(True) == 1
    assert backend.store().transaction("race").version == 2  # type: ignore[union-attr]


def test_producer_snapshots_never_go_backwards(store: MetadataStore) -> None:
    assert store.producer_snapshot(5) is None
    assert store.save_producer_snapshot(5, 100, b"\x00state-at-100")
    assert store.producer_snapshot(5) == (100, b"\x00state-at-100")
    assert not store.save_producer_snapshot(5, 50, b"older")
    assert store.save_producer_snapshot(5, 100, b"same offset again")
    assert store.save_producer_snapshot(5, 200, b"newer")
    assert store.producer_snapshot(5) == (200, b"newer")
    assert store.producer_snapshot(6) is None
