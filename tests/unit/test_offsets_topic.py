"""__consumer_offsets records and partitioning (kafka/groups/offsets_topic.py), against
values computed from Java's definitions and Kafka's schemas by hand."""

from __future__ import annotations

import struct

from broker_service.kafka.groups import offsets_topic as T
from broker_service.protocol.record_batch import validate_batches


def test_java_string_hash_and_partition() -> None:
    # String.hashCode values (java.lang.String: s[0]*31^(n-1) + ... in int arithmetic)
    assert T.java_string_hash("") == 0
    assert T.java_string_hash("hello") == 99162322
    assert T.java_string_hash("Hello World") == -862545276
    assert T.java_string_hash("\U0001f600") == 1772899  # a surrogate pair: two UTF-16 units
    # Utils.abs masks the sign bit: -862545276 & 0x7fffffff = 1284938372
    assert T.partition_for("Hello World", 50) == 1284938372 % 50
    assert T.partition_for("hello", 50) == 99162322 % 50


def test_offset_commit_record_layout() -> None:
    key = T.offset_commit_key("g", "t", 3)
    assert key == struct.pack(">hh1sh1si", 1, 1, b"g", 1, b"t", 3)
    value = T.offset_commit_value(42, 7, None, 1000)
    assert value == struct.pack(">hqihq", 3, 42, 7, 0, 1000)  # null metadata stored as ""


def test_group_metadata_record_layout() -> None:
    m = T.MemberMetadata("m-1", None, "cid", "/1.2.3.4", 300000, 45000, b"SUB", b"ASG")
    value = T.group_metadata_value("consumer", 5, "range", "m-1", 99, [m])
    want = (
        struct.pack(">h", 3) + struct.pack(">h8s", 8, b"consumer") + struct.pack(">i", 5)
        + struct.pack(">h5s", 5, b"range") + struct.pack(">h3s", 3, b"m-1")
        + struct.pack(">qi", 99, 1)
        + struct.pack(">h3s", 3, b"m-1") + struct.pack(">h", -1) + struct.pack(">h3s", 3, b"cid")
        + struct.pack(">h8s", 8, b"/1.2.3.4") + struct.pack(">ii", 300000, 45000)
        + struct.pack(">i3s", 3, b"SUB") + struct.pack(">i3s", 3, b"ASG")
    )  # fmt: skip
    assert value == want
    assert T.group_metadata_key("g") == struct.pack(">hh1s", 2, 1, b"g")


def test_batch_is_valid_and_holds_tombstones() -> None:
    batch = T.build_batch([(b"k1", b"v1"), (b"k2", None)], 123)
    ((_, h),) = validate_batches(memoryview(batch))
    assert (h.record_count, h.producer_id, h.base_timestamp, h.compression) == (2, -1, 123, 0)
