"""SQLite: brokers, leases, fencing, broker info and listener endpoints."""

from __future__ import annotations

import json
import uuid

from broker_service.metadata.errors import ConcurrentUpdate, UnknownBroker
from broker_service.metadata.records import ACTIVE, DRAINING, FENCED, BrokerRecord
from broker_service.metadata.sqlite.base import SqliteBase, _now_ms
from broker_service.metadata.store import BrokerRegistry


class SqliteBrokers(SqliteBase, BrokerRegistry):
    """The ``brokers``, ``broker_info`` and ``broker_endpoints`` tables."""

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

    def live_brokers(self, now_ms: int) -> list[BrokerRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM brokers WHERE state=? AND lease_expiry_ms>? ORDER BY broker_id",
                (ACTIVE, now_ms),
            ).fetchall()
        return [BrokerRecord(*r) for r in rows]

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
