"""SQLite: SCRAM credentials, ACLs and client quotas."""

from __future__ import annotations

import json

from broker_service.metadata.records import AclBinding, QuotaEntity, ScramCredential
from broker_service.metadata.sqlite.base import SqliteBase
from broker_service.metadata.store import SecurityStore


class SqliteSecurity(SqliteBase, SecurityStore):
    """The ``scram_credentials``, ``acls`` and ``client_quotas`` tables."""

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
