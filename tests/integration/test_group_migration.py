"""KIP-848 online migration (issue 17, item 10): a classic group (confluent-kafka and
kafka-python members, eager assignors) becomes a consumer-protocol group when a
``group.protocol=consumer`` member joins, its classic members keep consuming inside it, and it
turns back into a classic group when that member leaves. No record is lost on the way, and
ListGroups / ConsumerGroupDescribe show the group's type and members' protocols. Both
backends."""

from __future__ import annotations

from typing import Any

from tests.integration.surface import Surface, kio, surface_fixture
from tests.support import group_clients as g

surface = surface_fixture()
PARTITIONS = 4


def _group_type(surface: Surface, group: str) -> str:
    resp = surface.call(kio(16, 5, "ListGroupsRequest", states_filter=(), types_filter=()))
    return next((x.group_type for x in resp.groups if x.group_id == group), "")


def _member_types(surface: Surface, group: str) -> list[int]:
    resp = surface.call(kio(69, 1, "ConsumerGroupDescribeRequest", group_ids=(group,),
                            include_authorized_operations=False))  # fmt: skip
    (d,) = resp.groups
    return sorted(int(m.member_type) for m in d.members)


def test_classic_group_upgrades_and_downgrades(surface: Surface) -> None:
    bootstrap = surface.bootstrap
    topic, group = g.unique("migrate"), g.unique("migrate")
    g.create_topic(bootstrap, topic, PARTITIONS)
    sink = g.Sink()
    producer = g.ValueProducer(bootstrap, topic, PARTITIONS, tag=topic)
    producer.produce(500)
    classic: list[Any] = [
        g.make_member("confluent", "cfk-classic", bootstrap, topic, group, sink),
        g.make_member("kafka-python", "kp-classic", bootstrap, topic, group, sink),
    ]
    modern = g.make_member("confluent-consumer", "cfk-848", bootstrap, topic, group, sink)
    members = [*classic, modern]

    def snapshot() -> str:
        return (f"type {_group_type(surface, group)!r}, assignments "
                f"{ {m.name: sorted(m.assigned()) for m in members} }, processed "
                f"{sink.count()} of {len(producer.acked)}, errors "
                f"{[e for m in members for e in m.errors][:6]}")  # fmt: skip

    def settled(active: list[Any]) -> bool:
        return g.shares([m.assigned() for m in active], PARTITIONS)

    try:
        for m in classic:
            m.start()
        g.wait_for(lambda: settled(classic), 45, snapshot)
        assert _group_type(surface, group) == "classic"
        producer.start_background(per_second=500)

        modern.start()  # ConsumerGroupHeartbeat: the group converts, its members stay
        took = g.wait_for(lambda: settled(members), 60, snapshot)
        print(f"\n[{surface.backend}] upgraded, 3 members settled in {took:.1f}s")
        assert _group_type(surface, group) == "consumer"
        assert _member_types(surface, group) == [0, 0, 1]  # two classic, one consumer

        modern.stop()  # the last consumer-protocol member leaves: classic again
        took = g.wait_for(lambda: settled(classic), 60, snapshot)
        print(f"[{surface.backend}] downgraded, 2 members settled in {took:.1f}s")
        assert _group_type(surface, group) == "classic"
        producer.stop_background()
        producer.produce(200)
        want = set(producer.acked)
        g.wait_for(lambda: sink.distinct() >= want, 60, lambda: (
            f"missing {producer.describe(want - sink.distinct())}; " + snapshot()))
    finally:
        for m in members:
            if m.alive():
                m.stop()
    errors = [e for m in members for e in m.errors]
    assert not errors, errors[:10]


_COOPERATIVE_UPGRADE = r"""
import sys, time
from confluent_kafka import Consumer
bootstrap, topic, group = sys.argv[1:4]
def member(extra):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", **extra})
    c.subscribe([topic])
    return c
classic = member({"group.protocol": "classic",
                  "partition.assignment.strategy": "cooperative-sticky"})
end = time.monotonic() + 60
while time.monotonic() < end and len(classic.assignment()) != 10:
    classic.poll(0.1)
modern = member({"group.protocol": "consumer"})
while time.monotonic() < end and sorted(
        (len(classic.assignment()), len(modern.assignment()))) != [5, 5]:
    for c in (classic, modern):
        c.poll(0.1)
print("assignments", len(classic.assignment()), len(modern.assignment()), flush=True)
classic.close()
modern.close()
"""


def test_a_classic_member_joining_a_consumer_group_is_not_told_it_leads(surface: Surface) -> None:
    """Kafka's classicGroupJoinToConsumerGroup answers a classic member's JoinGroup with its
    member id, epoch and protocol only: no leader (the server assigned), no skip_assignment.
    Answering "you are the leader" with no members made a JoinGroup v5 client (librdkafka,
    cooperative-sticky: confluent-kafka-python's test_consumer_upgrade_downgrade) run its
    assignor over zero members and crash. Raw JoinGroup v5 and v9, then the client itself (in
    a subprocess: a crash is this test's failure, not its worker's)."""
    import datetime
    import subprocess
    import sys

    bootstrap = surface.bootstrap
    topic, group = g.unique("coop-up"), g.unique("coop-up")
    g.create_topic(bootstrap, topic, 10)
    with surface.wire() as c:
        c.call(kio(10, 4, "FindCoordinatorRequest", key_type=0, coordinator_keys=(group,)))
        beat = c.call(kio(68, 0, "ConsumerGroupHeartbeatRequest", group_id=group, member_id="",
                          member_epoch=0, instance_id=None, rack_id=None,
                          rebalance_timeout=datetime.timedelta(seconds=30),
                          subscribed_topic_names=(topic,), server_assignor=None,
                          topic_partitions=()))  # fmt: skip
        assert int(beat.error_code) == 0, beat
        for version in (5, 9):

            def join(member_id: str, v: int = version) -> Any:
                extra = {"reason": None} if v >= 8 else {}
                return c.call(kio(11, v, "JoinGroupRequest", group_id=group,
                                  member_id=member_id, group_instance_id=None,
                                  protocol_type="consumer",
                                  session_timeout=datetime.timedelta(seconds=30),
                                  rebalance_timeout=datetime.timedelta(seconds=30),
                                  protocols=(kio(11, v, "JoinGroupRequestProtocol",
                                                 name="cooperative-sticky",
                                                 metadata=g.subscription([topic])),),
                                  **extra))  # fmt: skip

            first = join("")
            assert int(first.error_code) == 79, first  # MEMBER_ID_REQUIRED
            joined = join(first.member_id)
            assert int(joined.error_code) == 0, joined
            assert (joined.leader, list(joined.members)) == ("", []), joined
            assert joined.protocol_name == "cooperative-sticky"
            if version >= 9:
                assert joined.skip_assignment is False
    argv = [sys.executable, "-c", _COOPERATIVE_UPGRADE, bootstrap, topic, g.unique("coop-client")]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, (run.returncode, run.stdout, run.stderr[-2000:])
    assert "assignments 5 5" in run.stdout, run.stdout
