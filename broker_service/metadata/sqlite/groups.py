"""SQLite: consumer groups and committed offsets."""

from __future__ import annotations

from broker_service.metadata.records import CommittedOffset, GroupRecord
from broker_service.metadata.sqlite.base import SqliteBase, _now_ms
from broker_service.metadata.store import GroupStore


class SqliteGroups(SqliteBase, GroupStore):
    """The ``groups`` and ``group_offsets`` tables."""

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
