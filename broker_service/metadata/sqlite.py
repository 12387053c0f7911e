"""SQLite implementation of the MetadataStore (embedded mode).

WAL journal mode so several broker processes on one machine can share the file; every
multi-row change is one transaction (``BEGIN IMMEDIATE``), which is what makes the epoch
condition on object commits atomic.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from broker_service.metadata.base import (
    ACTIVE,
    DRAINING,
    FENCED,
    SERVING_STATES,
    AclBinding,
    BrokerFenced,
    BrokerRecord,
    CommittedOffset,
    CompactorLease,
    ConcurrentUpdate,
    GroupRecord,
    MetadataStore,
    ObjectAlreadyCommitted,
    PartitionRecord,
    QuotaEntity,
    ScramCredential,
    StreamRange,
    TopicAlreadyExists,
    TopicRecord,
    TxnRecord,
    UnknownBroker,
    UnknownTopic,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS cluster (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS brokers (
    broker_id INTEGER PRIMARY KEY, host TEXT NOT NULL, port INTEGER NOT NULL, rack TEXT,
    epoch INTEGER NOT NULL, state TEXT NOT NULL, lease_expiry_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS topics (
    name TEXT PRIMARY KEY, topic_id TEXT NOT NULL, configs TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS partitions (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, stream_id INTEGER NOT NULL UNIQUE,
    leader_id INTEGER NOT NULL, leader_epoch INTEGER NOT NULL,
    log_start_offset INTEGER NOT NULL, PRIMARY KEY (topic, partition));
CREATE TABLE IF NOT EXISTS objects (
    object_key TEXT PRIMARY KEY, size INTEGER NOT NULL, state TEXT NOT NULL,
    broker_id INTEGER NOT NULL, broker_epoch INTEGER NOT NULL, committed_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS stream_ranges (
    stream_id INTEGER NOT NULL, start_offset INTEGER NOT NULL, end_offset INTEGER NOT NULL,
    object_key TEXT NOT NULL, position INTEGER NOT NULL, size INTEGER NOT NULL,
    max_timestamp INTEGER NOT NULL, PRIMARY KEY (stream_id, start_offset));
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS transactions (
    transactional_id TEXT PRIMARY KEY, version INTEGER NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS producer_snapshots (
    stream_id INTEGER PRIMARY KEY, offset INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS groups (
    group_id TEXT PRIMARY KEY, group_type TEXT NOT NULL, protocol_type TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS group_offsets (
    group_id TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
    offset INTEGER NOT NULL, leader_epoch INTEGER NOT NULL, metadata TEXT,
    commit_ms INTEGER NOT NULL, PRIMARY KEY (group_id, topic, partition));
CREATE TABLE IF NOT EXISTS broker_info (broker_id INTEGER PRIMARY KEY, info TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS compactor (
    id INTEGER PRIMARY KEY CHECK (id = 1), epoch INTEGER NOT NULL, owner TEXT NOT NULL,
    expiry_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS released_objects (
    object_key TEXT PRIMARY KEY, released_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS scram_credentials (
    user TEXT NOT NULL, mechanism TEXT NOT NULL, salt BLOB NOT NULL, stored_key BLOB NOT NULL,
    server_key BLOB NOT NULL, iterations INTEGER NOT NULL, PRIMARY KEY (user, mechanism));
CREATE TABLE IF NOT EXISTS acls (
    resource_type INTEGER NOT NULL, resource_name TEXT NOT NULL, pattern_type INTEGER NOT NULL,
    principal TEXT NOT NULL, host TEXT NOT NULL, operation INTEGER NOT NULL,
    permission_type INTEGER NOT NULL, PRIMARY KEY (resource_type, resource_name, pattern_type,
    principal, host, operation, permission_type));
CREATE TABLE IF NOT EXISTS client_quotas (
    entity TEXT NOT NULL, quota_key TEXT NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (entity, quota_key));
CREATE TABLE IF NOT EXISTS broker_endpoints (
    broker_id INTEGER NOT NULL, listener TEXT NOT NULL, host TEXT NOT NULL, port INTEGER NOT NULL,
    PRIMARY KEY (broker_id, listener));
"""


def _now_ms() -> int:
    return int(time.time() * 1000)


class SqliteMetadataStore(MetadataStore):
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            str(path), isolation_level=None, check_same_thread=False, timeout=30
        )
        self._lock = threading.RLock()
        # Brokers of a local cluster open a new file at the same moment: switching it to WAL
        # mode needs a lock SQLite's busy timeout does not wait for, so wait here.
        deadline = time.monotonic() + 30
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _next(self, db: sqlite3.Connection, name: str, count: int = 1) -> int:
        row = db.execute("SELECT value FROM counters WHERE name=?", (name,)).fetchone()
        start = row[0] if row else 0
        db.execute(
            "INSERT INTO counters(name, value) VALUES(?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value=excluded.value",
            (name, start + count),
        )
        return int(start)

    def cluster_id(self) -> str:
        with self._tx() as db:
            row = db.execute("SELECT value FROM cluster WHERE key='cluster_id'").fetchone()
            if row:
                return str(row[0])
            cid = uuid.uuid4().hex[:22]
            db.execute("INSERT INTO cluster(key, value) VALUES('cluster_id', ?)", (cid,))
            return cid

    def register_broker(
        self, broker_id: int, host: str, port: int, rack: str | None, lease_ms: int
    ) -> BrokerRecord:
        with self._tx() as db:
            row = db.execute("SELECT epoch FROM brokers WHERE broker_id=?", (broker_id,)).fetchone()
            epoch = (row[0] if row else 0) + 1
            expiry = _now_ms() + lease_ms
            db.execute(
                "INSERT OR REPLACE INTO brokers VALUES(?,?,?,?,?,?,?)",
                (broker_id, host, port, rack, epoch, ACTIVE, expiry),
            )
        return BrokerRecord(broker_id, host, port, rack, epoch, ACTIVE, expiry)

    def brokers(self) -> list[BrokerRecord]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM brokers ORDER BY broker_id").fetchall()
        return [BrokerRecord(*r) for r in rows]

    @staticmethod
    def _broker(db: sqlite3.Connection, broker_id: int) -> BrokerRecord | None:
        row = db.execute("SELECT * FROM brokers WHERE broker_id=?", (broker_id,)).fetchone()
        return BrokerRecord(*row) if row else None

    def _serving_broker(self, db: sqlite3.Connection, broker_id: int, epoch: int) -> BrokerRecord:
        """The broker at ``epoch`` in a serving state, else ``BrokerFenced`` (inside a tx)."""
        b = self._broker(db, broker_id)
        if b is None or b.epoch != epoch or b.state not in SERVING_STATES:
            raise BrokerFenced(f"broker {broker_id} epoch {epoch} is fenced")
        return b

    def renew_lease(self, broker_id: int, epoch: int, lease_ms: int) -> BrokerRecord:
        with self._tx() as db:
            self._serving_broker(db, broker_id, epoch)
            db.execute(
                "UPDATE brokers SET lease_expiry_ms=? WHERE broker_id=?",
                (_now_ms() + lease_ms, broker_id),
            )
            b = self._broker(db, broker_id)
        assert b is not None
        return b

    def fence_broker(self, broker_id: int, expected_epoch: int) -> BrokerRecord:
        with self._tx() as db:
            b = self._broker(db, broker_id)
            if b is None:
                raise UnknownBroker(f"broker {broker_id}")
            if b.epoch != expected_epoch:
                raise ConcurrentUpdate(
                    f"broker {broker_id} is at epoch {b.epoch} ({b.state}), not {expected_epoch}"
                )
            db.execute(
                "UPDATE brokers SET epoch=?, state=? WHERE broker_id=?",
                (expected_epoch + 1, FENCED, broker_id),
            )
            fenced = self._broker(db, broker_id)
        assert fenced is not None
        return fenced

    def set_broker_state(self, broker_id: int, epoch: int, state: str) -> BrokerRecord:
        if state not in (ACTIVE, DRAINING):
            raise ValueError(f"a broker can only set itself {ACTIVE} or {DRAINING}, not {state}")
        with self._tx() as db:
            self._serving_broker(db, broker_id, epoch)
            db.execute("UPDATE brokers SET state=? WHERE broker_id=?", (state, broker_id))
            b = self._broker(db, broker_id)
        assert b is not None
        return b

    def forget_broker(self, broker_id: int, expected_epoch: int) -> bool:
        with self._tx() as db:
            gone = db.execute(
                "DELETE FROM brokers WHERE broker_id=? AND state=? AND epoch=?",
                (broker_id, FENCED, expected_epoch),
            ).rowcount
            if gone:
                db.execute("DELETE FROM broker_info WHERE broker_id=?", (broker_id,))
                db.execute("DELETE FROM broker_endpoints WHERE broker_id=?", (broker_id,))
        return bool(gone)

    def live_brokers(self, now_ms: int) -> list[BrokerRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM brokers WHERE state=? AND lease_expiry_ms>? ORDER BY broker_id",
                (ACTIVE, now_ms),
            ).fetchall()
        return [BrokerRecord(*r) for r in rows]

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
        self, db: sqlite3.Connection, name: str, first: int, last: int, leader_id: int
    ) -> None:
        for p in range(first, last):
            stream_id = self._next(db, "stream_id")
            db.execute(
                "INSERT INTO partitions VALUES(?,?,?,?,?,?)", (name, p, stream_id, leader_id, 0, 0)
            )

    def create_topic(
        self, name: str, num_partitions: int, configs: dict[str, str], leader_id: int
    ) -> TopicRecord:
        with self._tx() as db:
            if self._topic(db, name) is not None:
                raise TopicAlreadyExists(name)
            db.execute(
                "INSERT INTO topics VALUES(?,?,?)", (name, str(uuid.uuid4()), json.dumps(configs))
            )
            self._insert_partitions(db, name, 0, num_partitions, leader_id)
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

    def add_partitions(self, name: str, new_total: int, leader_id: int) -> TopicRecord:
        with self._tx() as db:
            topic = self._topic(db, name)
            if topic is None:
                raise UnknownTopic(name)
            self._insert_partitions(db, name, len(topic.partitions), new_total, leader_id)
            updated = self._topic(db, name)
        assert updated is not None
        return updated

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
        with self._lock:
            row = self._db.execute("SELECT value FROM cluster WHERE key='configs'").fetchone()
        return dict(json.loads(row[0])) if row else {}

    def set_cluster_configs(self, expected: dict[str, str], configs: dict[str, str]) -> None:
        with self._tx() as db:
            row = db.execute("SELECT value FROM cluster WHERE key='configs'").fetchone()
            if (json.loads(row[0]) if row else {}) != expected:
                raise ConcurrentUpdate("cluster configs changed meanwhile")
            db.execute(
                "INSERT OR REPLACE INTO cluster(key, value) VALUES('configs', ?)",
                (json.dumps(configs),),
            )

    def topics(self) -> list[TopicRecord]:
        with self._lock:
            names = [r[0] for r in self._db.execute("SELECT name FROM topics ORDER BY name")]
            return [t for n in names if (t := self._topic(self._db, n)) is not None]

    def topic(self, name: str) -> TopicRecord | None:
        with self._lock:
            return self._topic(self._db, name)

    def commit_object(
        self,
        broker_id: int,
        broker_epoch: int,
        object_key: str,
        object_size: int,
        ranges: list[StreamRange],
    ) -> None:
        with self._tx() as db:
            row = db.execute(
                "SELECT epoch, state FROM brokers WHERE broker_id=?", (broker_id,)
            ).fetchone()
            if row is None or row[0] != broker_epoch or row[1] not in SERVING_STATES:
                raise BrokerFenced(f"broker {broker_id} epoch {broker_epoch} is fenced")
            if db.execute("SELECT 1 FROM objects WHERE object_key=?", (object_key,)).fetchone():
                raise ObjectAlreadyCommitted(object_key)
            db.execute(
                "INSERT INTO objects VALUES(?,?,?,?,?,?)",
                (object_key, object_size, "COMMITTED", broker_id, broker_epoch, _now_ms()),
            )
            live = {r[0] for r in db.execute("SELECT stream_id FROM partitions").fetchall()}
            db.executemany(
                "INSERT INTO stream_ranges VALUES(?,?,?,?,?,?,?)",
                [
                    (
                        r.stream_id,
                        r.start_offset,
                        r.end_offset,
                        r.object_key,
                        r.position,
                        r.size,
                        r.max_timestamp,
                    )
                    for r in ranges
                    if r.stream_id in live  # a topic deleted meanwhile keeps no ranges
                ],
            )

    def stream_ranges(self, stream_id: int) -> list[StreamRange]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM stream_ranges WHERE stream_id=? ORDER BY start_offset", (stream_id,)
            ).fetchall()
        return [StreamRange(*r) for r in rows]

    def allocate_producer_ids(self, count: int) -> int:
        with self._tx() as db:
            return self._next(db, "producer_id", count)

    def save_group(self, group: GroupRecord) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO groups VALUES(?,?,?)",
                (group.group_id, group.group_type, group.protocol_type),
            )

    def groups(self) -> list[GroupRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT group_id, group_type, protocol_type FROM groups UNION "
                "SELECT DISTINCT group_id, 'classic', '' FROM group_offsets "
                "WHERE group_id NOT IN (SELECT group_id FROM groups) ORDER BY group_id"
            ).fetchall()
        return [GroupRecord(*r) for r in rows]

    def delete_group(self, group_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM groups WHERE group_id=?", (group_id,))
            db.execute("DELETE FROM group_offsets WHERE group_id=?", (group_id,))

    def commit_offsets(self, group_id: str, offsets: list[CommittedOffset]) -> None:
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO group_offsets VALUES(?,?,?,?,?,?,?)",
                [
                    (
                        group_id,
                        o.topic,
                        o.partition,
                        o.offset,
                        o.leader_epoch,
                        o.metadata,
                        o.commit_ms or _now_ms(),
                    )
                    for o in offsets
                ],
            )

    def committed_offsets(self, group_id: str) -> list[CommittedOffset]:
        with self._lock:
            rows = self._db.execute(
                "SELECT topic, partition, offset, leader_epoch, metadata, commit_ms "
                "FROM group_offsets WHERE group_id=? ORDER BY topic, partition",
                (group_id,),
            ).fetchall()
        return [CommittedOffset(*r) for r in rows]

    def delete_offsets(self, group_id: str, partitions: list[tuple[str, int]]) -> None:
        with self._tx() as db:
            db.executemany(
                "DELETE FROM group_offsets WHERE group_id=? AND topic=? AND partition=?",
                [(group_id, t, p) for t, p in partitions],
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- transactions ----------------------------------------------------------------------
    def transaction(self, transactional_id: str) -> TxnRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT body, version FROM transactions WHERE transactional_id=?",
                (transactional_id,),
            ).fetchone()
        return TxnRecord.from_json(row[0], row[1]) if row else None

    def transactions(self) -> list[TxnRecord]:
        with self._lock:
            rows = self._db.execute("SELECT body, version FROM transactions").fetchall()
        return [TxnRecord.from_json(b, v) for b, v in rows]

    def save_transaction(self, rec: TxnRecord) -> TxnRecord:
        with self._tx() as db:
            row = db.execute(
                "SELECT version FROM transactions WHERE transactional_id=?",
                (rec.transactional_id,),
            ).fetchone()
            if (row[0] if row else 0) != rec.version:
                raise ConcurrentUpdate(f"transaction {rec.transactional_id} changed meanwhile")
            saved = rec.with_(version=rec.version + 1)
            db.execute(
                "INSERT OR REPLACE INTO transactions VALUES(?,?,?)",
                (rec.transactional_id, saved.version, saved.to_json()),
            )
        return saved

    def producer_snapshot(self, stream_id: int) -> tuple[int, bytes] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT offset, data FROM producer_snapshots WHERE stream_id=?", (stream_id,)
            ).fetchone()
        return (row[0], bytes(row[1])) if row else None

    def save_producer_snapshot(self, stream_id: int, offset: int, data: bytes) -> bool:
        with self._tx() as db:
            row = db.execute(
                "SELECT offset FROM producer_snapshots WHERE stream_id=?", (stream_id,)
            ).fetchone()
            if row and row[0] > offset:
                return False
            db.execute(
                "INSERT OR REPLACE INTO producer_snapshots VALUES(?,?,?)",
                (stream_id, offset, data),
            )
        return True

    def allocate_broker_id(self) -> int:
        with self._tx() as db:
            return self._next(db, "broker_id") + 1

    def set_broker_info(self, broker_id: int, epoch: int, info: dict[str, str]) -> None:
        with self._tx() as db:
            self._serving_broker(db, broker_id, epoch)
            db.execute(
                "INSERT OR REPLACE INTO broker_info VALUES(?, ?)",
                (broker_id, json.dumps(info, sort_keys=True)),
            )

    def broker_info(self) -> dict[int, dict[str, str]]:
        with self._lock:
            rows = self._db.execute("SELECT broker_id, info FROM broker_info").fetchall()
        return {int(bid): json.loads(info) for bid, info in rows}

    # -- compaction and retention ----------------------------------------------------------
    def acquire_compactor_lease(self, owner: str, lease_ms: int, now_ms: int) -> CompactorLease:
        with self._tx() as db:
            row = db.execute("SELECT epoch, owner, expiry_ms FROM compactor").fetchone()
            if row is not None and row[2] > now_ms:
                raise ConcurrentUpdate(f"compactor lease held by {row[1]} (epoch {row[0]})")
            lease = CompactorLease((row[0] if row else 0) + 1, owner, now_ms + lease_ms)
            db.execute(
                "INSERT OR REPLACE INTO compactor VALUES(1, ?, ?, ?)",
                (lease.epoch, lease.owner, lease.expiry_ms),
            )
        return lease

    def release_compactor_lease(self, epoch: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE compactor SET expiry_ms=0 WHERE epoch=?", (epoch,))

    def replace_stream_ranges(
        self,
        compactor_epoch: int,
        stream_id: int,
        old: list[StreamRange],
        new: list[StreamRange],
        object_key: str | None,
        object_size: int,
        now_ms: int,
    ) -> None:
        with self._tx() as db:
            row = db.execute("SELECT epoch, expiry_ms FROM compactor").fetchone()
            if row is None or row[0] != compactor_epoch or row[1] <= now_ms:
                raise ConcurrentUpdate(f"compactor epoch {compactor_epoch} lost its lease")
            for r in old:
                stored = db.execute(
                    "SELECT * FROM stream_ranges WHERE stream_id=? AND start_offset=?",
                    (stream_id, r.start_offset),
                ).fetchone()
                if stored is None or StreamRange(*stored) != r:
                    raise ConcurrentUpdate(f"range {stream_id}@{r.start_offset} changed")
            db.executemany(
                "DELETE FROM stream_ranges WHERE stream_id=? AND start_offset=?",
                [(stream_id, r.start_offset) for r in old],
            )
            if object_key is not None:
                db.execute(
                    "INSERT INTO objects VALUES(?,?,?,?,?,?)",
                    (object_key, object_size, "COMMITTED", -1, compactor_epoch, now_ms),
                )
            db.executemany(
                "INSERT INTO stream_ranges VALUES(?,?,?,?,?,?,?)",
                [
                    (
                        stream_id,
                        r.start_offset,
                        r.end_offset,
                        r.object_key,
                        r.position,
                        r.size,
                        r.max_timestamp,
                    )
                    for r in new
                ],
            )
            db.executemany(
                "INSERT OR REPLACE INTO released_objects VALUES(?, ?)",
                [(k, now_ms) for k in {r.object_key for r in old}],
            )

    def committed_objects(self, keys: list[str]) -> set[str]:
        found: set[str] = set()
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                rows = self._db.execute(
                    f"SELECT object_key FROM objects WHERE object_key IN "
                    f"({','.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
                found.update(r[0] for r in rows)
        return found

    def released_objects(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT object_key, released_ms FROM released_objects")
            return {str(k): int(ms) for k, ms in rows.fetchall()}

    def mark_released(self, keys: list[str], now_ms: int) -> None:
        with self._tx() as db:
            db.executemany(
                "INSERT OR IGNORE INTO released_objects VALUES(?, ?)", [(k, now_ms) for k in keys]
            )

    def unmark_released(self, keys: list[str]) -> None:
        with self._tx() as db:
            db.executemany("DELETE FROM released_objects WHERE object_key=?", [(k,) for k in keys])

    def forget_objects(self, keys: list[str]) -> None:
        with self._tx() as db:
            db.executemany("DELETE FROM released_objects WHERE object_key=?", [(k,) for k in keys])
            db.executemany("DELETE FROM objects WHERE object_key=?", [(k,) for k in keys])

    # -- security ------------------------------------------------------------------------
    def put_scram_credential(self, user: str, credential: ScramCredential) -> None:
        c = credential
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO scram_credentials VALUES(?,?,?,?,?,?)",
                (user, c.mechanism, c.salt, c.stored_key, c.server_key, c.iterations),
            )

    def delete_scram_credential(self, user: str, mechanism: str) -> bool:
        with self._tx() as db:
            cur = db.execute(
                "DELETE FROM scram_credentials WHERE user=? AND mechanism=?", (user, mechanism)
            )
            return cur.rowcount > 0

    def scram_credentials(self, user: str | None = None) -> list[tuple[str, ScramCredential]]:
        query = "SELECT * FROM scram_credentials"
        args: tuple[str, ...] = ()
        if user is not None:
            query += " WHERE user=?"
            args = (user,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY user, mechanism", args).fetchall()
        return [(r[0], ScramCredential(r[1], bytes(r[2]), bytes(r[3]), bytes(r[4]), r[5]))
                for r in rows]  # fmt: skip

    def create_acls(self, acls: list[AclBinding]) -> None:
        with self._tx() as db:
            db.executemany(
                "INSERT OR IGNORE INTO acls VALUES(?,?,?,?,?,?,?)",
                [_acl_row(a) for a in acls],
            )

    def delete_acls(self, acls: list[AclBinding]) -> None:
        with self._tx() as db:
            db.executemany(
                "DELETE FROM acls WHERE resource_type=? AND resource_name=? AND pattern_type=? "
                "AND principal=? AND host=? AND operation=? AND permission_type=?",
                [_acl_row(a) for a in acls],
            )

    def acls(self) -> list[AclBinding]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM acls ORDER BY 1, 2, 3, 4, 5, 6, 7").fetchall()
        return [AclBinding(*r) for r in rows]

    def alter_client_quota(
        self, entity: QuotaEntity, set_values: dict[str, float], remove: list[str]
    ) -> None:
        key = json.dumps([list(e) for e in sorted(entity)])
        with self._tx() as db:
            db.executemany(
                "DELETE FROM client_quotas WHERE entity=? AND quota_key=?",
                [(key, k) for k in remove],
            )
            db.executemany(
                "INSERT OR REPLACE INTO client_quotas VALUES(?,?,?)",
                [(key, k, float(v)) for k, v in set_values.items()],
            )

    def client_quotas(self) -> list[tuple[QuotaEntity, dict[str, float]]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT entity, quota_key, value FROM client_quotas ORDER BY entity, quota_key"
            ).fetchall()
        out: dict[str, dict[str, float]] = {}
        for entity, k, v in rows:
            out.setdefault(entity, {})[k] = float(v)
        return [(tuple((t, n) for t, n in json.loads(e)), vals) for e, vals in out.items()]

    def save_broker_endpoints(self, broker_id: int, endpoints: dict[str, tuple[str, int]]) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM broker_endpoints WHERE broker_id=?", (broker_id,))
            db.executemany(
                "INSERT INTO broker_endpoints VALUES(?,?,?,?)",
                [(broker_id, name, h, p) for name, (h, p) in endpoints.items()],
            )

    def broker_endpoints(self) -> dict[int, dict[str, tuple[str, int]]]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM broker_endpoints").fetchall()
        out: dict[int, dict[str, tuple[str, int]]] = {}
        for broker_id, name, h, p in rows:
            out.setdefault(broker_id, {})[name] = (h, p)
        return out


def _acl_row(a: AclBinding) -> tuple[int, str, int, str, str, int, int]:
    return (
        a.resource_type,
        a.resource_name,
        a.pattern_type,
        a.principal,
        a.host,
        a.operation,
        a.permission_type,
    )
