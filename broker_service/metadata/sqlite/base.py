"""The SQLite store's shared base: the connection, the transaction helper, counters.

WAL journal mode so several broker processes on one machine can share the file; every
multi-row change is one transaction (``BEGIN IMMEDIATE``), which is what makes the epoch
condition on object commits atomic. The domain mixins beside this module all run their SQL
through ``_tx`` (writes) or under ``_lock`` (reads).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from broker_service.metadata.errors import BrokerFenced
from broker_service.metadata.records import SERVING_STATES, BrokerRecord

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
CREATE TABLE IF NOT EXISTS compactor_shards (
    shard INTEGER PRIMARY KEY, epoch INTEGER NOT NULL, owner TEXT NOT NULL,
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


class SqliteBase:
    """The connection and helpers every domain mixin of the SQLite store uses."""

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

    def close(self) -> None:
        with self._lock:
            self._db.close()
