"""SQLite: the compactor lease, range swaps and the object lifecycle."""

from __future__ import annotations

import sqlite3

from broker_service.metadata.errors import ConcurrentUpdate
from broker_service.metadata.records import (
    CompactorLease,
    StreamRange,
    compactor_shard,
    next_compactor_epoch,
)
from broker_service.metadata.sqlite.base import SqliteBase
from broker_service.metadata.store import CompactionStore


class SqliteCompaction(SqliteBase, CompactionStore):
    """The ``compactor`` and ``released_objects`` tables (and ranges / objects for swaps)."""

    # Shard 0's lease is the row of the single lease before shards (table ``compactor``,
    # id 1); the other shards' are rows of ``compactor_shards``.
    @staticmethod
    def _lease_row(db: sqlite3.Connection, shard: int) -> tuple[int, str, int] | None:
        if shard == 0:
            return db.execute("SELECT epoch, owner, expiry_ms FROM compactor").fetchone()
        return db.execute(
            "SELECT epoch, owner, expiry_ms FROM compactor_shards WHERE shard=?", (shard,)
        ).fetchone()

    def acquire_compactor_lease(
        self, owner: str, lease_ms: int, now_ms: int, shard: int = 0
    ) -> CompactorLease:
        with self._tx() as db:
            row = self._lease_row(db, shard)
            if row is not None and row[2] > now_ms:
                raise ConcurrentUpdate(f"compactor lease held by {row[1]} (epoch {row[0]})")
            epoch = next_compactor_epoch(row[0] if row else 0, shard)
            lease = CompactorLease(epoch, owner, now_ms + lease_ms)
            values = (lease.epoch, lease.owner, lease.expiry_ms)
            if shard == 0:
                db.execute("INSERT OR REPLACE INTO compactor VALUES(1, ?, ?, ?)", values)
            else:
                db.execute(
                    "INSERT OR REPLACE INTO compactor_shards VALUES(?, ?, ?, ?)", (shard, *values)
                )
        return lease

    def release_compactor_lease(self, epoch: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE compactor SET expiry_ms=0 WHERE epoch=?", (epoch,))
            db.execute("UPDATE compactor_shards SET expiry_ms=0 WHERE epoch=?", (epoch,))

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
            row = self._lease_row(db, compactor_shard(compactor_epoch))
            if row is None or row[0] != compactor_epoch or row[2] <= now_ms:
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
                if db.execute("SELECT 1 FROM objects WHERE object_key=?", (object_key,)).fetchone():
                    raise ConcurrentUpdate(f"object {object_key} has a record (aborted?)")
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

    def committed_objects(self, keys: list[str]) -> set[str]:
        found: set[str] = set()
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                rows = self._db.execute(
                    f"SELECT object_key FROM objects WHERE state='COMMITTED' AND object_key IN "
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
