"""SQLite: topics and partitions (one row per partition), leadership, log start offsets."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Sequence

from broker_service.metadata.errors import ConcurrentUpdate, TopicAlreadyExists, UnknownTopic
from broker_service.metadata.records import PartitionRecord, TopicRecord
from broker_service.metadata.sqlite.base import SqliteBase
from broker_service.metadata.store import TopicCatalog, placement


class SqliteTopics(SqliteBase, TopicCatalog):
    """The ``topics`` and ``partitions`` tables (a deleted topic takes its ranges and offsets)."""

    _PARTITION_COLUMNS = "topic, partition, stream_id, leader_id, leader_epoch, log_start_offset"

    def _partitions(self, db: sqlite3.Connection, name: str) -> tuple[PartitionRecord, ...]:
        rows = db.execute(
            f"SELECT {self._PARTITION_COLUMNS} FROM partitions WHERE topic=? ORDER BY partition",
            (name,),
        ).fetchall()
        return tuple(PartitionRecord(*r) for r in rows)

    def _partition(self, db: sqlite3.Connection, topic: str, partition: int) -> PartitionRecord:
        row = db.execute(
            f"SELECT {self._PARTITION_COLUMNS} FROM partitions WHERE topic=? AND partition=?",
            (topic, partition),
        ).fetchone()
        if row is None:
            raise UnknownTopic(f"{topic}-{partition}")
        return PartitionRecord(*row)

    def move_partition(
        self,
        topic: str,
        partition: int,
        expected_leader: int,
        expected_leader_epoch: int,
        new_leader: int,
    ) -> PartitionRecord:
        with self._tx() as db:
            p = self._partition(db, topic, partition)
            if (p.leader_id, p.leader_epoch) != (expected_leader, expected_leader_epoch):
                raise ConcurrentUpdate(
                    f"{topic}-{partition} is led by {p.leader_id} at epoch {p.leader_epoch}, "
                    f"not {expected_leader} at {expected_leader_epoch}"
                )
            db.execute(
                "UPDATE partitions SET leader_id=?, leader_epoch=? WHERE topic=? AND partition=?",
                (new_leader, p.leader_epoch + 1, topic, partition),
            )
            return self._partition(db, topic, partition)

    def partitions_led_by(self, broker_id: int) -> list[PartitionRecord]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {self._PARTITION_COLUMNS} FROM partitions WHERE leader_id=? "
                "ORDER BY topic, partition",
                (broker_id,),
            ).fetchall()
        return [PartitionRecord(*r) for r in rows]

    def set_log_start_offset(self, topic: str, partition: int, offset: int) -> PartitionRecord:
        if offset < 0:
            raise ValueError(f"negative log start offset {offset}")
        with self._tx() as db:
            self._partition(db, topic, partition)
            db.execute(
                "UPDATE partitions SET log_start_offset=MAX(log_start_offset, ?) "
                "WHERE topic=? AND partition=?",
                (offset, topic, partition),
            )
            return self._partition(db, topic, partition)

    def _topic(self, db: sqlite3.Connection, name: str) -> TopicRecord | None:
        row = db.execute("SELECT topic_id, configs FROM topics WHERE name=?", (name,)).fetchone()
        if row is None:
            return None
        return TopicRecord(name, uuid.UUID(row[0]), json.loads(row[1]), self._partitions(db, name))

    def _insert_partitions(
        self, db: sqlite3.Connection, name: str, first: int, last: int, leaders: tuple[int, ...]
    ) -> None:
        for p in range(first, last):
            stream_id = self._next(db, "stream_id")
            leader = leaders[(p - first) % len(leaders)]
            db.execute(
                "INSERT INTO partitions VALUES(?,?,?,?,?,?)", (name, p, stream_id, leader, 0, 0)
            )

    def create_topic(
        self, name: str, num_partitions: int, configs: dict[str, str], leader_ids: Sequence[int]
    ) -> TopicRecord:
        leaders = placement(leader_ids)
        with self._tx() as db:
            if self._topic(db, name) is not None:
                raise TopicAlreadyExists(name)
            db.execute(
                "INSERT INTO topics VALUES(?,?,?)", (name, str(uuid.uuid4()), json.dumps(configs))
            )
            self._insert_partitions(db, name, 0, num_partitions, leaders)
            topic = self._topic(db, name)
        assert topic is not None
        return topic

    def delete_topic(self, name: str) -> TopicRecord:
        with self._tx() as db:
            topic = self._topic(db, name)
            if topic is None:
                raise UnknownTopic(name)
            db.execute("DELETE FROM topics WHERE name=?", (name,))
            db.execute("DELETE FROM partitions WHERE topic=?", (name,))
            db.execute("DELETE FROM group_offsets WHERE topic=?", (name,))
            # The objects stay until compaction/retention drops unreferenced ones.
            for p in topic.partitions:
                db.execute("DELETE FROM stream_ranges WHERE stream_id=?", (p.stream_id,))
        return topic

    def add_partitions(self, name: str, new_total: int, leader_ids: Sequence[int]) -> TopicRecord:
        leaders = placement(leader_ids)
        with self._tx() as db:
            topic = self._topic(db, name)
            if topic is None:
                raise UnknownTopic(name)
            self._insert_partitions(db, name, len(topic.partitions), new_total, leaders)
            updated = self._topic(db, name)
        assert updated is not None
        return updated

    def topics(self) -> list[TopicRecord]:
        with self._lock:
            names = [r[0] for r in self._db.execute("SELECT name FROM topics ORDER BY name")]
            return [t for n in names if (t := self._topic(self._db, n)) is not None]

    def topic(self, name: str) -> TopicRecord | None:
        with self._lock:
            return self._topic(self._db, name)

    def set_topic_configs(
        self, name: str, expected: dict[str, str], configs: dict[str, str]
    ) -> TopicRecord:
        with self._tx() as db:
            topic = self._topic(db, name)
            if topic is None:
                raise UnknownTopic(name)
            if topic.configs != expected:
                raise ConcurrentUpdate(f"configs of topic {name} changed meanwhile")
            db.execute("UPDATE topics SET configs=? WHERE name=?", (json.dumps(configs), name))
            updated = self._topic(db, name)
        assert updated is not None
        return updated

    def cluster_configs(self) -> dict[str, str]:
        return self._configs("configs")

    def set_cluster_configs(self, expected: dict[str, str], configs: dict[str, str]) -> None:
        self._set_configs("configs", expected, configs)

    def broker_configs(self, broker_id: int) -> dict[str, str]:
        return self._configs(f"configs/{broker_id}")

    def set_broker_configs(
        self, broker_id: int, expected: dict[str, str], configs: dict[str, str]
    ) -> None:
        self._set_configs(f"configs/{broker_id}", expected, configs)

    def _configs(self, key: str) -> dict[str, str]:
        with self._lock:
            row = self._db.execute("SELECT value FROM cluster WHERE key=?", (key,)).fetchone()
        return dict(json.loads(row[0])) if row else {}

    def _set_configs(self, key: str, expected: dict[str, str], configs: dict[str, str]) -> None:
        with self._tx() as db:
            row = db.execute("SELECT value FROM cluster WHERE key=?", (key,)).fetchone()
            if (json.loads(row[0]) if row else {}) != expected:
                raise ConcurrentUpdate(f"{key} changed meanwhile")
            db.execute(
                "INSERT OR REPLACE INTO cluster(key, value) VALUES(?, ?)",
                (key, json.dumps(configs)),
            )
