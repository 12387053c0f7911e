"""``__consumer_offsets`` as Kafka's internal topic (issue 17, item 8): created on first use
with Kafka's offsets-topic configs and reported internal, never written by clients, and
readable: every commit, offset deletion and classic group change is there in Kafka's
GroupMetadataManager record formats, decoded here by hand from Kafka's schemas (what Burrow
does). Committed offsets stay authoritative in the metadata store. Clients: confluent-kafka,
kafka-python, raw kio. Both backends."""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
from kafka.admin import KafkaAdminClient

from tests.integration.surface import Surface, kio, surface_fixture, unique, wait_for
from tests.kafka_wire import build_batch, produce_request

surface = surface_fixture(BROKER_OFFSETS_TOPIC_PARTITIONS="5")
OFFSETS = "__consumer_offsets"


def _partition_for(group: str, partitions: int) -> int:
    """Kafka: Utils.abs(groupId.hashCode) % partitions, Java's hash computed here again."""
    h = 0
    units = group.encode("utf-16-be")
    for i in range(0, len(units), 2):
        h = (31 * h + int.from_bytes(units[i : i + 2], "big")) & 0xFFFFFFFF
    return (h & 0x7FFFFFFF) % partitions


# -- a decoder of Kafka's offsets-topic records, from the schemas -------------------------------
class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> Any:
        (v,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return v

    def string(self) -> str | None:
        n = self.take(">h")
        if n < 0:
            return None
        s = self.data[self.pos : self.pos + n].decode()
        self.pos += n
        return s

    def blob(self) -> bytes:
        n = self.take(">i")
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b


@dataclass
class Entry:
    kind: str  # "offset" or "group"
    key: tuple[Any, ...]
    value: dict[str, Any] | None


def _decode(key: bytes, value: bytes | None) -> Entry:
    r = _Reader(key)
    version = r.take(">h")
    if version in (0, 1):  # OffsetCommitKey
        k = (r.string(), r.string(), r.take(">i"))
        if value is None:
            return Entry("offset", k, None)
        v = _Reader(value)
        assert v.take(">h") == 3  # OffsetCommitValue v3
        return Entry("offset", k, {"offset": v.take(">q"), "leader_epoch": v.take(">i"),
                                   "metadata": v.string(), "commit_ms": v.take(">q")})  # fmt: skip
    assert version == 2, version  # GroupMetadataKey
    k = (r.string(),)
    if value is None:
        return Entry("group", k, None)
    v = _Reader(value)
    assert v.take(">h") == 3  # GroupMetadataValue v3
    out: dict[str, Any] = {"protocol_type": v.string(), "generation": v.take(">i"),
                           "protocol": v.string(), "leader": v.string(),
                           "state_ms": v.take(">q"), "members": []}  # fmt: skip
    for _ in range(v.take(">i")):
        out["members"].append({
            "member_id": v.string(), "instance_id": v.string(), "client_id": v.string(),
            "client_host": v.string(), "rebalance_ms": v.take(">i"), "session_ms": v.take(">i"),
            "subscription": v.blob(), "assignment": v.blob(),
        })  # fmt: skip
    assert v.pos == len(value)
    return Entry("group", k, out)


def _read_offsets_topic(surface: Surface, partition: int) -> list[Entry]:
    c = Consumer({"bootstrap.servers": surface.bootstrap, "group.id": unique("reader"),
                  "enable.auto.commit": False})  # fmt: skip
    out: list[Entry] = []
    try:
        _low, high = c.get_watermark_offsets(TopicPartition(OFFSETS, partition), timeout=10)
        c.assign([TopicPartition(OFFSETS, partition, OFFSET_BEGINNING)])
        deadline = time.monotonic() + 30
        last = -1
        while last + 1 < high and time.monotonic() < deadline:
            for m in c.consume(500, 0.5):
                assert m.error() is None, m.error()
                out.append(_decode(m.key(), m.value()))
                last = m.offset()
    finally:
        c.close()
    return out


def _topic(surface: Surface, partitions: int = 2) -> str:
    name = unique("offs")
    admin = AdminClient({"bootstrap.servers": surface.bootstrap})  # alive until the result
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)
    return name


def _consume_and_commit(surface: Surface, group: str, topic: str, n: int) -> None:
    p = Producer({"bootstrap.servers": surface.bootstrap})
    for i in range(n):
        p.produce(topic, f"v{i}".encode(), partition=i % 2)
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": surface.bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "client.id": "offsets-test"})  # fmt: skip
    try:
        c.subscribe([topic])
        seen = 0
        deadline = time.monotonic() + 60
        while seen < n and time.monotonic() < deadline:
            seen += len([m for m in c.consume(100, 0.5) if m.error() is None])
        assert seen == n
        c.commit(asynchronous=False)
    finally:
        c.close()


def test_commits_and_group_changes_are_in_the_offsets_topic(surface: Surface) -> None:
    group, topic = unique("burrow-g"), _topic(surface)
    _consume_and_commit(surface, group, topic, 10)
    partition = _partition_for(group, 5)

    def mine() -> list[Entry]:
        return [e for e in _read_offsets_topic(surface, partition) if e.key[0] == group]

    def committed_and_emptied() -> list[Entry] | None:
        e = mine()
        has_offsets = any(x.kind == "offset" for x in e)
        emptied = any(x.kind == "group" and x.value and not x.value["members"] for x in e)
        return e if has_offsets and emptied else None

    entries = wait_for("the group's commit and its empty group record", committed_and_emptied)
    offsets = {e.key[1:]: e.value for e in entries if e.kind == "offset"}
    assert {k: v["offset"] for k, v in offsets.items() if v} == {(topic, 0): 5, (topic, 1): 5}
    groups = [e.value for e in entries if e.kind == "group" and e.value]
    stable = next(g for g in groups if g["members"])  # the generation with its assignment
    assert (stable["protocol_type"], stable["protocol"]) == ("consumer", "range")
    (member,) = stable["members"]
    assert member["client_id"] == "offsets-test" and member["assignment"]
    assert member["member_id"] == stable["leader"]
    assert groups[-1]["members"] == [] and groups[-1]["generation"] > stable["generation"]

    # the metadata store stays authoritative; deleting the group writes tombstones
    admin = AdminClient({"bootstrap.servers": surface.bootstrap})
    admin.delete_consumer_groups([group])[group].result(30)
    def with_tombstones() -> list[Entry] | None:
        e = mine()
        return e if any(x.value is None for x in e) else None

    tail = wait_for("tombstones", with_tombstones)
    gone = {(x.kind, x.key) for x in tail if x.value is None}
    assert {("offset", (group, topic, 0)), ("offset", (group, topic, 1)),
            ("group", (group,))} <= gone  # fmt: skip


def test_the_offsets_topic_is_internal_and_created_as_kafka_does(surface: Surface) -> None:
    _consume_and_commit(surface, unique("g"), _topic(surface), 2)
    md = surface.call(kio(3, 12, "MetadataRequest", allow_auto_topic_creation=False,
                          include_topic_authorized_operations=False, topics=(
        kio(3, 12, "MetadataRequestTopic", name=OFFSETS, topic_id=None),)))  # fmt: skip
    (t,) = md.topics
    assert (int(t.error_code), t.is_internal, len(t.partitions)) == (0, True, 5)
    kp = KafkaAdminClient(bootstrap_servers=surface.bootstrap, request_timeout_ms=30000)
    try:
        (d,) = kp.describe_topics([OFFSETS])
        assert d["is_internal"] is True
    finally:
        kp.close()
    admin = AdminClient({"bootstrap.servers": surface.bootstrap})
    res = ConfigResource(ConfigResource.Type.TOPIC, OFFSETS)
    cfg = admin.describe_configs([res])[res].result(30)
    assert cfg["cleanup.policy"].value == "compact"
    assert cfg["segment.bytes"].value == "104857600"


def test_clients_cannot_write_to_it(surface: Surface) -> None:
    _consume_and_commit(surface, unique("g"), _topic(surface), 2)  # it exists
    errors: list[Any] = []
    p = Producer({"bootstrap.servers": surface.bootstrap, "retries": 0})
    p.produce(OFFSETS, b"forged", key=b"k", partition=0,
              on_delivery=lambda err, _m: errors.append(err))  # fmt: skip
    p.flush(30)
    assert [e.code() for e in errors] == [KafkaError.TOPIC_EXCEPTION]
    # raw Produce v9 (kafka-python's producer refuses internal topics before sending)
    resp = surface.call(produce_request(9, {OFFSETS: {0: build_batch([b"forged"])}}))
    (part,) = resp.responses[0].partition_responses
    assert int(part.error_code) == 17  # INVALID_TOPIC_EXCEPTION
    assert part.error_message == "Cannot append to internal topic __consumer_offsets"


def test_it_is_never_auto_created_as_a_plain_topic(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """On a fresh broker, a Metadata request that would auto-create it gets the internal
    topic (offsets.topic.num.partitions, compacted), not a 1-partition plain one."""
    from tests.integration.surface import start_surface

    fresh = start_surface("embedded", tmp_path_factory.mktemp("fresh") / "data", request,
                          BROKER_OFFSETS_TOPIC_PARTITIONS="3")  # fmt: skip
    try:
        md = AdminClient({"bootstrap.servers": fresh.bootstrap}).list_topics(OFFSETS, timeout=30)
        assert len(md.topics[OFFSETS].partitions) == 3
        store = fresh.open_store()
        rec = store.topic(OFFSETS)
        store.close()
        assert rec is not None and rec.configs["cleanup.policy"] == "compact"
    finally:
        fresh.broker.stop()
