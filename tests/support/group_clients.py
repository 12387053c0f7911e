"""Consumer-group helpers for tests/integration/test_groups.py.

* Raw group requests over tests/kafka_wire.py (JoinGroup ... DeleteGroups), any version the
  broker advertises and kio knows; responses normalized where versions differ.
* Group members for confluent-kafka (classic and KIP-848 ``group.protocol=consumer``),
  kafka-python (threads) and aiokafka (tasks on one event loop thread), all written as a
  careful at-least-once application: process a batch, commit its offsets synchronously,
  commit again on revocation, never process a record of a partition it no longer owns. With a
  correct coordinator such members process every record exactly once across rebalances.
* A crash victim: ``python -m tests.support.group_clients victim ...`` joins a group in
  a subprocess (so it can be SIGKILLed) and prints its assignment on every change.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import datetime
import itertools
import struct
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer
from aiokafka.abc import ConsumerRebalanceListener as AioListener
from aiokafka.structs import TopicPartition as AioTopicPartition
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import ConsumerRebalanceListener as KpListener
from kafka import KafkaConsumer
from kafka import TopicPartition as KpTopicPartition
from kafka.errors import KafkaError as KpKafkaError
from kafka.structs import OffsetAndMetadata

from tests import kafka_wire as w
from tests.support.wait import timed_wait_until

# Kafka error codes the tests look for
NONE = 0
ILLEGAL_GENERATION = 22
UNKNOWN_MEMBER_ID = 25
REBALANCE_IN_PROGRESS = 27
NON_EMPTY_GROUP = 68
GROUP_ID_NOT_FOUND = 69
MEMBER_ID_REQUIRED = 79
NOT_COORDINATOR = 16

API_OFFSET_COMMIT, API_OFFSET_FETCH, API_JOIN, API_HEARTBEAT = 8, 9, 11, 12
API_LEAVE, API_SYNC, API_DESCRIBE_GROUPS, API_LIST_GROUPS, API_DELETE_GROUPS = 13, 14, 15, 16, 42
API_CONSUMER_HEARTBEAT = 68
API_FIND_COORDINATOR = 10

CLIENTS = ("confluent", "confluent-consumer", "kafka-python", "aiokafka")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=10)[topic].result(30)


# ============================================================================== raw wire


def _build(cls: type, **kw: Any) -> Any:
    """A kio entity from a superset of field values: the version's own fields are kept."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in kw.items() if k in names})


def _ms(value: int) -> datetime.timedelta:
    return datetime.timedelta(milliseconds=value)


def subscription(topics: Sequence[str]) -> bytes:
    """ConsumerProtocolSubscription v0: version, topics, user data (null)."""
    out = struct.pack(">hi", 0, len(topics))
    for t in topics:
        out += w.legacy_string(t)
    return out + struct.pack(">i", -1)


def assignment(parts: dict[str, Sequence[int]]) -> bytes:
    """ConsumerProtocolAssignment v0: version, [topic, [partition]], user data (null)."""
    out = struct.pack(">hi", 0, len(parts))
    for t, ps in parts.items():
        out += w.legacy_string(t) + struct.pack(">i", len(ps))
        out += b"".join(struct.pack(">i", p) for p in ps)
    return out + struct.pack(">i", -1)


def kio_versions(api_key: int) -> list[int]:
    out = []
    for v in range(32):
        try:
            w.load_request_schema(api_key, v)
        except Exception:
            continue
        out.append(v)
    return out


@dataclasses.dataclass
class Joined:
    error: int
    generation: int
    member_id: str
    leader: str
    protocol: str | None
    members: list[str]


@dataclasses.dataclass(frozen=True)
class Committed:
    offset: int
    metadata: str | None
    error: int


class GroupWire(w.WireClient):
    """A raw client with group requests; versions default to the highest both sides know."""

    def __init__(self, port: int, timeout: float = 15.0, find_coordinator: bool = True) -> None:
        super().__init__(port, timeout)
        self.port = port
        av = self.call(w.api_versions_request(0))
        self.broker_versions = {
            int(k.api_key): (int(k.min_version), int(k.max_version)) for k in av.api_keys
        }
        self._topic_ids: dict[str, uuid.UUID] = {}
        # as every client does before its first group request: FindCoordinator creates
        # __consumer_offsets, without which a group request is answered NOT_COORDINATOR
        if find_coordinator:
            self.wait_for_coordinator("group-wire")

    def __enter__(self) -> GroupWire:
        return self

    def wait_for_coordinator(self, group: str, timeout: float = 30.0) -> int:
        """FindCoordinator (v4, one key) until it names a broker; returns its node id."""
        m = w.schema_module(API_FIND_COORDINATOR, 4)
        deadline = time.monotonic() + timeout
        while True:
            resp = self.call(m.FindCoordinatorRequest(key_type=0, coordinator_keys=(group,)))
            c = resp.coordinators[0]
            if int(c.error_code) == NONE:
                return int(c.node_id)
            assert time.monotonic() < deadline, f"no coordinator for {group}: {c!r}"
            time.sleep(0.05)

    def versions(self, api_key: int, lo: int = 0, hi: int = 99) -> list[int]:
        """Versions both the broker and kio know, within [lo, hi]."""
        if api_key not in self.broker_versions:
            return []
        bmin, bmax = self.broker_versions[api_key]
        return [v for v in kio_versions(api_key) if max(bmin, lo) <= v <= min(bmax, hi)]

    def version(self, api_key: int, lo: int = 0, hi: int = 99) -> int:
        vs = self.versions(api_key, lo, hi)
        assert vs, (f"api {api_key}: broker advertises {self.broker_versions.get(api_key)}, "
                    f"test needs a version in [{lo}, {hi}]")
        return vs[-1]

    def topic_id(self, topic: str) -> uuid.UUID:
        if topic not in self._topic_ids:
            md = self.call(w.metadata_request(12, [topic]))
            self._topic_ids[topic] = md.topics[0].topic_id
        return self._topic_ids[topic]

    # -- non-blocking send (a JoinGroup parked by the coordinator) ------------------------

    def start(self, request: Any) -> tuple[Any, int]:
        cid = self.next_cid()
        self.send(w.frame_of(request, cid))
        return request, cid

    def finish(self, pending: tuple[Any, int], timeout: float = 30.0) -> Any:
        request, cid = pending
        self.sock.settimeout(timeout)
        payload = self.recv_frame()
        assert payload is not None, f"connection closed instead of answering {request!r}"
        got, response = w.decode_response(
            int(request.__api_key__), int(request.__version__), payload)
        assert got == cid
        return response

    # -- requests ------------------------------------------------------------------------

    def join_request(
        self, group: str, member_id: str = "", *, topics: Sequence[str] = ("t",),
        session_ms: int = 10_000, rebalance_ms: int = 10_000, version: int | None = None,
    ) -> Any:
        v = version if version is not None else self.version(API_JOIN)
        m = w.schema_module(API_JOIN, v)
        return _build(
            m.JoinGroupRequest, group_id=group, session_timeout=_ms(session_ms),
            rebalance_timeout=_ms(rebalance_ms), member_id=member_id, group_instance_id=None,
            protocol_type="consumer", reason=None,
            protocols=(m.JoinGroupRequestProtocol(name="range", metadata=subscription(topics)),),
        )

    @staticmethod
    def joined(resp: Any) -> Joined:
        return Joined(int(resp.error_code), int(resp.generation_id), resp.member_id,
                      resp.leader, resp.protocol_name, [m.member_id for m in resp.members])

    def join(self, group: str, member_id: str = "", **kw: Any) -> Joined:
        return self.joined(self.call(self.join_request(group, member_id, **kw)))

    def join_new_member(self, group: str, **kw: Any) -> Joined:
        """JoinGroup v4+: MEMBER_ID_REQUIRED first, then the real join with that id."""
        first = self.join(group, **kw)
        assert first.error == MEMBER_ID_REQUIRED, first
        assert first.member_id, first
        return self.join(group, first.member_id, **kw)

    def sync_request(
        self, group: str, generation: int, member_id: str,
        assignments: dict[str, bytes] | None = None, version: int | None = None,
    ) -> Any:
        v = version if version is not None else self.version(API_SYNC)
        m = w.schema_module(API_SYNC, v)
        return _build(
            m.SyncGroupRequest, group_id=group, generation_id=generation, member_id=member_id,
            group_instance_id=None, protocol_type="consumer", protocol_name="range",
            assignments=tuple(m.SyncGroupRequestAssignment(member_id=k, assignment=a)
                              for k, a in (assignments or {}).items()),
        )

    def sync(
        self, group: str, generation: int, member_id: str,
        assignments: dict[str, bytes] | None = None, version: int | None = None,
    ) -> tuple[int, bytes]:
        resp = self.call(self.sync_request(group, generation, member_id, assignments, version))
        return int(resp.error_code), bytes(resp.assignment)

    def heartbeat(self, group: str, generation: int, member_id: str,
                  version: int | None = None) -> int:
        v = version if version is not None else self.version(API_HEARTBEAT)
        m = w.schema_module(API_HEARTBEAT, v)
        req = _build(m.HeartbeatRequest, group_id=group, generation_id=generation,
                     member_id=member_id, group_instance_id=None)
        return int(self.call(req).error_code)

    def leave(self, group: str, member_id: str, version: int | None = None) -> int:
        v = version if version is not None else self.version(API_LEAVE)
        m = w.schema_module(API_LEAVE, v)
        if v < 3:
            req = m.LeaveGroupRequest(group_id=group, member_id=member_id)
        else:
            member = _build(m.MemberIdentity, member_id=member_id, group_instance_id=None,
                            reason=None)
            req = m.LeaveGroupRequest(group_id=group, members=(member,))
        resp = self.call(req)
        codes = [int(resp.error_code)] + [int(x.error_code) for x in getattr(resp, "members", ())]
        return next((c for c in codes if c), NONE)

    def commit(
        self, group: str, generation: int, member_id: str, topic: str,
        offsets: dict[int, int], *, metadata: str | None = None, version: int | None = None,
    ) -> dict[int, int]:
        """OffsetCommit; returns {partition: error code}."""
        v = version if version is not None else self.version(API_OFFSET_COMMIT)
        m = w.schema_module(API_OFFSET_COMMIT, v)
        parts = tuple(
            _build(m.OffsetCommitRequestPartition, partition_index=p, committed_offset=o,
                   committed_leader_epoch=-1, committed_metadata=metadata, commit_timestamp=-1)
            for p, o in offsets.items()
        )
        ident: dict[str, Any] = {"topic_id": self.topic_id(topic)} if v >= 10 else {"name": topic}
        req = _build(
            m.OffsetCommitRequest, group_id=group, generation_id_or_member_epoch=generation,
            member_id=member_id, group_instance_id=None, retention_time=_ms(-1),
            topics=(m.OffsetCommitRequestTopic(**ident, partitions=parts),),
        )
        resp = self.call(req)
        assert len(resp.topics) == 1, resp
        return {int(p.partition_index): int(p.error_code) for p in resp.topics[0].partitions}

    def fetch_offsets(
        self, group: str, topic: str, partitions: Iterable[int], version: int | None = None,
    ) -> tuple[int, dict[int, Committed]]:
        """OffsetFetch of one group; returns (group/top-level error, {partition: Committed})."""
        v = version if version is not None else self.version(API_OFFSET_FETCH)
        m = w.schema_module(API_OFFSET_FETCH, v)
        parts = tuple(partitions)
        if v >= 8:
            ident: dict[str, Any] = (
                {"topic_id": self.topic_id(topic)} if v >= 10 else {"name": topic})
            req = m.OffsetFetchRequest(
                groups=(_build(
                    m.OffsetFetchRequestGroup, group_id=group, member_id=None, member_epoch=-1,
                    topics=(m.OffsetFetchRequestTopics(**ident, partition_indexes=parts),),
                ),),
                require_stable=False,
            )
            resp = self.call(req)
            assert len(resp.groups) == 1, resp
            top, topics = int(resp.groups[0].error_code), resp.groups[0].topics
        else:
            req = _build(
                m.OffsetFetchRequest, group_id=group, require_stable=False,
                topics=(m.OffsetFetchRequestTopic(name=topic, partition_indexes=parts),),
            )
            resp = self.call(req)
            top, topics = int(getattr(resp, "error_code", NONE)), resp.topics
        out = {}
        for t in topics:
            for p in t.partitions:
                out[int(p.partition_index)] = Committed(
                    int(p.committed_offset), p.metadata, int(p.error_code))
        return top, out

    def consumer_heartbeat(
        self, group: str, member_id: str, epoch: int, *, topics: Sequence[str] | None = None,
        owned: Mapping[str, Sequence[int]] | None = None, version: int | None = None,
    ) -> tuple[int, str, int, dict[str, list[int]] | None]:
        """ConsumerGroupHeartbeat (KIP-848); ``owned`` by topic name. Returns (error, member
        id, member epoch, assignment by topic name or None when unchanged)."""
        v = version if version is not None else self.version(API_CONSUMER_HEARTBEAT)
        m = w.schema_module(API_CONSUMER_HEARTBEAT, v)
        owned_tp = None if owned is None else tuple(
            m.TopicPartitions(topic_id=self.topic_id(t), partitions=tuple(ps))
            for t, ps in owned.items())
        req = _build(
            m.ConsumerGroupHeartbeatRequest, group_id=group, member_id=member_id,
            member_epoch=epoch, instance_id=None, rack_id=None,
            rebalance_timeout=_ms(30_000 if epoch == 0 else -1),
            subscribed_topic_names=None if topics is None else tuple(topics),
            subscribed_topic_regex=None, server_assignor=None, topic_partitions=owned_tp,
        )
        resp = self.call(req)
        names = {tid: t for t, tid in self._topic_ids.items()}
        got = None if resp.assignment is None else {
            names.get(tp.topic_id, str(tp.topic_id)): sorted(tp.partitions)
            for tp in resp.assignment.topic_partitions}
        return int(resp.error_code), resp.member_id or "", int(resp.member_epoch), got

    def delete_groups(self, groups: Sequence[str], version: int | None = None) -> dict[str, int]:
        v = version if version is not None else self.version(API_DELETE_GROUPS)
        m = w.schema_module(API_DELETE_GROUPS, v)
        resp = self.call(m.DeleteGroupsRequest(groups_names=tuple(groups)))
        return {r.group_id: int(r.error_code) for r in resp.results}

    def describe_group(self, group: str, version: int | None = None) -> Any:
        v = version if version is not None else self.version(API_DESCRIBE_GROUPS)
        m = w.schema_module(API_DESCRIBE_GROUPS, v)
        resp = self.call(_build(m.DescribeGroupsRequest, groups=(group,),
                                include_authorized_operations=False))
        assert len(resp.groups) == 1
        return resp.groups[0]


# ============================================================================== producing


class ValueProducer:
    """Produces unique values round-robin over the partitions; remembers what was acked."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, tag: str) -> None:
        self.topic, self.partitions, self.tag = topic, partitions, tag
        self.producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                                  "linger.ms": 5, "enable.idempotence": True})
        self.acked: list[bytes] = []
        self.placed: dict[bytes, tuple[int, int]] = {}  # value -> (partition, offset)
        self.errors: list[str] = []
        self._seq = itertools.count()
        self._bg: threading.Thread | None = None
        self._bg_stop = threading.Event()

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.errors.append(str(err))
        else:
            self.acked.append(msg.value())
            self.placed[msg.value()] = (msg.partition(), msg.offset())

    def describe(self, values: Iterable[bytes]) -> str:
        """Where the given values are: partition -> offset ranges."""
        by_part: dict[int, list[int]] = {}
        for v in values:
            p, o = self.placed[v]
            by_part.setdefault(p, []).append(o)
        return ", ".join(f"p{p}: {len(os)} in [{min(os)}, {max(os)}]"
                         for p, os in sorted(by_part.items()))

    def produce(self, n: int, flush: bool = True) -> None:
        for _ in range(n):
            i = next(self._seq)
            self.producer.produce(self.topic, value=f"{self.tag}-{i:07d}".encode(),
                                  partition=i % self.partitions, on_delivery=self._on_delivery)
            self.producer.poll(0)
        if flush:
            self.flush()

    def flush(self) -> None:
        assert self.producer.flush(30) == 0, "producer did not deliver in 30 s"
        assert not self.errors, self.errors[:5]

    def start_background(self, per_second: int = 2000) -> None:
        """Keep producing (in bursts every 50 ms) until stop_background()."""
        def run() -> None:
            while not self._bg_stop.is_set():
                self.produce(max(per_second // 20, 1), flush=False)
                self._bg_stop.wait(0.05)
        self._bg = threading.Thread(target=run, name="bg-producer", daemon=True)
        self._bg.start()

    def stop_background(self) -> None:
        self._bg_stop.set()
        if self._bg is not None:
            self._bg.join(10)
        self.flush()


# ============================================================================== processing


class Sink:
    """What the members processed: value -> who processed it where (for duplicate reports)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: list[bytes] = []
        self.where: dict[bytes, list[tuple[str, int, int]]] = {}

    def add(self, value: bytes, member: str, partition: int, offset: int) -> None:
        with self._lock:
            self.values.append(value)
            self.where.setdefault(value, []).append((member, partition, offset))

    def processed_by(self, member: str) -> int:
        """How many records ``member`` processed (first or again)."""
        with self._lock:
            return sum(1 for where in self.where.values() for m, _, _ in where if m == member)

    def count(self) -> int:
        with self._lock:
            return len(self.values)

    def distinct(self) -> set[bytes]:
        with self._lock:
            return set(self.values)

    def history(self, partition: int) -> str:
        """Who processed which offsets of one partition, as runs in processing order."""
        with self._lock:
            firsts = [self.where[v][0] for v in self.values]
        seen = [(m, o) for m, p, o in firsts if p == partition]
        runs: list[list[Any]] = []
        for m, o in seen:
            if runs and runs[-1][0] == m and runs[-1][2] + 1 == o:
                runs[-1][2] = o
            else:
                runs.append([m, o, o])
        return " ".join(f"{m}:{a}-{b}" for m, a, b in runs)

    def duplicates(self) -> dict[bytes, list[tuple[str, int, int]]]:
        with self._lock:
            return {v: list(self.where[v]) for v, n in Counter(self.values).items() if n > 1}


class Member(Protocol):
    name: str
    errors: list[str]
    started_at: float | None
    first_assigned_at: float | None

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def assigned(self) -> frozenset[int]: ...
    def alive(self) -> bool: ...


class _Base:
    def __init__(self, name: str, bootstrap: str, topic: str, group: str, sink: Sink | None,
                 settings: dict[str, Any] | None = None) -> None:
        self.name, self.bootstrap, self.topic, self.group = name, bootstrap, topic, group
        self.sink = sink
        self.settings = settings or {}
        self.errors: list[str] = []
        self.commits = 0
        self.started_at: float | None = None
        self.first_assigned_at: float | None = None
        self._assigned: frozenset[int] = frozenset()
        self._stop = threading.Event()
        self.pending: dict[int, int] = {}  # partition -> next offset, processed, uncommitted
        self.pause = 0.01  # "work" between processing a batch and committing it

    def _pause(self) -> None:
        if self.pending:
            time.sleep(self.pause)  # widens the window a rebalance can fall into

    def assigned(self) -> frozenset[int]:
        return self._assigned

    def _set_assigned(self, parts: Iterable[int]) -> None:
        self._assigned = frozenset(parts)
        self._mark_assigned(self._assigned)

    def _mark_assigned(self, parts: Iterable[Any]) -> None:
        """Called from the rebalance callbacks too: the join latency is measured there."""
        if self.first_assigned_at is None and any(True for _ in parts):
            self.first_assigned_at = time.monotonic()

    def _process(self, value: bytes | None, partition: int, offset: int) -> None:
        if self.sink is not None:
            assert value is not None
            self.sink.add(value, self.name, partition, offset)
        self.pending[partition] = offset + 1

    def join_latency(self) -> float | None:
        if self.first_assigned_at is None or self.started_at is None:
            return None
        return self.first_assigned_at - self.started_at


class _ThreadMember(_Base):
    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self._thread = threading.Thread(target=self._guarded, name=self.name, daemon=True)

    def start(self) -> None:
        self.started_at = time.monotonic()
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"{self.name} did not stop in {timeout}s"

    def alive(self) -> bool:
        return self._thread.is_alive()

    def _guarded(self) -> None:
        try:
            self._run()
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.errors.append(f"{self.name} crashed: {e!r}")
            self._set_assigned(())

    def _run(self) -> None:
        raise NotImplementedError


class ConfluentMember(_ThreadMember):
    """confluent-kafka; ``protocol`` is "classic" or "consumer" (KIP-848)."""

    def __init__(self, *a: Any, protocol: str = "classic", **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.protocol = protocol

    def config(self) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap, "group.id": self.group,
            "client.id": self.name, "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
        if self.protocol == "consumer":
            conf["group.protocol"] = "consumer"
        conf.update(self.settings)
        return conf

    def _commit(self, c: Consumer) -> None:
        if not self.pending:
            return
        offsets = [TopicPartition(self.topic, p, o) for p, o in self.pending.items()]
        self.pending.clear()
        try:
            result = c.commit(offsets=offsets, asynchronous=False)
        except KafkaException as e:
            self.errors.append(f"{self.name} commit {offsets}: {e}")
            return
        self.commits += 1
        for tp in result or []:
            if tp.error is not None:
                self.errors.append(f"{self.name} commit {tp}: {tp.error}")

    def _run(self) -> None:
        c = Consumer(self.config())

        def on_assign(consumer: Consumer, parts: list[TopicPartition]) -> None:
            # the client assigns (eager) or incrementally assigns (cooperative) after this
            self._mark_assigned(parts)

        def on_revoke(consumer: Consumer, parts: list[TopicPartition]) -> None:
            self._commit(consumer)

        def on_lost(consumer: Consumer, parts: list[TopicPartition]) -> None:
            self.errors.append(f"{self.name} lost {[p.partition for p in parts]}")
            self.pending.clear()

        c.subscribe([self.topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
        try:
            while not self._stop.is_set():
                msgs = c.consume(500, 0.1)
                self._set_assigned(tp.partition for tp in c.assignment())
                for m in msgs:
                    err = m.error()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:
                            self.errors.append(f"{self.name} consume: {err}")
                        continue
                    partition, offset = m.partition(), m.offset()
                    assert partition is not None and offset is not None
                    self._process(m.value(), partition, offset)
                self._pause()
                self._commit(c)
        finally:
            c.close()
            self._set_assigned(())


class KafkaPythonMember(_ThreadMember):
    def _commit(self, c: KafkaConsumer) -> None:
        if not self.pending:
            return
        offsets = {KpTopicPartition(self.topic, p): OffsetAndMetadata(o, "", -1)
                   for p, o in self.pending.items()}
        self.pending.clear()
        try:
            c.commit(offsets)
            self.commits += 1
        except KpKafkaError as e:
            self.errors.append(f"{self.name} commit {offsets}: {e!r}")

    def _run(self) -> None:
        member = self
        c = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=self.group,
                          client_id=self.name, enable_auto_commit=False,
                          auto_offset_reset="earliest", **self.settings)

        class Listener(KpListener):  # type: ignore[misc]
            def on_partitions_revoked(self, revoked: Any) -> None:
                member._commit(c)

            def on_partitions_assigned(self, assigned: Any) -> None:
                member._mark_assigned(assigned)

        c.subscribe([self.topic], listener=Listener())
        try:
            while not self._stop.is_set():
                batch = c.poll(timeout_ms=100, max_records=500)
                self._set_assigned(tp.partition for tp in c.assignment())
                for tp, records in batch.items():
                    for r in records:
                        self._process(r.value, tp.partition, r.offset)
                self._pause()
                self._commit(c)
        finally:
            c.close()
            self._set_assigned(())


class AioLoop:
    """One asyncio loop on a thread: the aiokafka members are tasks on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="aio-loop",
                                       daemon=True)
        self.thread.start()

    def submit(self, coro: Any) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class AioMember(_Base):
    def __init__(self, *a: Any, loop: AioLoop, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.aio = loop
        self._future: concurrent.futures.Future[Any] | None = None

    def start(self) -> None:
        self.started_at = time.monotonic()
        self._future = self.aio.submit(self._guarded())

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        assert self._future is not None
        self._future.result(timeout)

    def alive(self) -> bool:
        return self._future is not None and not self._future.done()

    async def _guarded(self) -> None:
        try:
            await self._run()
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.errors.append(f"{self.name} crashed: {e!r}")
            self._set_assigned(())

    async def _commit(self, c: AIOKafkaConsumer) -> None:
        if not self.pending:
            return
        offsets = {AioTopicPartition(self.topic, p): o for p, o in self.pending.items()}
        self.pending.clear()
        try:
            await c.commit(offsets)
            self.commits += 1
        except Exception as e:  # noqa: BLE001 - aiokafka raises several kinds
            self.errors.append(f"{self.name} commit {offsets}: {e!r}")

    async def _run(self) -> None:
        member = self
        c = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=self.group,
                             client_id=self.name, enable_auto_commit=False,
                             auto_offset_reset="earliest", **self.settings)
        lock = asyncio.Lock()
        owned: set[int] = set()
        changes = [0]  # bumped on every assignment change

        class Listener(AioListener):
            async def on_partitions_revoked(self, revoked: Any) -> None:
                async with lock:
                    await member._commit(c)
                    owned.difference_update(tp.partition for tp in revoked)
                    changes[0] += 1

            async def on_partitions_assigned(self, assigned: Any) -> None:
                member._mark_assigned(assigned)
                async with lock:
                    owned.update(tp.partition for tp in assigned)
                    changes[0] += 1

        c.subscribe([self.topic], listener=Listener())
        await c.start()
        try:
            while not self._stop.is_set():
                seen = changes[0]
                batch = await c.getmany(timeout_ms=100, max_records=500)
                self._set_assigned(tp.partition for tp in c.assignment())
                async with lock:
                    if changes[0] != seen:
                        # fetched across a rebalance, under the old or the new assignment:
                        # process none of it, read what is still ours again (a revoked
                        # partition's new owner starts at the offset committed on revocation)
                        for tp, records in batch.items():
                            if tp.partition in owned and records:
                                c.seek(tp, records[0].offset)
                        continue
                    for tp, records in batch.items():
                        if tp.partition not in owned:
                            continue
                        for r in records:
                            self._process(r.value, tp.partition, r.offset)
                    await asyncio.sleep(self.pause if self.pending else 0)
                    await self._commit(c)
        finally:
            await c.stop()
            self._set_assigned(())


def make_member(
    client: str, name: str, bootstrap: str, topic: str, group: str, sink: Sink | None, *,
    fast: bool = True, aio: AioLoop | None = None,
) -> Member:
    """A member with short heartbeats (fast) or every client default (fast=False)."""
    if client in ("confluent", "confluent-consumer"):
        protocol = "consumer" if client == "confluent-consumer" else "classic"
        settings: dict[str, Any] = {}
        if fast and protocol == "classic":
            settings = {"heartbeat.interval.ms": 500, "session.timeout.ms": 10_000}
        return ConfluentMember(name, bootstrap, topic, group, sink, settings, protocol=protocol)
    if client == "kafka-python":
        settings = {"heartbeat_interval_ms": 500, "session_timeout_ms": 10_000} if fast else {}
        return KafkaPythonMember(name, bootstrap, topic, group, sink, settings)
    if client == "aiokafka":
        assert aio is not None
        settings = {"heartbeat_interval_ms": 500, "session_timeout_ms": 10_000} if fast else {}
        return AioMember(name, bootstrap, topic, group, sink, settings, loop=aio)
    raise ValueError(client)


def wait_for(cond: Callable[[], bool], timeout: float, what: Callable[[], str],
             interval: float = 0.05) -> float:
    """Poll cond until true; returns the seconds it took, fails with what() on timeout."""
    return timed_wait_until(cond, timeout, what, interval)


def shares(assignments: Sequence[frozenset[int]], partitions: int) -> bool:
    """Every member has partitions, none twice, all covered."""
    union: set[int] = set()
    for a in assignments:
        if not a or union & a:
            return False
        union |= a
    return union == set(range(partitions))


# ============================================================================== crash victim


def _victim(client: str, bootstrap: str, topic: str, group: str, session_ms: int) -> None:
    """Join the group and print "ASSIGNED p,p,..." on every change, until killed."""
    hb = max(session_ms // 8, 100)
    last: frozenset[int] | None = None

    def report(parts: Iterable[int]) -> None:
        nonlocal last
        now = frozenset(parts)
        if now != last:
            last = now
            print("ASSIGNED " + ",".join(map(str, sorted(now))), flush=True)

    if client == "confluent":
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                      "session.timeout.ms": session_ms, "heartbeat.interval.ms": hb,
                      "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        c.subscribe([topic])
        while True:
            c.consume(100, 0.1)
            report(tp.partition for tp in c.assignment())
    elif client == "kafka-python":
        k = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                          session_timeout_ms=session_ms, heartbeat_interval_ms=hb,
                          enable_auto_commit=False, auto_offset_reset="earliest")
        k.subscribe([topic])
        while True:
            k.poll(timeout_ms=100)
            report(tp.partition for tp in k.assignment())
    elif client == "aiokafka":
        async def run() -> None:
            a = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                 session_timeout_ms=session_ms, heartbeat_interval_ms=hb,
                                 enable_auto_commit=False, auto_offset_reset="earliest")
            await a.start()
            while True:
                await a.getmany(timeout_ms=100)
                report(tp.partition for tp in a.assignment())
        asyncio.run(run())
    else:
        raise SystemExit(f"unknown client {client}")


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "victim":
        _victim(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]))
    else:
        raise SystemExit("usage: group_clients victim CLIENT BOOTSTRAP TOPIC GROUP SESSION_MS")
