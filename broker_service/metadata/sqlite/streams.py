"""SQLite: object commits (fenced by the broker epoch) and per-stream ranges."""

from __future__ import annotations

from broker_service.metadata.errors import (
    BrokerFenced,
    CommitDeadlinePassed,
    MetadataError,
    ObjectAlreadyCommitted,
)
from broker_service.metadata.records import SERVING_STATES, StreamRange
from broker_service.metadata.sqlite.base import SqliteBase, _now_ms
from broker_service.metadata.store import StreamObjects


class SqliteStreams(SqliteBase, StreamObjects):
    """The ``objects`` and ``stream_ranges`` tables."""

    def commit_object(
        self,
        broker_id: int,
        broker_epoch: int,
        object_key: str,
        object_size: int,
        ranges: list[StreamRange],
        deadline_ms: int | None = None,
    ) -> None:
        if len({(r.stream_id, r.start_offset) for r in ranges}) != len(ranges):
            raise MetadataError("duplicate ranges (same stream and start offset) in one commit")
        with self._tx() as db:
            if deadline_ms is not None and _now_ms() >= deadline_ms:
                raise CommitDeadlinePassed(f"object {object_key}: deadline passed")
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
            # a range starting where a stored one does replaces it: the same data committed
            # again (a retry under a new key after an answer was lost), as in DynamoDB
            db.executemany(
                "INSERT OR REPLACE INTO stream_ranges VALUES(?,?,?,?,?,?,?)",
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

    def abort_object_commit(self, object_key: str) -> bool:
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO objects VALUES(?,?,?,?,?,?)",
                (object_key, 0, "ABORTED", -1, -1, _now_ms()),
            )
            row = db.execute("SELECT state FROM objects WHERE object_key=?", (object_key,))
            return bool(row.fetchone()[0] == "COMMITTED")

    def stream_ranges(self, stream_id: int) -> list[StreamRange]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM stream_ranges WHERE stream_id=? ORDER BY start_offset", (stream_id,)
            ).fetchall()
        return [StreamRange(*r) for r in rows]
