"""Group semantics clients rely on (issue 17, item 10): a restarted static member keeps its
place and is not fenced at the next rebalance; ``include_authorized_operations`` in
DescribeGroups and DescribeCluster; OffsetForLeaderEpoch (KIP-320) after a leader change.
Clients: confluent-kafka, kafka-python, raw kio. Both backends."""

from __future__ import annotations

import datetime
import time
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from tests.integration.surface import Surface, kio, surface_fixture, unique, wait_for
from tests.support.group_clients import GroupWire, assignment, subscription

surface = surface_fixture()
FENCED_INSTANCE_ID, REBALANCE_IN_PROGRESS = 82, 27


def _topic(surface: Surface, partitions: int = 4) -> str:
    name = unique("grp")
    admin = AdminClient({"bootstrap.servers": surface.bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)
    return name


# -- static membership -------------------------------------------------------------------------
def _join(group: str, topic: str, member_id: str, instance: str | None) -> Any:
    return kio(11, 7, "JoinGroupRequest", group_id=group, member_id=member_id,
               group_instance_id=instance, protocol_type="consumer",
               session_timeout=datetime.timedelta(seconds=10),
               rebalance_timeout=datetime.timedelta(seconds=10), protocols=(
        kio(11, 7, "JoinGroupRequestProtocol", name="range", metadata=subscription([topic])),
    ))  # fmt: skip


def _sync(group: str, generation: int, member_id: str, instance: str | None,
          assignments: dict[str, bytes]) -> Any:
    return kio(14, 5, "SyncGroupRequest", group_id=group, generation_id=generation,
               member_id=member_id, group_instance_id=instance, protocol_type="consumer",
               protocol_name="range", assignments=tuple(
        kio(14, 5, "SyncGroupRequestAssignment", member_id=m, assignment=a)
        for m, a in assignments.items()))  # fmt: skip


def _heartbeat(group: str, generation: int, member_id: str, instance: str | None) -> Any:
    return kio(12, 4, "HeartbeatRequest", group_id=group, generation_id=generation,
               member_id=member_id, group_instance_id=instance)


def _coordinator(surface: Surface, group: str) -> None:
    """FindCoordinator until the group has one (its __consumer_offsets partition's leader)."""
    def found() -> bool:
        r = surface.call(kio(10, 4, "FindCoordinatorRequest", key_type=0,
                             coordinator_keys=(group,)))  # fmt: skip
        return int(r.coordinators[0].error_code) == 0
    wait_for("a group coordinator", found)


def test_a_restarted_static_member_is_not_fenced_raw(surface: Surface) -> None:
    topic, group = _topic(surface), unique("static")
    _coordinator(surface, group)
    with surface.wire() as c:
        first = c.call(_join(group, topic, "", "inst-a"))
        assert int(first.error_code) == 0 and first.leader == first.member_id
        gen, old_id = int(first.generation_id), first.member_id
        mine = assignment({topic: [0, 1, 2, 3]})
        assert int(c.call(_sync(group, gen, old_id, "inst-a", {old_id: mine})).error_code) == 0

        # the process restarts: same instance id, no member id; no rebalance in Stable
        again = c.call(_join(group, topic, "", "inst-a"))
        assert int(again.error_code) == 0
        new_id = again.member_id
        assert new_id != old_id and int(again.generation_id) == gen
        assert again.leader == old_id  # Kafka answers with the leader as it was
        synced = c.call(_sync(group, gen, new_id, "inst-a", {}))
        assert (int(synced.error_code), bytes(synced.assignment)) == (0, mine)
        # the old incarnation is fenced, the new one is the member
        fenced = c.call(_heartbeat(group, gen, old_id, "inst-a"))
        assert int(fenced.error_code) == FENCED_INSTANCE_ID
        assert int(c.call(_heartbeat(group, gen, new_id, "inst-a")).error_code) == 0

        # the next rebalance: the restarted member rejoins with its new id, not fenced
        with GroupWire(surface.port) as other:
            pending = other.start(_join(group, topic, "", "inst-b"))
            wait_for("the rebalance B's join starts", lambda: int(
                c.call(_heartbeat(group, gen, new_id, "inst-a")).error_code
            ) == REBALANCE_IN_PROGRESS)  # fmt: skip
            rejoined = c.call(_join(group, topic, new_id, "inst-a"))
            assert int(rejoined.error_code) == 0, rejoined
            b = other.finish(pending)
            assert int(b.error_code) == 0 and int(b.generation_id) == gen + 1


def test_a_restarted_static_consumer_keeps_consuming_confluent(surface: Surface) -> None:
    topic, group = _topic(surface), unique("static-cfk")
    errors: list[Any] = []

    def consumer(instance: str) -> Consumer:
        return Consumer({"bootstrap.servers": surface.bootstrap, "group.id": group,
                         "group.instance.id": instance, "session.timeout.ms": 10000,
                         "auto.offset.reset": "earliest",
                         "error_cb": lambda e: errors.append(e)})  # fmt: skip

    def assigned(c: Consumer) -> bool:
        c.poll(0.1)
        return bool(c.assignment())

    a = consumer("static-1")
    a.subscribe([topic])
    wait_for("the first incarnation's assignment", lambda: assigned(a))
    a.close()  # a static member leaves no LeaveGroup: its place is kept for the session
    a = consumer("static-1")
    b = consumer("static-2")
    try:
        a.subscribe([topic])
        wait_for("the restarted member's assignment", lambda: assigned(a))
        b.subscribe([topic])  # a rebalance, with the restarted member in it

        def both() -> bool:
            a.poll(0.1)
            b.poll(0.1)
            return bool(a.assignment()) and bool(b.assignment()) and (
                len(a.assignment()) + len(b.assignment()) == 4)
        wait_for("both static members assigned", both, timeout=60)
        p = Producer({"bootstrap.servers": surface.bootstrap})
        for i in range(8):
            p.produce(topic, f"m{i}".encode(), partition=i % 4)
        assert p.flush(30) == 0
        seen: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(seen) < 8 and time.monotonic() < deadline:
            for c in (a, b):
                m = c.poll(0.1)
                if m is not None and m.error() is None:
                    seen.append(m.value())
        assert sorted(seen) == sorted(f"m{i}".encode() for i in range(8))
        assert not [e for e in errors if e.fatal()], errors
    finally:
        a.close()
        b.close()


# -- include_authorized_operations ---------------------------------------------------------------
def test_authorized_operations_are_returned_when_asked(surface: Surface) -> None:
    from kafka.admin import KafkaAdminClient

    topic, group = _topic(surface), unique("ops")
    c = Consumer({"bootstrap.servers": surface.bootstrap, "group.id": group})
    try:
        c.subscribe([topic])
        wait_for("the group to form", lambda: c.poll(0.1) is not None or bool(c.assignment()))
        admin = AdminClient({"bootstrap.servers": surface.bootstrap})
        desc = admin.describe_consumer_groups(
            [group], include_authorized_operations=True)[group].result(30)
        assert {op.name for op in desc.authorized_operations} == {"READ", "DESCRIBE", "DELETE"}
        plain = admin.describe_consumer_groups([group])[group].result(30)
        assert not plain.authorized_operations
        cluster = admin.describe_cluster(include_authorized_operations=True).result(30)
        assert {"DESCRIBE", "ALTER", "CREATE", "CLUSTER_ACTION", "DESCRIBE_CONFIGS",
                "ALTER_CONFIGS", "IDEMPOTENT_WRITE"} == {
            op.name for op in cluster.authorized_operations}  # fmt: skip
        assert not admin.describe_cluster().result(30).authorized_operations
        kp = KafkaAdminClient(bootstrap_servers=surface.bootstrap, request_timeout_ms=30000)
        try:  # kafka-python always asks for them
            got = kp.describe_groups([group])[group]
            assert {str(op).rsplit(".", 1)[-1] for op in got["authorized_operations"]} == {
                "READ", "DESCRIBE", "DELETE"}  # fmt: skip
        finally:
            kp.close()
    finally:
        c.close()


# -- OffsetForLeaderEpoch -------------------------------------------------------------------------
def _epoch_request(topic: str, partition: int, epoch: int, current: int = -1) -> Any:
    return kio(23, 4, "OffsetForLeaderEpochRequest", replica_id=-1, topics=(
        kio(23, 4, "OffsetForLeaderTopic", topic=topic, partitions=(
            kio(23, 4, "OffsetForLeaderPartition", partition=partition,
                current_leader_epoch=current, leader_epoch=epoch),)),))  # fmt: skip


def _epoch_answer(surface_or_port: Any, topic: str, partition: int, epoch: int,
                  current: int = -1) -> tuple[int, int, int]:
    from tests.kafka_wire import WireClient

    port = surface_or_port if isinstance(surface_or_port, int) else surface_or_port.port
    with WireClient(port) as c:
        resp = c.call(_epoch_request(topic, partition, epoch, current))
    (p,) = resp.topics[0].partitions
    return int(p.error_code), int(p.leader_epoch), int(p.end_offset)


def test_offset_for_leader_epoch_single_broker(surface: Surface) -> None:
    topic = _topic(surface, 1)
    p = Producer({"bootstrap.servers": surface.bootstrap})
    for i in range(3):
        p.produce(topic, f"v{i}".encode(), partition=0)
        p.flush(30)
    assert _epoch_answer(surface, topic, 0, 0) == (0, 0, 3)  # the current epoch: log end
    assert _epoch_answer(surface, topic, 0, 0, current=0) == (0, 0, 3)
    assert _epoch_answer(surface, topic, 0, 4) == (0, -1, -1)  # a future epoch
    assert _epoch_answer(surface, topic, 0, 0, current=3)[0] == 75  # UNKNOWN_LEADER_EPOCH
    assert _epoch_answer(surface, topic, 5, 0)[0] == 3  # UNKNOWN_TOPIC_OR_PARTITION
