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
