"""Consumer groups with real clients and on the wire.

* Membership: for confluent-kafka (classic and KIP-848), kafka-python and aiokafka, three
  members share a 12-partition topic, a fourth joins, one leaves; with records flowing and
  manual synchronous commits every record is processed exactly once (by value).
* A lone member with default client settings gets its assignment promptly (join latency is
  printed: run with -s).
* A SIGKILLed member's partitions move to the survivor after session.timeout.ms (slow).
* Committed offsets survive a broker SIGKILL + restart.
* Error codes on raw requests: unknown group, illegal generation, unknown member, rebalance
  in progress, member id required, non-empty / unknown group deletion.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from tests.support import group_clients as g
from tests.support.broker import REPO, BrokerProcess
from tests.support.group_clients import (
    GROUP_ID_NOT_FOUND,
    ILLEGAL_GENERATION,
    MEMBER_ID_REQUIRED,
    NON_EMPTY_GROUP,
    NONE,
    NOT_COORDINATOR,
    REBALANCE_IN_PROGRESS,
    UNKNOWN_MEMBER_ID,
    GroupWire,
    Member,
)

pytestmark = pytest.mark.timeout(120)

GROUP_ENV = {
    "BROKER_GROUP_MIN_SESSION_TIMEOUT_MS": "1000",
    "BROKER_GROUP_INITIAL_REBALANCE_DELAY_MS": "100",
}
PARTITIONS = 12
JOIN_LATENCY: dict[str, float] = {}


@pytest.fixture(scope="module")
def group_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    b = BrokerProcess(tmp_path_factory.mktemp("group-broker") / "data", port=None, **GROUP_ENV)
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="module", autouse=True)
def _join_latency_summary() -> Iterator[None]:
    yield
    if JOIN_LATENCY:
        print("\njoin latency (start -> first assignment): " + ", ".join(
            f"{k} {v * 1000:.0f} ms" for k, v in sorted(JOIN_LATENCY.items())))


@pytest.fixture
def aio() -> Iterator[g.AioLoop]:
    loop = g.AioLoop()
    yield loop
    loop.close()


def _stop_all(members: list[Member]) -> None:
    for m in members:
        if m.alive():
            try:
                m.stop()
            except Exception as e:  # noqa: BLE001 - keep stopping the others
                m.errors.append(f"stop: {e!r}")


# ============================================================================ membership


@pytest.mark.parametrize("client", g.CLIENTS)
def test_members_share_partitions_and_process_each_record_once(
    group_broker: BrokerProcess, aio: g.AioLoop, client: str
) -> None:
    bootstrap = group_broker.bootstrap
    topic, group = g.unique(f"share-{client}"), g.unique(f"share-{client}")
    g.create_topic(bootstrap, topic, PARTITIONS)
    sink = g.Sink()
    producer = g.ValueProducer(bootstrap, topic, PARTITIONS, tag=topic)
    producer.produce(3000)  # before anyone joined

    members: list[Member] = [
        g.make_member(client, f"{client}-m{i}", bootstrap, topic, group, sink, aio=aio)
        for i in range(3)
    ]
    active = list(members)

    def snapshot() -> str:
        return (f"assignments { {m.name: sorted(m.assigned()) for m in members} }, "
                f"processed {sink.count()} of {len(producer.acked)}, "
                f"errors {[e for m in members for e in m.errors][:10]}")

    def settled(timeout: float = 45.0) -> float:
        return g.wait_for(lambda: g.shares([m.assigned() for m in active], PARTITIONS),
                          timeout, snapshot)

    def all_at_work(members: list[Member]) -> None:
        """Until each member processed records of its own since now."""
        before = {m.name: sink.processed_by(m.name) for m in members}
        g.wait_for(lambda: all(sink.processed_by(m.name) > before[m.name] for m in members),
                   30, snapshot)

    def ends() -> dict[int, int]:
        out = dict.fromkeys(range(PARTITIONS), 0)
        for p, o in producer.placed.values():
            out[p] = max(out[p], o + 1)
        return out

    def committed() -> dict[int, int]:
        with GroupWire(group_broker.port) as c:
            _, offsets = c.fetch_offsets(group, topic, range(PARTITIONS))
        return {p: x.offset for p, x in offsets.items()}

    try:
        for m in active:
            m.start()
        took = settled()
        print(f"\n[{client}] 3 members settled in {took:.2f}s")
        # everyone works before the membership changes
        g.wait_for(lambda: sink.count() >= 1000, 30, snapshot)

        producer.start_background(per_second=2000)  # records keep flowing from here on
        fourth = g.make_member(client, f"{client}-m3", bootstrap, topic, group, sink, aio=aio)
        members.append(fourth)
        active.append(fourth)
        fourth.start()
        took = settled()
        print(f"[{client}] 4th member joined, settled in {took:.2f}s")
        all_at_work(active)  # four members at work, records flowing

        leaving = active.pop(1)
        leaving.stop()
        took = settled()
        print(f"[{client}] one member left, settled in {took:.2f}s")
        all_at_work(active)
        producer.stop_background()
        producer.produce(1000)  # after the membership changes

        want = set(producer.acked)
        assert len(want) == len(producer.acked), "producer: values are unique"
        g.wait_for(lambda: sink.distinct() >= want, 60, lambda: (
            f"missing {producer.describe(want - sink.distinct())}; " + snapshot()
            + "".join(f"\n  p{p}: {sink.history(p)}" for p in range(PARTITIONS))))
        # everything processed is committed: from here no member can read anything again
        g.wait_for(lambda: committed() == ends(), 30,
                   lambda: f"committed {committed()}, ends {ends()}; " + snapshot())
    finally:
        _stop_all(members)

    errors = [e for m in members for e in m.errors]
    dups = sink.duplicates()
    assert not dups, (
        f"{len(dups)} values processed twice ({producer.describe(dups)}), "
        f"e.g. {list(dups.items())[:5]}; errors {errors[:10]}")
    assert Counter(sink.values) == Counter(producer.acked), snapshot()
    assert not errors, errors[:10]
    # and the group's committed offsets are the partitions' ends
    with GroupWire(group_broker.port) as c:
        top, final = c.fetch_offsets(group, topic, range(PARTITIONS))
    assert top == NONE and {p: x.offset for p, x in final.items()} == ends(), final
    print(f"[{client}] processed {len(sink.values)} records, each once; "
          f"commits {[getattr(m, 'commits', '?') for m in members]}")


# ============================================================================ join latency


@pytest.mark.parametrize("client", g.CLIENTS)
def test_lone_member_with_default_settings_is_assigned_promptly(
    group_broker: BrokerProcess, aio: g.AioLoop, client: str
) -> None:
    bootstrap = group_broker.bootstrap
    topic, group = g.unique(f"latency-{client}"), g.unique(f"latency-{client}")
    g.create_topic(bootstrap, topic, 3)
    member = g.make_member(client, f"{client}-lone", bootstrap, topic, group, None,
                           fast=False, aio=aio)
    try:
        member.start()
        g.wait_for(lambda: member.assigned() == frozenset(range(3)), 30,
                   lambda: f"assigned {sorted(member.assigned())}, errors {member.errors}",
                   interval=0.01)
    finally:
        _stop_all([member])
    assert member.started_at is not None and member.first_assigned_at is not None
    latency = member.first_assigned_at - member.started_at
    JOIN_LATENCY[client] = latency
    print(f"\n[{client}] join latency (start -> first assignment): {latency * 1000:.0f} ms")
    assert latency < 5.0, f"{client}: first assignment after {latency:.2f}s"
    assert not member.errors, member.errors


# ============================================================================ crash


class Victim:
    """A member in a subprocess: SIGKILL is a real crash (no LeaveGroup, no goodbye)."""

    def __init__(self, client: str, bootstrap: str, topic: str, group: str,
                 session_ms: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.group_clients", "victim", client,
             bootstrap, topic, group, str(session_ms)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO, text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        self.assigned: frozenset[int] = frozenset()
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line.rstrip())
            if line.startswith("ASSIGNED"):
                text = line.split(" ", 1)[1].strip()
                self.assigned = frozenset(int(p) for p in text.split(",") if p)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


@pytest.mark.slow
@pytest.mark.parametrize("client", ["confluent", "kafka-python", "aiokafka"])
def test_crashed_members_partitions_move_after_session_timeout(
    group_broker: BrokerProcess, aio: g.AioLoop, client: str
) -> None:
    session_ms = 4000
    bootstrap = group_broker.bootstrap
    topic, group = g.unique(f"crash-{client}"), g.unique(f"crash-{client}")
    parts = 6
    g.create_topic(bootstrap, topic, parts)
    victim = Victim(client, bootstrap, topic, group, session_ms)
    survivor = g.make_member(client, f"{client}-survivor", bootstrap, topic, group, None,
                             aio=aio)
    try:
        g.wait_for(lambda: bool(victim.assigned), 30, lambda: f"victim: {victim.output[-5:]}")
        survivor.start()
        g.wait_for(lambda: g.shares([survivor.assigned(), victim.assigned], parts), 30,
                   lambda: (f"survivor {sorted(survivor.assigned())}, victim "
                            f"{sorted(victim.assigned)}, output {victim.output[-5:]}"))
        with GroupWire(group_broker.port) as wire:  # a stable group of the two
            g.wait_for(lambda: (d := wire.describe_group(group)).group_state == "Stable"
                       and len(d.members) == 2, 30, lambda: f"{wire.describe_group(group)}")
        assert g.shares([survivor.assigned(), victim.assigned], parts)
        victim.kill()
        killed_at = time.monotonic()
        took = g.wait_for(lambda: survivor.assigned() == frozenset(range(parts)),
                          session_ms / 1000 + 20,
                          lambda: f"survivor {sorted(survivor.assigned())}", interval=0.02)
        moved_at = time.monotonic() - killed_at
    finally:
        victim.kill()
        _stop_all([survivor])
    print(f"\n[{client}] partitions moved {moved_at:.2f}s after SIGKILL "
          f"(session.timeout.ms={session_ms})")
    assert took >= session_ms / 1000 * 0.5, (
        f"moved after {took:.2f}s: before the session timeout ({session_ms} ms) expired")
    assert took <= session_ms / 1000 + 10
    assert not survivor.errors, survivor.errors


# ============================================================================ durability


def test_committed_offsets_survive_broker_sigkill(tmp_path: Path) -> None:
    broker = BrokerProcess(tmp_path / "data", port=None, BROKER_UPLOAD_INTERVAL_MS="600000",
                           **GROUP_ENV)
    broker.start()
    topic = "offsets-durable"
    member_group, simple_group = "durable-member", "durable-simple"
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": member_group,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "heartbeat.interval.ms": 500})
    try:
        g.create_topic(broker.bootstrap, topic, 4)
        producer = g.ValueProducer(broker.bootstrap, topic, 4, tag="durable")
        producer.produce(400)

        # a group member commits what it consumed (generation-checked commit) ...
        member_offsets = {0: 100, 1: 37, 2: 100, 3: 1}
        consumer.subscribe([topic])
        g.wait_for(lambda: (consumer.consume(100, 0.1) is not None
                            and len(consumer.assignment()) == 4), 30, lambda: "no assignment")
        consumer.commit(offsets=[TopicPartition(topic, p, o, metadata=f"meta-{p}")
                                 for p, o in member_offsets.items()], asynchronous=False)
        # ... and a standalone committer (generation -1) commits to an empty group
        simple_offsets = {0: 5, 1: 0, 2: 400, 3: 77}
        with GroupWire(broker.port) as c:
            errs = c.commit(simple_group, -1, "", topic, simple_offsets, metadata="simple")
            assert errs == dict.fromkeys(simple_offsets, NONE)
            _, before_member = c.fetch_offsets(member_group, topic, range(4))
            _, before_simple = c.fetch_offsets(simple_group, topic, range(4))
        assert {p: x.offset for p, x in before_member.items()} == member_offsets
        assert {p: x.offset for p, x in before_simple.items()} == simple_offsets
        # (confluent-kafka sends the metadata string with its C terminator)
        assert {(x.metadata or "").rstrip("\0") for x in before_member.values()} == {
            f"meta-{p}" for p in range(4)}

        broker.kill()  # member still in the group, nothing uploaded
        broker.start()
        with GroupWire(broker.port) as c:
            top, after_member = c.fetch_offsets(member_group, topic, range(4))
            assert top == NONE
            top, after_simple = c.fetch_offsets(simple_group, topic, range(4))
            assert top == NONE
        assert after_member == before_member
        assert after_simple == before_simple

        # the client sees them too
        reader = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": simple_group,
                           "enable.auto.commit": False})
        try:
            got = reader.committed([TopicPartition(topic, p) for p in range(4)], timeout=15)
        finally:
            reader.close()
        assert {tp.partition: tp.offset for tp in got} == simple_offsets
        got = consumer.committed([TopicPartition(topic, p) for p in range(4)], timeout=15)
        assert {tp.partition: tp.offset for tp in got} == member_offsets

        # a commit after the restart is durable too
        with GroupWire(broker.port) as c:
            assert c.commit(simple_group, -1, "", topic, {1: 222}) == {1: NONE}
        broker.kill()
        broker.start()
        with GroupWire(broker.port) as c:
            _, again = c.fetch_offsets(simple_group, topic, range(4))
        assert {p: x.offset for p, x in again.items()} == {**simple_offsets, 1: 222}
    finally:
        consumer.close()
        broker.stop()


# ============================================================================ wire errors


@pytest.fixture
def wire(group_broker: BrokerProcess) -> Iterator[GroupWire]:
    with GroupWire(group_broker.port) as c:
        yield c


def test_offset_fetch_of_unknown_group_is_minus_one_without_error(wire: GroupWire) -> None:
    topic = g.unique("of-unknown")
    g.create_topic(f"127.0.0.1:{wire.port}", topic, 3)
    versions = wire.versions(g.API_OFFSET_FETCH, 1)
    assert versions, wire.broker_versions.get(g.API_OFFSET_FETCH)
    for v in versions:
        top, got = wire.fetch_offsets(g.unique("nobody"), topic, [0, 1, 2], version=v)
        assert top == NONE, (v, top)
        assert sorted(got) == [0, 1, 2], (v, got)
        for p, c in got.items():
            assert (c.offset, c.error) == (-1, NONE), (v, p, c)


def test_offset_fetch_before_the_coordinator_exists_says_not_coordinator(
    tmp_path: Path,
) -> None:
    """No FindCoordinator yet, so no __consumer_offsets: Kafka answers NOT_COORDINATOR, at
    the top from v2 and on every requested partition in v0-v1 (which have no top-level error
    field), never an empty answer the client would read as "nothing committed"."""
    b = BrokerProcess(tmp_path / "data", port=None, **GROUP_ENV).start()
    try:
        topic = g.unique("of-early")
        g.create_topic(b.bootstrap, topic, 3)
        with GroupWire(b.port, find_coordinator=False) as c:
            for v in c.versions(g.API_OFFSET_FETCH):
                top, got = c.fetch_offsets(g.unique("early"), topic, [0, 1, 2], version=v)
                if v < 2:
                    assert top == NONE, (v, top)
                    assert {p: (x.offset, x.error) for p, x in got.items()} == dict.fromkeys(
                        [0, 1, 2], (-1, NOT_COORDINATOR)), (v, got)
                else:
                    assert top == NOT_COORDINATOR, (v, top, got)
    finally:
        b.stop()


def _stable_group(wire: GroupWire, topic: str = "t") -> tuple[str, g.Joined]:
    """A one-member group, joined and synced over the wire."""
    group = g.unique("wire")
    joined = wire.join_new_member(group, topics=(topic,))
    assert joined.error == NONE, joined
    assert joined.leader == joined.member_id and joined.members == [joined.member_id]
    err, data = wire.sync(group, joined.generation, joined.member_id,
                          {joined.member_id: g.assignment({topic: [0]})})
    assert err == NONE
    assert data == g.assignment({topic: [0]})
    return group, joined


def test_member_id_required_then_join_succeeds(wire: GroupWire) -> None:
    versions = wire.versions(g.API_JOIN, 4)
    assert versions, wire.broker_versions.get(g.API_JOIN)
    for v in versions:
        group = g.unique(f"mid-v{v}")
        first = wire.join(group, "", version=v)
        assert first.error == MEMBER_ID_REQUIRED, (v, first)
        assert first.member_id, (v, first)
        second = wire.join(group, first.member_id, version=v)
        assert second.error == NONE, (v, second)
        assert second.member_id == first.member_id, (v, second)
        assert second.generation >= 1 and second.leader == first.member_id, (v, second)
        assert wire.leave(group, first.member_id) == NONE


def test_illegal_generation(wire: GroupWire) -> None:
    topic = g.unique("illegal-gen")
    g.create_topic(f"127.0.0.1:{wire.port}", topic, 1)
    group, j = _stable_group(wire, topic)
    bad = j.generation + 1
    assert wire.heartbeat(group, j.generation, j.member_id) == NONE
    for v in wire.versions(g.API_HEARTBEAT):
        assert wire.heartbeat(group, bad, j.member_id, version=v) == ILLEGAL_GENERATION, v
    for v in wire.versions(g.API_SYNC):
        assert wire.sync(group, bad, j.member_id, version=v)[0] == ILLEGAL_GENERATION, v
    for v in wire.versions(g.API_OFFSET_COMMIT, 2):
        got = wire.commit(group, bad, j.member_id, topic, {0: 1}, version=v)
        assert got == {0: ILLEGAL_GENERATION}, v
    assert wire.commit(group, j.generation, j.member_id, topic, {0: 1}) == {0: NONE}
    assert wire.leave(group, j.member_id) == NONE


def test_unknown_member(wire: GroupWire) -> None:
    topic = g.unique("unknown-member")
    g.create_topic(f"127.0.0.1:{wire.port}", topic, 1)
    group, j = _stable_group(wire, topic)
    stranger = "stranger-" + j.member_id
    assert wire.heartbeat(group, j.generation, stranger) == UNKNOWN_MEMBER_ID
    assert wire.sync(group, j.generation, stranger)[0] == UNKNOWN_MEMBER_ID
    assert wire.commit(group, j.generation, stranger, topic, {0: 1}) == {0: UNKNOWN_MEMBER_ID}
    # a standalone commit (generation -1, no member id) into a group with members
    assert wire.commit(group, -1, "", topic, {0: 1}) == {0: UNKNOWN_MEMBER_ID}
    assert wire.leave(group, stranger) == UNKNOWN_MEMBER_ID
    # a JoinGroup with an unknown (non-empty) member id
    assert wire.join(group, stranger, topics=(topic,)).error == UNKNOWN_MEMBER_ID
    assert wire.leave(group, j.member_id) == NONE
    # after leaving, the old member id is unknown
    assert wire.heartbeat(group, j.generation, j.member_id) == UNKNOWN_MEMBER_ID


def test_heartbeat_while_rebalancing(group_broker: BrokerProcess, wire: GroupWire) -> None:
    topic = g.unique("rebalancing")
    g.create_topic(group_broker.bootstrap, topic, 1)
    group, first = _stable_group(wire, topic)
    with GroupWire(group_broker.port) as other:
        second_id = other.join(group, "", topics=(topic,)).member_id  # MEMBER_ID_REQUIRED
        parked = other.start(other.join_request(group, second_id, topics=(topic,)))
        # once the broker has the parked join, the group prepares a rebalance
        g.wait_for(lambda: wire.heartbeat(group, first.generation, first.member_id)
                   == REBALANCE_IN_PROGRESS, 10, lambda: "no rebalance in progress")
        # the current generation may still commit while the group prepares the rebalance
        assert wire.commit(group, first.generation, first.member_id, topic, {0: 5}) == {0: NONE}
        rejoin = wire.join(group, first.member_id, topics=(topic,))  # completes the rebalance
        second = other.joined(other.finish(parked))
        assert rejoin.error == NONE and second.error == NONE, (rejoin, second)
        assert rejoin.generation == second.generation == first.generation + 1
        assert sorted(rejoin.members or second.members) == sorted([first.member_id, second_id])
        leader = wire if rejoin.leader == first.member_id else other
        follower = other if leader is wire else wire
        leader_id = rejoin.leader
        follower_id = second_id if leader is wire else first.member_id
        # the follower's SyncGroup waits for the leader's
        pending = follower.start(follower.sync_request(group, rejoin.generation, follower_id))
        err, _ = leader.sync(group, rejoin.generation, leader_id,
                             {first.member_id: g.assignment({topic: [0]}),
                              second_id: g.assignment({topic: []})})
        assert err == NONE
        assert int(follower.finish(pending).error_code) == NONE
        assert wire.heartbeat(group, rejoin.generation, first.member_id) == NONE
        assert other.heartbeat(group, rejoin.generation, second_id) == NONE
        # the previous generation is now illegal
        assert wire.heartbeat(group, first.generation, first.member_id) == ILLEGAL_GENERATION
        assert other.leave(group, second_id) == NONE
    assert wire.leave(group, first.member_id) == NONE


def test_delete_groups(wire: GroupWire) -> None:
    topic = g.unique("delete-groups")
    g.create_topic(f"127.0.0.1:{wire.port}", topic, 1)
    group, j = _stable_group(wire, topic)
    assert wire.commit(group, j.generation, j.member_id, topic, {0: 3}) == {0: NONE}
    unknown = g.unique("never-existed")
    for v in wire.versions(g.API_DELETE_GROUPS):
        assert wire.delete_groups([group, unknown], version=v) == {
            group: NON_EMPTY_GROUP, unknown: GROUP_ID_NOT_FOUND}, v
    assert wire.fetch_offsets(group, topic, [0])[1][0].offset == 3  # still there
    assert wire.leave(group, j.member_id) == NONE
    assert wire.delete_groups([group]) == {group: NONE}
    _, after = wire.fetch_offsets(group, topic, [0])
    assert (after[0].offset, after[0].error) == (-1, NONE), "deleting a group drops its offsets"
    assert wire.delete_groups([group]) == {group: GROUP_ID_NOT_FOUND}


def test_consumer_heartbeat_joiner_gets_an_epoch_while_its_partitions_are_released(
    wire: GroupWire,
) -> None:
    """KIP-848: a member joining while its target partitions are still owned elsewhere moves
    to the group's epoch at once (the partitions follow when released); an epoch-0 answer
    would make the client "join" again."""
    topic = g.unique("kip848")
    g.create_topic(f"127.0.0.1:{wire.port}", topic, 4)
    wire.topic_id(topic)
    group = g.unique("kip848")
    v = wire.version(g.API_CONSUMER_HEARTBEAT)
    new_id = (lambda: str(uuid.uuid4())) if v >= 1 else (lambda: "")  # v1: client-named

    err, a_id, a_epoch, a_got = wire.consumer_heartbeat(group, new_id(), 0, topics=[topic],
                                                        owned={})
    assert err == NONE and a_epoch > 0 and a_got == {topic: [0, 1, 2, 3]}, (err, a_epoch, a_got)
    a_epoch = wire.consumer_heartbeat(group, a_id, a_epoch, owned=a_got)[2]

    err, b_id, b_epoch, b_got = wire.consumer_heartbeat(group, new_id(), 0, topics=[topic],
                                                        owned={})
    assert err == NONE and b_id
    assert b_epoch > a_epoch, f"joiner answered with epoch {b_epoch} (group at {a_epoch}+)"
    assert not (b_got or {}).get(topic), f"partitions still owned by A: {b_got}"

    # A learns to give two partitions up, then acknowledges by reporting what it owns
    err, _, a_epoch2, a_target = wire.consumer_heartbeat(group, a_id, a_epoch,
                                                         owned={topic: [0, 1, 2, 3]})
    assert err == NONE and a_target is not None and len(a_target[topic]) == 2, a_target
    err, _, a_epoch3, _ = wire.consumer_heartbeat(group, a_id, a_epoch2, owned=a_target)
    assert err == NONE and a_epoch3 == b_epoch, (a_epoch3, b_epoch)
    # B (heartbeating with its epoch, nothing repeated) now gets the released two
    err, _, b_epoch2, b_target = wire.consumer_heartbeat(group, b_id, b_epoch, owned={})
    assert err == NONE and b_target is not None, (err, b_target)
    assert sorted(a_target[topic] + b_target[topic]) == [0, 1, 2, 3], (a_target, b_target)
    assert b_epoch2 == b_epoch
    for member_id in (a_id, b_id):
        assert wire.consumer_heartbeat(group, member_id, -1)[0] == NONE  # leave
