"""Producer state rules (Kafka's idempotence and transaction checks) on batch headers."""

from __future__ import annotations

from broker_service.kafka.producer_state import INT32_MAX, Outcome, ProducerStateTable
from broker_service.protocol.control_batch import ABORT, COMMIT, build_marker, marker_type
from broker_service.protocol.record_batch import (
    CONTROL_FLAG,
    TRANSACTIONAL_FLAG,
    read_header,
    validate_batches,
)
from tests import kafka_wire as w


def header(pid: int, epoch: int, seq: int, n: int = 3, txn: bool = False):  # type: ignore[no-untyped-def]
    batch = w.build_batch(
        [b"v"] * n,
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=seq,
        attributes=TRANSACTIONAL_FLAG if txn else 0,
    )
    return read_header(batch)


def test_sequences_duplicates_and_epochs() -> None:
    t = ProducerStateTable()
    first = header(1, 0, 0)
    assert t.check(first).outcome is Outcome.APPEND
    t.apply(first, 100)
    dup = t.check(header(1, 0, 0))
    assert dup.outcome is Outcome.DUPLICATE and dup.duplicate is not None
    assert (dup.duplicate.base_offset, dup.duplicate.last_offset) == (100, 102)
    assert t.check(header(1, 0, 5)).error_code == 45  # OUT_OF_ORDER_SEQUENCE_NUMBER
    assert t.check(header(1, 0, 3)).outcome is Outcome.APPEND
    t.apply(header(1, 0, 3), 103)
    bumped = header(1, 1, 0)
    assert t.check(header(1, 1, 4)).error_code == 45  # a new epoch starts at 0
    t.apply(bumped, 106)
    assert t.check(header(1, 0, 6)).error_code == 47  # INVALID_PRODUCER_EPOCH
    assert t.check(header(2, 0, 17)).outcome is Outcome.APPEND  # unknown: any sequence


def test_only_the_last_five_batches_are_remembered_and_sequences_wrap() -> None:
    t = ProducerStateTable()
    seq = INT32_MAX - 8
    for i in range(7):
        h = header(9, 0, seq, n=2)
        assert t.check(h).outcome is Outcome.APPEND, i
        t.apply(h, i * 2)
        seq = (seq + 2) % (INT32_MAX + 1)
    assert seq == 5  # wrapped past Int32.MaxValue
    assert t.check(header(9, 0, INT32_MAX - 8, n=2)).error_code == 45  # forgotten: out of order
    assert t.check(header(9, 0, INT32_MAX - 4, n=2)).outcome is Outcome.DUPLICATE


def test_transactions_aborted_index_and_last_stable_offset() -> None:
    t = ProducerStateTable()
    t.apply(header(1, 0, 0, txn=True), 10)
    t.apply(header(2, 0, 0, txn=True), 13)
    assert t.first_unstable_offset() == 10
    assert t.check(header(1, 0, 3)).error_code == 48  # INVALID_TXN_STATE: not transactional
    abort = build_marker(1, 0, commit=False, coordinator_epoch=0, timestamp=1)
    (_, h), = validate_batches(memoryview(abort))
    assert h.attributes & CONTROL_FLAG and marker_type(h, abort) == ABORT
    t.apply(h, 16, ABORT)
    assert t.first_unstable_offset() == 13
    commit = build_marker(2, 0, commit=True, coordinator_epoch=0, timestamp=1)
    (_, hc), = validate_batches(memoryview(commit))
    assert marker_type(hc, commit) == COMMIT
    t.apply(hc, 17, COMMIT)
    assert t.first_unstable_offset() is None
    assert [(a.producer_id, a.first_offset, a.last_offset) for a in t.aborted] == [(1, 10, 16)]
    assert t.aborted_between(0, 10) == [] and len(t.aborted_between(16, 20)) == 1
    assert t.check_marker(1, -1).error_code == 47  # a marker from an older epoch


def test_snapshot_round_trip_and_expiry() -> None:
    t = ProducerStateTable()
    t.apply(header(1, 3, 0), 0, now_ms=1_000)
    t.apply(header(2, 0, 0, txn=True), 3, now_ms=1_000)
    copy = ProducerStateTable.decode(t.encode())
    assert copy.producers == t.producers and copy.first_unstable_offset() == 3
    copy.expire(now_ms=10_000, expiration_ms=5_000, log_start_offset=0)
    assert list(copy.producers) == [2]  # an open transaction is never expired
