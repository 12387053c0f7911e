"""DynamoDB: topic items (segments of stream ids), partition-state items, topic deletion."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from botocore.exceptions import ClientError

from broker_service.metadata.dynamodb.base import (
    DELETING,
    DynamoBase,
    _backoff,
    _cancel_reasons,
    _error_code,
    _item,
    _key,
    _load,
    _now_ms,
)
from broker_service.metadata.errors import (
    ConcurrentUpdate,
    MetadataError,
    TopicAlreadyExists,
    UnknownTopic,
)
from broker_service.metadata.records import ACTIVE, PartitionRecord, TopicRecord
from broker_service.metadata.store import TopicCatalog, placement

log = logging.getLogger(__name__)


def _segment_leader(leaders: int | list[int], i: int) -> int:
    """The initial leader of a segment's ``i``-th partition (see DynamoTopics)."""
    return leaders if isinstance(leaders, int) else leaders[i % len(leaders)]


class DynamoTopics(DynamoBase, TopicCatalog):
    """Items ``TOPICS/<name>#`` and ``TOPICS/<name>#<partition>``."""

    # Topic item (TOPICS, "<name>#"): identity, configs and the partition -> stream id map as
    # "segments" [first_partition, count, first_stream_id, leaders], one per create /
    # add_partitions call, so creating or growing a topic is one single-item write however
    # many partitions it has. ``leaders`` places the segment's partitions: a number (one
    # leader for all of them; the only form before placement at creation, and still the
    # form of a one-broker placement) or a list of at most ``count`` numbers handed out
    # round-robin (partition first_partition + i is led by leaders[i % len(leaders)]), so
    # the item grows with the number of brokers, not of partitions. Partition items
    # (TOPICS, "<name>#<partition>") hold mutable partition state once something changes it;
    # they apply only while their stream id matches the topic item's (a later incarnation of
    # the name has new stream ids).
    def _topic_items(self, name: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        topic: dict[str, Any] | None = None
        parts: list[dict[str, Any]] = []
        for a in self._query("TOPICS", f"{name}#"):
            if a.get("name") != name:
                continue
            if a.get("kind") == "topic":
                topic = a
            elif a.get("kind") == "partition":
                parts.append(a)
        return topic, parts

    @staticmethod
    def _record(topic: dict[str, Any], parts: Iterable[dict[str, Any]]) -> TopicRecord:
        name = str(topic["name"])
        state = {p["partition"]: p for p in parts}
        records: list[PartitionRecord] = []
        for first_p, count, first_sid, leaders in topic["segments"]:
            for i in range(count):
                p, sid, leader = first_p + i, first_sid + i, _segment_leader(leaders, i)
                s = state.get(p)
                if s is not None and s.get("stream_id") == sid:
                    records.append(
                        PartitionRecord(
                            name, p, sid, s["leader_id"], s["leader_epoch"], s["log_start_offset"]
                        )
                    )
                else:
                    records.append(PartitionRecord(name, p, sid, leader, 0, 0))
        records.sort(key=lambda r: r.partition)
        return TopicRecord(
            name, uuid.UUID(topic["topic_id"]), dict(topic.get("configs") or {}), tuple(records)
        )

    def _new_segment(self, first_partition: int, count: int, leaders: tuple[int, ...]) -> list[Any]:
        first_sid = self._next("stream_id", count) if count > 0 else 0
        placed = leaders[: max(count, 1)]
        return [first_partition, count, first_sid, placed[0] if len(placed) == 1 else list(placed)]

    def create_topic(
        self, name: str, num_partitions: int, configs: dict[str, str], leader_ids: Sequence[int]
    ) -> TopicRecord:
        leaders = placement(leader_ids)
        for _ in range(self._attempts):
            existing, _parts = self._topic_items(name)
            if existing is not None:
                if existing.get("state") == ACTIVE:
                    raise TopicAlreadyExists(name)
                self._finish_delete(existing)  # a deletion that crashed half-way
            item = _item(
                kind="topic",
                name=name,
                topic_id=str(uuid.uuid4()),
                configs=dict(configs),
                partition_count=num_partitions,
                segments=[self._new_segment(0, num_partitions, leaders)],
                state=ACTIVE,
                created_ms=_now_ms(),
            )
            try:
                self._put({**_key("TOPICS", f"{name}#"), **item}, "attribute_not_exists(pk)")
            except ClientError as e:
                if _error_code(e) != "ConditionalCheckFailedException":
                    raise
                continue  # created (or being deleted) concurrently: look again
            return self._record(_load(item), ())
        raise TopicAlreadyExists(name)

    def delete_topic(self, name: str) -> TopicRecord:
        for _ in range(self._attempts):
            topic, parts = self._topic_items(name)
            if topic is None:
                raise UnknownTopic(name)
            record = self._record(topic, parts)
            if topic.get("state") == ACTIVE:
                try:  # step 1: hide it (readers skip DELETING topics), then clean up
                    self._update(
                        "TOPICS",
                        f"{name}#",
                        "SET #s = :deleting",
                        ConditionExpression="#tid = :tid AND #s = :active",
                        ExpressionAttributeNames={"#s": "state", "#tid": "topic_id"},
                        ExpressionAttributeValues=_item(
                            **{":deleting": DELETING, ":active": ACTIVE, ":tid": topic["topic_id"]}
                        ),
                    )
                except ClientError as e:
                    if _error_code(e) != "ConditionalCheckFailedException":
                        raise
                    continue
            self._finish_delete(topic)
            return record
        raise MetadataError(f"could not delete topic {name}: too much contention")

    def _finish_delete(self, topic: dict[str, Any]) -> None:
        """Idempotent clean-up of a DELETING topic; deleting the topic item comes last."""
        name = str(topic["name"])
        sids = [p.stream_id for p in self._record(topic, ()).partitions]
        # The objects stay until compaction/retention drops unreferenced ones.
        with ThreadPoolExecutor(max_workers=8) as pool:
            for _ in pool.map(self._delete_stream_ranges, sids):
                pass
        _, parts = self._topic_items(name)
        self._batch_delete(_key("TOPICS", f"{name}#{p['partition']}") for p in parts)
        self._delete_topic_offsets(name)
        try:
            self._retrying(
                self._c.delete_item,
                TableName=self.table,
                Key=_key("TOPICS", f"{name}#"),
                ConditionExpression="#tid = :tid",
                ExpressionAttributeNames={"#tid": "topic_id"},
                ExpressionAttributeValues={":tid": {"S": topic["topic_id"]}},
            )
        except ClientError as e:
            if _error_code(e) != "ConditionalCheckFailedException":
                raise  # else: someone else finished this deletion

    def add_partitions(self, name: str, new_total: int, leader_ids: Sequence[int]) -> TopicRecord:
        leaders = placement(leader_ids)
        for _ in range(self._attempts):
            topic, parts = self._topic_items(name)
            if topic is None or topic.get("state") != ACTIVE:
                raise UnknownTopic(name)
            current = int(topic["partition_count"])
            if new_total <= current:
                return self._record(topic, parts)
            segment = self._new_segment(current, new_total - current, leaders)
            try:
                self._update(
                    "TOPICS",
                    f"{name}#",
                    "SET #n = :new, #seg = list_append(#seg, :seg)",
                    ConditionExpression="#tid = :tid AND #s = :active AND #n = :cur",
                    ExpressionAttributeNames={
                        "#n": "partition_count",
                        "#seg": "segments",
                        "#tid": "topic_id",
                        "#s": "state",
                    },
                    ExpressionAttributeValues=_item(
                        **{
                            ":new": new_total,
                            ":seg": [segment],
                            ":tid": topic["topic_id"],
                            ":active": ACTIVE,
                            ":cur": current,
                        }
                    ),
                )
            except ClientError as e:
                if _error_code(e) != "ConditionalCheckFailedException":
                    raise
                continue  # changed concurrently; the reserved stream ids are simply unused
            updated = self.topic(name)
            if updated is not None:
                return updated
        raise UnknownTopic(name)

    def topics(self) -> list[TopicRecord]:
        by_name: dict[str, tuple[dict[str, Any] | None, list[dict[str, Any]]]] = {}
        for a in self._query("TOPICS"):
            entry = by_name.setdefault(str(a["name"]), (None, []))
            if a.get("kind") == "topic":
                by_name[str(a["name"])] = (a, entry[1])
            else:
                entry[1].append(a)
        return [
            self._record(t, parts)
            for name, (t, parts) in sorted(by_name.items())
            if t is not None and t.get("state") == ACTIVE
        ]

    def topic(self, name: str) -> TopicRecord | None:
        t, parts = self._topic_items(name)
        if t is None or t.get("state") != ACTIVE:
            return None
        return self._record(t, parts)

    # Leader, leader epoch and log start offset of a partition default to the segment's
    # leader, 0 and 0; the first change writes its partition item, and every change is a
    # compare-and-set of the whole state: one transaction of a ConditionCheck on the topic
    # item (same topic_id, ACTIVE) and a Put of the partition item conditional on the state
    # read (or on there being no item for this stream yet). Two GetItems + one transaction,
    # whatever the size of the topic or of its stream.
    @staticmethod
    def _stream_of(topic: dict[str, Any], partition: int) -> tuple[int, int] | None:
        """(stream id, initial leader) of a partition per the topic's segments."""
        for first_p, count, first_sid, leaders in topic["segments"]:
            if first_p <= partition < first_p + count:
                i = partition - first_p
                return first_sid + i, _segment_leader(leaders, i)
        return None

    def _change_partition(
        self,
        name: str,
        partition: int,
        change: Callable[[PartitionRecord], PartitionRecord | None],
    ) -> PartitionRecord:
        """Read the partition, apply ``change`` (None: nothing to write) and write it back if
        nothing changed in between; re-read and apply again when something did."""
        for attempt in range(self._attempts):
            if attempt:
                _backoff(attempt)
            topic = self._get("TOPICS", f"{name}#")
            if topic is None or topic.get("state") != ACTIVE:
                raise UnknownTopic(name)
            where = self._stream_of(topic, partition)
            if where is None:
                raise UnknownTopic(f"{name}-{partition}")
            sid, initial_leader = where
            item = self._get("TOPICS", f"{name}#{partition}")
            names = {"#sid": "stream_id"}
            values: dict[str, Any] = {":sid": sid}
            if item is not None and item.get("stream_id") == sid:
                current = PartitionRecord(
                    name, partition, sid,
                    item["leader_id"], item["leader_epoch"], item["log_start_offset"],
                )  # fmt: skip
                cond = "#sid = :sid AND #l = :l AND #le = :le AND #lso = :lso"
                names.update({"#l": "leader_id", "#le": "leader_epoch", "#lso": "log_start_offset"})
                values.update(
                    {
                        ":l": current.leader_id,
                        ":le": current.leader_epoch,
                        ":lso": current.log_start_offset,
                    }
                )
            else:  # no item yet, or one left by an earlier incarnation of the name
                current = PartitionRecord(name, partition, sid, initial_leader, 0, 0)
                cond = "attribute_not_exists(#sid) OR #sid <> :sid"
            new = change(current)
            if new is None or new == current:
                return current
            try:
                self._retrying(
                    self._c.transact_write_items,
                    TransactItems=[
                        {
                            "ConditionCheck": {
                                "TableName": self.table,
                                "Key": _key("TOPICS", f"{name}#"),
                                "ConditionExpression": "#tid = :tid AND #s = :active",
                                "ExpressionAttributeNames": {"#tid": "topic_id", "#s": "state"},
                                "ExpressionAttributeValues": _item(
                                    **{":tid": topic["topic_id"], ":active": ACTIVE}
                                ),
                            }
                        },
                        {
                            "Put": {
                                "TableName": self.table,
                                "Item": {
                                    **_key("TOPICS", f"{name}#{partition}"),
                                    **_item(
                                        kind="partition",
                                        name=name,
                                        partition=partition,
                                        stream_id=sid,
                                        leader_id=new.leader_id,
                                        leader_epoch=new.leader_epoch,
                                        log_start_offset=new.log_start_offset,
                                    ),
                                },
                                "ConditionExpression": cond,
                                "ExpressionAttributeNames": names,
                                "ExpressionAttributeValues": _item(**values),
                            }
                        },
                    ],
                )
            except ClientError as e:
                if "ConditionalCheckFailed" not in _cancel_reasons(e):
                    raise
                continue  # the topic or the partition changed since we read it: look again
            return new
        raise ConcurrentUpdate(f"{name}-{partition}: too much contention")

    def move_partition(
        self,
        topic: str,
        partition: int,
        expected_leader: int,
        expected_leader_epoch: int,
        new_leader: int,
    ) -> PartitionRecord:
        def move(p: PartitionRecord) -> PartitionRecord:
            if (p.leader_id, p.leader_epoch) != (expected_leader, expected_leader_epoch):
                raise ConcurrentUpdate(
                    f"{topic}-{partition} is led by {p.leader_id} at epoch {p.leader_epoch}, "
                    f"not {expected_leader} at {expected_leader_epoch}"
                )
            return replace(p, leader_id=new_leader, leader_epoch=p.leader_epoch + 1)

        moved = self._change_partition(topic, partition, move)
        try:  # a graceful move away from us: stop making the next leader follow our log
            self._release_stream(moved.stream_id)
        except Exception:  # only a saving: the next leader reads our log tail instead
            log.warning("could not release stream %d after its move", moved.stream_id,
                        exc_info=True)  # fmt: skip
        return moved

    def partitions_led_by(self, broker_id: int) -> list[PartitionRecord]:
        # One Query of the TOPICS partition (topic items + changed partitions); failover only.
        return [p for t in self.topics() for p in t.partitions if p.leader_id == broker_id]

    def set_log_start_offset(self, topic: str, partition: int, offset: int) -> PartitionRecord:
        if offset < 0:
            raise ValueError(f"negative log start offset {offset}")

        def advance(p: PartitionRecord) -> PartitionRecord | None:
            return replace(p, log_start_offset=offset) if offset > p.log_start_offset else None

        return self._change_partition(topic, partition, advance)

    # Configs are compare-and-set on a version attribute of the item (absent: 0); a topic's
    # also on its identity (same topic_id, ACTIVE), so a re-created topic is never touched.
    def _set_configs(
        self,
        pk: str,
        sk: str,
        expected: dict[str, str],
        configs: dict[str, str],
        topic_id: str | None = None,
    ) -> None:
        item = self._get(pk, sk) or {}
        if dict(item.get("configs") or {}) != expected:
            raise ConcurrentUpdate(f"configs of {sk} changed meanwhile")
        version = int(item.get("configs_version", 0))
        names = {"#c": "configs", "#v": "configs_version"}
        values: dict[str, Any] = {":c": configs, ":v": version, ":next": version + 1}
        cond = "(attribute_not_exists(#v) OR #v = :v)"
        if topic_id is not None:
            cond += " AND #tid = :tid AND #s = :active"
            names |= {"#tid": "topic_id", "#s": "state"}
            values |= {":tid": topic_id, ":active": ACTIVE}
        try:
            self._update(
                pk,
                sk,
                "SET #c = :c, #v = :next",
                ConditionExpression=cond,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=_item(**values),
            )
        except ClientError as e:
            if _error_code(e) != "ConditionalCheckFailedException":
                raise
            raise ConcurrentUpdate(f"configs of {sk} changed meanwhile") from None

    def set_topic_configs(
        self, name: str, expected: dict[str, str], configs: dict[str, str]
    ) -> TopicRecord:
        topic = self.topic(name)
        if topic is None:
            raise UnknownTopic(name)
        try:
            self._set_configs("TOPICS", f"{name}#", expected, configs, str(topic.topic_id))
        except ConcurrentUpdate:
            if self.topic(name) is None:
                raise UnknownTopic(name) from None
            raise
        updated = self.topic(name)
        if updated is None:
            raise UnknownTopic(name)
        return updated

    def cluster_configs(self) -> dict[str, str]:
        item = self._get("CLUSTER", "CONFIGS")
        return dict(item.get("configs") or {}) if item else {}

    def set_cluster_configs(self, expected: dict[str, str], configs: dict[str, str]) -> None:
        self._set_configs("CLUSTER", "CONFIGS", expected, configs)

    def broker_configs(self, broker_id: int) -> dict[str, str]:
        item = self._get("CLUSTER", f"CONFIGS#{broker_id}")
        return dict(item.get("configs") or {}) if item else {}

    def set_broker_configs(
        self, broker_id: int, expected: dict[str, str], configs: dict[str, str]
    ) -> None:
        self._set_configs("CLUSTER", f"CONFIGS#{broker_id}", expected, configs)
