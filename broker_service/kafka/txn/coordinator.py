"""The transaction coordinator: Kafka's transaction protocol over the shared MetadataStore.

A transactional id is coordinated by the broker's ``coordinator_for(id)``, like a group. Its state
(``TxnRecord``) is durable in the metadata store and every change is a compare-and-set on
the version read, so a coordinator that lost its role (or a zombie) cannot overwrite a newer
decision. Ending a transaction: record PrepareCommit/PrepareAbort, have every partition's
leader append a marker (``WriteTxnMarkers`` to other brokers), make the transaction's
offset commits visible, record CompleteCommit/CompleteAbort. A coordinator that finds a
Prepare* state (its predecessor died mid-way) finishes it; an Ongoing transaction older than
its timeout is aborted with a bumped epoch, which fences the zombie producer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from kio.index import load_request_schema
from kio.schema.errors import ErrorCode

from broker_service.kafka.log_store import AppendRefused
from broker_service.kafka.partition import NotDurable
from broker_service.metadata.errors import ConcurrentUpdate
from broker_service.metadata.records import (
    TXN_COMPLETE_ABORT,
    TXN_COMPLETE_COMMIT,
    TXN_EMPTY,
    TXN_ONGOING,
    TXN_PREPARE_ABORT,
    TXN_PREPARE_COMMIT,
    CommittedOffset,
    TxnRecord,
)
from broker_service.protocol.codec import shape
from broker_service.protocol.control_batch import build_marker
from broker_service.protocol.errors import KafkaError
from broker_service.protocol.record_batch import validate_batches

if TYPE_CHECKING:
    from broker_service.cluster.rpc import BrokerRpc
    from broker_service.config import BrokerConfig
    from broker_service.kafka.groups.coordinator import GroupCoordinator
    from broker_service.kafka.log_store import StreamStore
    from broker_service.kafka.partition import PartitionLog
    from broker_service.kafka.producer_ids import ProducerIdAllocator
    from broker_service.metadata.ports import MetadataPorts
    from broker_service.metadata.records import BrokerRecord
    from broker_service.metadata.store import MetadataStore


class TxnHost(Protocol):
    """What the coordinator needs of its broker (runtime/broker.py provides it)."""

    config: BrokerConfig
    metadata: MetadataStore
    groups: GroupCoordinator
    producer_ids: ProducerIdAllocator
    ports: MetadataPorts
    rpc: BrokerRpc

    @property
    def node_id(self) -> int: ...

    @property
    def store(self) -> StreamStore | None: ...

    def partition(self, topic: str, index: int) -> PartitionLog | None: ...

    def coordinates(self, key: str) -> bool: ...

    def coordinates_group(self, group_id: str) -> bool: ...

    def may_acknowledge(self) -> bool: ...

    def listed_brokers(self) -> list[BrokerRecord]: ...

    def request_refresh(self) -> None: ...

    async def sync_metadata(self) -> None: ...


log = logging.getLogger(__name__)

WRITE_TXN_MARKERS = 27
MAX_EPOCH = 32766  # Short.MaxValue - 1: the last epoch Kafka hands out before a new id
MARKER_DEADLINE_S = 60.0
STALE_PREPARE_MS = 5000  # a Prepare* this old has lost its coordinator: finish it


class TxnError(KafkaError):
    """A transaction coordinator's answer: ``code`` is chosen where it is raised."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message or str(code))
        self.code = ErrorCode(code)


@dataclass(frozen=True, slots=True)
class ProducerIdAndEpoch:
    producer_id: int
    producer_epoch: int


def _now_ms() -> int:
    return int(time.time() * 1000)


class TransactionCoordinator:
    def __init__(self, broker: TxnHost) -> None:
        self.broker = broker
        self.metadata = broker.metadata
        self.ports = broker.ports
        self._locks: dict[str, asyncio.Lock] = {}
        # group -> transactional id -> txn_seq of a transaction holding offsets for it
        self._pending_offsets: dict[str, dict[str, int]] = {}
        self._last_scan = 0.0
        # transactional id -> timeout deadline of its open transaction, for those opened here
        self._deadlines: dict[str, int] = {}

    def _lock(self, txn_id: str) -> asyncio.Lock:
        lock = self._locks.get(txn_id)
        if lock is None:
            lock = self._locks[txn_id] = asyncio.Lock()
        return lock

    async def _load(self, txn_id: str) -> TxnRecord | None:
        return await self.ports.txns.transaction(txn_id)

    async def _save(self, rec: TxnRecord) -> TxnRecord:
        saved = await self.ports.txns.save_transaction(rec)
        if saved.state == TXN_ONGOING:  # watched here for its timeout, no polling needed
            self._deadlines[saved.transactional_id] = saved.start_ms + saved.timeout_ms
        else:
            self._deadlines.pop(saved.transactional_id, None)
        return saved

    def _require_coordinator(self, txn_id: str) -> None:
        if not self.broker.coordinates(txn_id):
            raise TxnError(ErrorCode.not_coordinator)

    # -- InitProducerId ---------------------------------------------------------------------
    async def init_idempotent(self, current: ProducerIdAndEpoch | None) -> ProducerIdAndEpoch:
        """A producer without transactional id: a fresh id, or (KIP-360, the producer names
        its id and epoch) the same id with the epoch bumped, which resets its sequences."""
        if current is not None and 0 <= current.producer_epoch < MAX_EPOCH:
            return ProducerIdAndEpoch(current.producer_id, current.producer_epoch + 1)
        return ProducerIdAndEpoch(await self.ports.run(self.broker.producer_ids.next), 0)

    async def init_producer_id(
        self, txn_id: str, timeout_ms: int, current: ProducerIdAndEpoch | None
    ) -> ProducerIdAndEpoch:
        self._require_coordinator(txn_id)
        if not 0 < timeout_ms <= self.broker.config.transaction_max_timeout_ms:
            raise TxnError(
                ErrorCode.invalid_transaction_timeout,
                f"transaction.timeout.ms {timeout_ms} is outside 1.."
                f"{self.broker.config.transaction_max_timeout_ms}",
            )
        async with self._lock(txn_id):
            rec = await self._load(txn_id)
            if rec is None:
                pid = await self.ports.run(self.broker.producer_ids.next)
                rec = await self._save(TxnRecord(txn_id, pid, 0, timeout_ms, update_ms=_now_ms()))
                log.info("transactional id %r: producer id %d epoch 0", txn_id, pid)
                return ProducerIdAndEpoch(pid, 0)
            if current is not None and current.producer_id >= 0:
                ok = current.producer_id == rec.producer_id and current.producer_epoch in (
                    rec.producer_epoch,
                    rec.producer_epoch - 1,
                )
                if not ok:
                    raise TxnError(ErrorCode.producer_fenced, "a newer producer has this id")
            if rec.state == TXN_ONGOING:  # a new instance: the old one's transaction aborts
                rec = await self._bump_and_abort(rec, "a new producer instance started")
                epoch = rec.producer_epoch
            else:
                if rec.state in (TXN_PREPARE_COMMIT, TXN_PREPARE_ABORT):
                    rec = await self._complete(rec, rec.state == TXN_PREPARE_COMMIT)
                epoch = rec.producer_epoch + 1
            pid = rec.producer_id
            if epoch > MAX_EPOCH:
                pid, epoch = await self.ports.run(self.broker.producer_ids.next), 0
            await self._save(
                rec.with_(
                    producer_id=pid,
                    producer_epoch=epoch,
                    timeout_ms=timeout_ms,
                    state=TXN_EMPTY,
                    update_ms=_now_ms(),
                )
            )
            log.info("transactional id %r: producer id %d epoch %d", txn_id, pid, epoch)
            return ProducerIdAndEpoch(pid, epoch)

    # -- the transaction's contents ---------------------------------------------------------
    def _check(self, rec: TxnRecord | None, pid: int, epoch: int) -> TxnRecord:
        if rec is None or rec.producer_id != pid:
            raise TxnError(ErrorCode.invalid_producer_id_mapping)
        if epoch != rec.producer_epoch:
            raise TxnError(ErrorCode.producer_fenced, "a newer producer has this id")
        return rec

    async def _begin_or_continue(self, rec: TxnRecord) -> TxnRecord:
        if rec.state in (TXN_PREPARE_COMMIT, TXN_PREPARE_ABORT):
            if _now_ms() - rec.update_ms < STALE_PREPARE_MS:
                raise TxnError(ErrorCode.concurrent_transactions)
            rec = await self._complete(rec, rec.state == TXN_PREPARE_COMMIT)
        if rec.state != TXN_ONGOING:
            now = _now_ms()
            rec = rec.with_(
                state=TXN_ONGOING,
                partitions=(),
                groups=(),
                pending_offsets=(),
                txn_seq=rec.txn_seq + 1,
                start_ms=now,
                update_ms=now,
            )
        return rec

    async def add_partitions(
        self, txn_id: str, pid: int, epoch: int, partitions: list[tuple[str, int]]
    ) -> dict[tuple[str, int], int]:
        """Error code per partition (all or nothing, as in Kafka)."""
        try:
            self._require_coordinator(txn_id)
            unknown = [tp for tp in partitions if self.broker.partition(*tp) is None]
            if unknown:
                return {
                    tp: ErrorCode.unknown_topic_or_partition
                    if tp in unknown
                    else ErrorCode.operation_not_attempted
                    for tp in partitions
                }
            async with self._lock(txn_id):
                rec = await self._begin_or_continue(
                    self._check(await self._load(txn_id), pid, epoch)
                )
                added = tuple(dict.fromkeys([*rec.partitions, *partitions]))
                await self._save(rec.with_(partitions=added, update_ms=_now_ms()))
        except TxnError as exc:
            return dict.fromkeys(partitions, exc.code)
        except ConcurrentUpdate:
            return dict.fromkeys(partitions, ErrorCode.concurrent_transactions)
        return dict.fromkeys(partitions, 0)

    async def add_offsets(self, txn_id: str, pid: int, epoch: int, group_id: str) -> int:
        try:
            self._require_coordinator(txn_id)
            async with self._lock(txn_id):
                rec = await self._begin_or_continue(
                    self._check(await self._load(txn_id), pid, epoch)
                )
                groups = tuple(dict.fromkeys([*rec.groups, group_id]))
                await self._save(rec.with_(groups=groups, update_ms=_now_ms()))
        except TxnError as exc:
            return exc.code
        except ConcurrentUpdate:
            return ErrorCode.concurrent_transactions
        return 0

    async def txn_offset_commit(
        self, txn_id: str, group_id: str, pid: int, epoch: int, offsets: list[CommittedOffset]
    ) -> int:
        """At the group's coordinator: the offsets join the transaction and become visible
        (committed) only if it commits."""
        if not self.broker.coordinates_group(group_id):
            return ErrorCode.not_coordinator
        for _ in range(10):  # the transaction's coordinator may update the record meanwhile
            rec = await self._load(txn_id)
            try:
                rec = self._check(rec, pid, epoch)
            except TxnError as exc:
                return exc.code
            if rec.state != TXN_ONGOING or group_id not in rec.groups:
                return ErrorCode.invalid_txn_state
            pending = dict(rec.pending_offsets)
            merged = {(o.topic, o.partition): o for o in pending.get(group_id, ())}
            merged.update({(o.topic, o.partition): o for o in offsets})
            pending[group_id] = tuple(merged.values())
            try:
                await self._save(rec.with_(pending_offsets=tuple(pending.items())))
            except ConcurrentUpdate:
                continue
            self._pending_offsets.setdefault(group_id, {})[txn_id] = rec.txn_seq
            return 0
        return ErrorCode.concurrent_transactions

    # -- ending ---------------------------------------------------------------------------
    async def end_txn(self, txn_id: str, pid: int, epoch: int, commit: bool) -> int:
        try:
            self._require_coordinator(txn_id)
            async with self._lock(txn_id):
                rec = self._check(await self._load(txn_id), pid, epoch)
                done = TXN_COMPLETE_COMMIT if commit else TXN_COMPLETE_ABORT
                prepare = TXN_PREPARE_COMMIT if commit else TXN_PREPARE_ABORT
                if rec.state == done:
                    return 0  # a retry whose first answer was lost
                if rec.state == prepare:
                    await self._complete(rec, commit)
                    return 0
                if rec.state != TXN_ONGOING:
                    return ErrorCode.invalid_txn_state
                await self._complete(rec, commit)
        except TxnError as exc:
            return exc.code
        except ConcurrentUpdate:
            return ErrorCode.concurrent_transactions
        return 0

    async def _bump_and_abort(self, rec: TxnRecord, why: str) -> TxnRecord:
        """Abort an Ongoing transaction under epoch + 1, so its producer is fenced."""
        log.warning(
            "transactional id %r: aborting its transaction (%s); epoch %d -> %d",
            rec.transactional_id,
            why,
            rec.producer_epoch,
            rec.producer_epoch + 1,
        )
        rec = await self._save(
            rec.with_(
                producer_epoch=rec.producer_epoch + 1,
                state=TXN_PREPARE_ABORT,
                update_ms=_now_ms(),
            )
        )
        return await self._complete(rec, commit=False)

    async def _complete(self, rec: TxnRecord, commit: bool) -> TxnRecord:
        prepare = TXN_PREPARE_COMMIT if commit else TXN_PREPARE_ABORT
        if rec.state != prepare:
            rec = await self._save(rec.with_(state=prepare, update_ms=_now_ms()))
        await self._write_markers(rec, commit)
        if commit:
            for group_id, offsets in rec.pending_offsets:
                await self._commit_offsets(group_id, list(offsets))
        rec = await self._save(
            rec.with_(
                state=TXN_COMPLETE_COMMIT if commit else TXN_COMPLETE_ABORT,
                partitions=(),
                groups=(),
                pending_offsets=(),
                update_ms=_now_ms(),
            )
        )
        log.info(
            "transactional id %r: %s",
            rec.transactional_id,
            "committed" if commit else "aborted",
        )
        return rec

    async def _commit_offsets(self, group_id: str, offsets: list[CommittedOffset]) -> None:
        if self.broker.coordinates_group(group_id):
            await self.broker.groups.commit(group_id, offsets)  # its cache stays right
            self._pending_offsets.get(group_id, {}).clear()
        else:  # the group's coordinator re-reads them (see ``unstable_offsets``)
            await self.ports.groups.commit_offsets(group_id, offsets)

    # -- markers ----------------------------------------------------------------------------
    async def _write_markers(self, rec: TxnRecord, commit: bool) -> None:
        pending = list(rec.partitions)
        deadline = time.monotonic() + MARKER_DEADLINE_S
        delay = 0.05
        while pending:
            by_leader: dict[int, list[tuple[str, int]]] = {}
            for topic, partition in pending:
                plog = self.broker.partition(topic, partition)
                if plog is None:
                    continue  # deleted since: nothing to mark
                by_leader.setdefault(plog.leader_id, []).append((topic, partition))
            failed: list[tuple[str, int]] = []
            for leader, tps in by_leader.items():
                if leader == self.broker.node_id:
                    for tp in tps:
                        code = await self.append_marker(
                            tp[0], tp[1], rec.producer_id, rec.producer_epoch, commit
                        )
                        if code:
                            failed.append(tp)
                else:
                    failed += await self._send_markers(leader, rec, commit, tps)
            if not failed:
                return
            if time.monotonic() > deadline:
                raise TxnError(
                    ErrorCode.coordinator_not_available,
                    f"markers for {failed} not written in {MARKER_DEADLINE_S:.0f}s",
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
            self.broker.request_refresh()
            await self.broker.sync_metadata()
            pending = failed

    async def append_marker(
        self, topic: str, partition: int, pid: int, epoch: int, commit: bool
    ) -> int:
        """As a partition's leader: append a marker and wait until it is durable."""
        broker = self.broker
        plog: PartitionLog | None = broker.partition(topic, partition)
        if plog is None:
            return ErrorCode.unknown_topic_or_partition
        assert broker.store is not None
        batch = memoryview(build_marker(pid, epoch, commit, 0, _now_ms()))
        try:
            _, fut = broker.store.append_guarded(plog, batch, validate_batches(batch))
            await fut
        except AppendRefused as refused:
            return refused.code
        except NotDurable as exc:
            return (
                ErrorCode.not_leader_or_follower
                if exc.cause is None
                else ErrorCode.kafka_storage_error
            )
        return 0 if broker.may_acknowledge() else ErrorCode.not_leader_or_follower

    async def _send_markers(
        self, leader: int, rec: TxnRecord, commit: bool, tps: list[tuple[str, int]]
    ) -> list[tuple[str, int]]:
        """WriteTxnMarkers to another broker; returns the partitions that failed."""
        target = next((b for b in self.broker.listed_brokers() if b.broker_id == leader), None)
        if target is None:
            return tps
        by_topic: dict[str, list[int]] = {}
        for t, p in tps:
            by_topic.setdefault(t, []).append(p)
        body = {
            "markers": [
                {
                    "producer_id": rec.producer_id,
                    "producer_epoch": rec.producer_epoch,
                    "transaction_result": commit,
                    "topics": [{"name": t, "partition_indexes": ps} for t, ps in by_topic.items()],
                    "coordinator_epoch": 0,
                }
            ]
        }
        try:
            request = shape(load_request_schema(WRITE_TXN_MARKERS, 1), body)
            resp = await self.broker.rpc.call(leader, request, timeout=5.0)
        except Exception as exc:
            log.warning("WriteTxnMarkers to broker %d failed: %s", leader, exc)
            return tps
        failed = []
        for m in resp.markers:
            for t in m.topics:
                for p in t.partitions:
                    if p.error_code:
                        failed.append((t.name, p.partition_index))
        return failed

    # -- offsets seen by the group coordinator -----------------------------------------------
    async def unstable_offsets(self, group_id: str) -> set[tuple[str, int]]:
        """Partitions of ``group_id`` with offsets in a transaction still open. Transactions
        that ended meanwhile are forgotten, and the group's cached offsets re-read."""
        pending = self._pending_offsets.get(group_id)
        if not pending:
            return set()
        unstable: set[tuple[str, int]] = set()
        for txn_id, seq in list(pending.items()):
            rec = await self._load(txn_id)
            if rec is not None and rec.txn_seq == seq and rec.state in _OPEN:
                for g, offsets in rec.pending_offsets:
                    if g == group_id:
                        unstable.update((o.topic, o.partition) for o in offsets)
                continue
            del pending[txn_id]
            self.broker.groups.invalidate_offsets(group_id)
        return unstable

    def has_pending_offsets(self, group_id: str) -> bool:
        return bool(self._pending_offsets.get(group_id))

    # -- timeouts and orphaned transactions --------------------------------------------------
    async def expiry_step(self) -> None:
        """Run every second (runtime/timers.py): the deadlines of transactions opened here
        (no store reads); every ``transaction_scan_ms``, every transaction in the store, for
        those whose coordinator died (they moved here) and Prepare* states left half-done."""
        now_ms = _now_ms()
        if time.monotonic() - self._last_scan >= self.broker.config.transaction_scan_ms / 1000:
            self._last_scan = time.monotonic()
            await self.expire(now_ms)
            return
        due = [t for t, d in self._deadlines.items() if d < now_ms]
        if due:
            await self.expire(now_ms, due)

    async def expire(self, now_ms: int, only: list[str] | None = None) -> int:
        """Abort timed-out transactions and finish stale Prepare* ones that this broker
        coordinates (all, or the ids in ``only``). Returns how many it acted on."""
        acted = 0
        if only is None:
            records = await self.ports.txns.transactions()
        else:
            for txn_id in only:
                self._deadlines.pop(txn_id, None)
            loaded = [await self._load(t) for t in only]
            records = [r for r in loaded if r is not None]
        for rec in records:
            if not self.broker.coordinates(rec.transactional_id):
                continue
            timed_out = rec.state == TXN_ONGOING and now_ms > rec.start_ms + rec.timeout_ms
            stale = rec.state in (TXN_PREPARE_COMMIT, TXN_PREPARE_ABORT) and (
                now_ms - rec.update_ms > STALE_PREPARE_MS
            )
            if not (timed_out or stale):
                continue
            async with self._lock(rec.transactional_id):
                fresh = await self._load(rec.transactional_id)
                if fresh is None or fresh.version != rec.version:
                    continue
                try:
                    if timed_out:
                        await self._bump_and_abort(
                            fresh, f"transaction.timeout.ms {fresh.timeout_ms} passed"
                        )
                    else:
                        await self._complete(fresh, fresh.state == TXN_PREPARE_COMMIT)
                    acted += 1
                except (ConcurrentUpdate, TxnError) as exc:
                    log.warning("transactional id %r: %s", rec.transactional_id, exc)
        return acted


_OPEN = (TXN_ONGOING, TXN_PREPARE_COMMIT, TXN_PREPARE_ABORT)
