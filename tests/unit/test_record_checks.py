"""protocol/record_checks.py: Kafka's record-level checks over batch bytes, compressed ones too
(records are read piece by piece, key lengths and timestamps only)."""

from __future__ import annotations

import pytest

from broker_service.protocol.compression import conform
from broker_service.protocol.record_batch import validate_batches
from broker_service.protocol.record_checks import (
    INT64_MAX,
    INVALID_RECORD,
    INVALID_TIMESTAMP,
    RecordRules,
    batch_refusal,
    record_errors,
)
from tests.kafka_wire import build_batch

NOW = 1_800_000_000_000
COMPACTED = RecordRules(compacted=True, create_time=True)


@pytest.mark.parametrize("codec", [0, 1, 2, 3, 4])
def test_keys_are_checked_in_every_codec(codec: int) -> None:
    keys = [b"k" if i % 3 else None for i in range(50)]
    raw = memoryview(bytearray(build_batch([b"v" * 200] * 50, keys=keys, base_timestamp=NOW)))
    records, batches = conform(raw, validate_batches(raw), codec, None, None, 1 << 20)
    [(pos, h)] = batches
    assert h.compression == codec
    got = record_errors(h, records[pos : pos + h.size], COMPACTED, NOW, "t-0")
    assert [e.index for e in got] == [i for i in range(50) if i % 3 == 0]
    assert {e.code for e in got} == {INVALID_RECORD}
    code, message = batch_refusal(got)
    assert code == INVALID_RECORD and message.startswith(
        "One or more records have been rejected due to 17 record errors in total")
    assert message.count("RecordError(") == 3  # the first three only


def test_the_timestamp_window_and_which_rules_apply() -> None:
    raw = build_batch([b"a", b"b"], keys=[b"x", b"y"], base_timestamp=NOW - 10_000)
    [(_, h)] = validate_batches(memoryview(raw))
    window = RecordRules(compacted=False, create_time=True, before_max_ms=5_000)
    assert window.applies(h) and not RecordRules(False, True).applies(h)
    got = record_errors(h, raw, window, NOW, "t-0")
    assert [(e.index, e.code) for e in got] == [(0, INVALID_TIMESTAMP), (1, INVALID_TIMESTAMP)]
    assert got[0].message == (f"Timestamp {NOW - 10_000} of message with offset 0 is out of "
                              f"range. The timestamp should be within [{NOW - 5_000}, "
                              f"{INT64_MAX}]")  # fmt: skip
    assert batch_refusal(got)[0] == INVALID_TIMESTAMP
    assert record_errors(h, raw, window, NOW - 6_000, "t-0") == []
    # a producer may not stamp LogAppendTime itself (Kafka: INVALID_TIMESTAMP)
    stamped = build_batch([b"a"], base_timestamp=NOW, attributes=0x08)
    [(_, sh)] = validate_batches(memoryview(stamped))
    assert RecordRules(False, False).applies(sh)
    [e] = record_errors(sh, stamped, RecordRules(False, False), NOW, "t-0")
    assert e.code == INVALID_TIMESTAMP and "LogAppendTime" in e.message
