"""SQLite: producer-id blocks and producer-state snapshots."""

from __future__ import annotations

from broker_service.metadata.sqlite.base import SqliteBase
from broker_service.metadata.store import ProducerStore


class SqliteProducers(SqliteBase, ProducerStore):
    """The ``producer_id`` counter and the ``producer_snapshots`` table."""

    def allocate_producer_ids(self, count: int) -> int:
        with self._tx() as db:
            return self._next(db, "producer_id", count)

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
