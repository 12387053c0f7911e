"""SQLite: transaction records (compare-and-set on a version)."""

from __future__ import annotations

from broker_service.metadata.errors import ConcurrentUpdate
from broker_service.metadata.records import TxnRecord
from broker_service.metadata.sqlite.base import SqliteBase
from broker_service.metadata.store import TxnStore


class SqliteTxns(SqliteBase, TxnStore):
    """The ``transactions`` table."""

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
