"""A group's coordinator moves (its ``__consumer_offsets`` partition is reassigned) while a
member's JoinGroup or SyncGroup is parked there.

Apache Kafka's coordinator, unloading a group (``GroupCoordinator.onGroupUnloaded``), answers
every parked JoinGroup and SyncGroup with NOT_COORDINATOR, so the member finds the new
coordinator at once. A coordinator that dropped the group without answering left the member
waiting for its request timeout (librdkafka: the rebalance timeout, 5 minutes by default,
plus 3 s), consuming nothing meanwhile: the chaos lane once saw its group consumer stop for
the rest of a run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from broker_service.control.reassignment import reassign
from broker_service.kafka.groups.offsets_topic import partition_for
from tests import kafka_wire as w
from tests.support import group_clients as g
from tests.support.broker import cluster, running
from tests.support.group_clients import MEMBER_ID_REQUIRED, NONE, NOT_COORDINATOR, GroupWire
from tests.support.wait import wait_until

pytestmark = pytest.mark.timeout(180)

# A join parks for the initial rebalance delay: long enough that only an answer from the
# unload (not the delay running out) can end it within the test's wait. The sync case needs
# its two joins to complete first, so its delay is short.
DELAY_MS = {"join": "120000", "sync": "200"}
OFFSETS = "__consumer_offsets"


def _offsets_partitions(wire: GroupWire) -> int:
    md = wire.call(w.metadata_request(12, [OFFSETS]))
    return len(md.topics[0].partitions)


def _state(port: int, group: str) -> str:
    with GroupWire(port, find_coordinator=False) as c:
        return str(c.describe_group(group).group_state)


@pytest.mark.parametrize("parked", ["join", "sync"])
def test_a_request_parked_at_a_coordinator_that_loses_the_group_gets_not_coordinator(
    tmp_path: Path, parked: str
) -> None:
    env = {"BROKER_GROUP_INITIAL_REBALANCE_DELAY_MS": DELAY_MS[parked],
           "BROKER_GROUP_MIN_SESSION_TIMEOUT_MS": "1000"}  # fmt: skip
    brokers = cluster(tmp_path / "shared", 2, **env)
    with running(*brokers):
        group = g.unique(f"moving-{parked}")
        with GroupWire(brokers[0].port) as c:
            coordinator = c.wait_for_coordinator(group)
            part = partition_for(group, _offsets_partitions(c))
        home, other = brokers[coordinator - 1], brokers[2 - coordinator]
        with GroupWire(home.port) as a, GroupWire(home.port, find_coordinator=False) as b:
            if parked == "join":
                first = a.join(group)
                assert first.error == MEMBER_ID_REQUIRED, first
                pending = a.start(a.join_request(group, first.member_id))
                wait_until(lambda: _state(home.port, group) == "PreparingRebalance", 30,
                           "the join never parked")  # fmt: skip
            else:
                # two members join within the initial delay; the follower then syncs
                # before the leader, which parks its SyncGroup until the leader's assignment
                ja, jb = a.start(a.join_request(group, version=3)), b.start(
                    b.join_request(group, version=3))  # fmt: skip
                ra, rb = a.joined(a.finish(ja, 60)), b.joined(b.finish(jb, 60))
                assert NONE == ra.error == rb.error, (ra, rb)
                assert ra.generation == rb.generation, (ra, rb)
                follower, fw = (rb, b) if ra.leader == ra.member_id else (ra, a)
                assert _state(home.port, group) == "CompletingRebalance"
                # (nothing shows a parked sync from outside: one that arrived after the move
                # is answered NOT_COORDINATOR too; the join case proves the parked one)
                pending = fw.start(fw.sync_request(group, follower.generation,
                                                   follower.member_id))  # fmt: skip
            result = reassign(other.bootstrap, OFFSETS, part, other.node_id)
            assert result.ok, result
            client = a if parked == "join" else fw
            resp = client.finish(pending, timeout=60)
            assert int(resp.error_code) == NOT_COORDINATOR, resp
        with GroupWire(other.port) as c:
            assert c.wait_for_coordinator(group) == other.node_id
